"""The deployment of docs/deploy.md, for real: two tracker instances (granian) on one
PostgreSQL behind nginx, all on 127.0.0.1. Clicks, views, images, the archive and the feed go
through the proxy; both instances answer, and every hit is stored once."""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import subprocess
import uuid
from email import policy
from pathlib import Path

import feedparser
import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import free_port, nginx_config, wait_for_port

from newsletter import db
from newsletter.cli import main
from newsletter.db import open_db

PUBLIC = "https://news.example.org"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NEWSLETTER = shutil.which("newsletter") or "newsletter"
# The nginx example of docs/deploy.md, minus TLS (the test has no certificate for
# news.example.org): the same proxy headers, upstream and limits.
NGINX_SITE = """\
    upstream tracker {{
        server 127.0.0.1:{one};
        server 127.0.0.1:{two};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16k;
        location / {{
            proxy_pass http://tracker;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            add_header X-Served-By $upstream_addr always;
        }}
    }}
"""


@pytest.fixture
def pg_url():  # type: ignore[no-untyped-def]
    """A database of its own on the PostgreSQL `make test` starts."""
    base = os.environ.get("NEWSLETTER_TEST_PG_URL")
    if not base:
        pytest.fail("NEWSLETTER_TEST_PG_URL is unset: run `make test` (it starts PostgreSQL)")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def deployment(send_project: Path, pg_url: str, tmp_path: Path,  # type: ignore[no-untyped-def]
               monkeypatch: pytest.MonkeyPatch):
    """The sample issue sent (maildir) into PostgreSQL; two trackers and nginx in front."""
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: run `make test` (scripts/install-system-deps.sh)")
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLIC)
    monkeypatch.setenv("NEWSLETTER_DB", pg_url)
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--yes",
                                       "--create-db"])
    assert result.exit_code == 0, result.output
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_SECRET_KEY"}
    trackers = []
    ports = [free_port(), free_port()]
    for index, port in enumerate(ports):
        trackers.append(subprocess.Popen(
            [NEWSLETTER, "track", "serve", "--port", str(port), "--db", pg_url,
             "--journal", str(tmp_path / f"journal-{index}")],
            cwd=send_project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    proxy_port = free_port()
    (tmp_path / "nginx").mkdir()
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(nginx_config(tmp_path / "nginx", NGINX_SITE.format(
        one=ports[0], two=ports[1], port=proxy_port)))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path / "nginx")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for port, process in zip(ports, trackers, strict=True):
            wait_for_port(port, process)
        wait_for_port(proxy_port, nginx)
        yield f"http://127.0.0.1:{proxy_port}", pg_url, trackers, ports
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.communicate(timeout=30)
        for process in trackers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=60)


def stored(url: str, kind: str) -> int:
    database = open_db(url)
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(db.events)
                                .where(db.events.c.kind == kind)).scalar_one()
    finally:
        database.close()


def test_two_trackers_behind_nginx_serve_and_store_everything(deployment,  # type: ignore[no-untyped-def]
                                                              send_project: Path) -> None:
    proxy, url, trackers, ports = deployment
    message = email.message_from_bytes(
        sorted((send_project / "maildir" / "new").iterdir())[0].read_bytes(),
        policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    clicks = re.findall(re.escape(PUBLIC) + r"(/c/[A-Za-z0-9_.-]+)", text)
    assert len(clicks) >= 10
    served_by: set[str] = set()
    browser = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/140.0",
               "x-forwarded-for": "198.51.100.99"}    # must be ignored: nginx sets its own
    with httpx.Client(base_url=proxy, headers=browser, follow_redirects=False) as http:
        for path in clicks:
            reply = http.get(path)
            assert reply.status_code == 302, (path, reply.text)
            served_by.add(reply.headers["x-served-by"])
        views = 6
        for _ in range(views):
            page = http.get("/v/2026-spring")
            assert page.status_code == 200
            served_by.add(page.headers["x-served-by"])
        images = re.findall(re.escape(PUBLIC) + r'(/a/[0-9a-f]{32}\.png)', page.text)
        assert len(set(images)) == 2
        for path in set(images):
            reply = http.get(path)
            assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
            assert reply.headers["cache-control"] == "public, max-age=31536000, immutable"
        archive = http.get("/")
        assert archive.status_code == 200 and f"{PUBLIC}/v/2026-spring" in archive.text
        feed = feedparser.parse(http.get("/feed.xml").content)
        assert not feed.bozo and [e.link for e in feed.entries] == [f"{PUBLIC}/v/2026-spring"]
        assert http.get("/a/" + "0" * 32 + ".png").status_code == 404
        assert http.get("/v/no-such-issue").status_code == 404
    assert served_by == {f"127.0.0.1:{port}" for port in ports}, "both instances answered"
    for process in trackers:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    assert stored(url, "click") == len(clicks)
    assert stored(url, "view") == views
    database = open_db(url)
    try:
        with database.engine.connect() as conn:
            hashes = set(conn.execute(sa.select(db.events.c.ip_hash)).scalars())
    finally:
        database.close()
    # Every hit came from nginx on 127.0.0.1 with X-Forwarded-For 127.0.0.1: one client,
    # not the forged 198.51.100.99 the request carried.
    assert len(hashes) == 1
