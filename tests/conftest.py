"""Shared fixtures. Real parts wherever they can run here: files, SQLite, servers on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import settings as hypothesis_settings

from helpers import (  # isort: skip
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PROJECT_FILES,
    PUBLISHED_URL,
    SAMPLE_ISSUE,
    REPO,
    SEND_AUDIENCES,
    SEND_CSV,
    OwnPostgres,
    SmtpRecorder,
    free_port,
    seed_tracking,
)

# Property-based tests (tests/test_fuzz.py): a few seconds in `make test`; a long hunt with
# `pytest tests/test_fuzz.py --hypothesis-profile=fuzz`. No deadline: the machine is shared.
hypothesis_settings.register_profile("quick", max_examples=25, deadline=None)
hypothesis_settings.register_profile("fuzz", max_examples=2_000, deadline=None)
hypothesis_settings.load_profile("quick")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's sample project in a temporary folder, as the working folder."""
    root = tmp_path / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.is_file():
            shutil.copy2(source, root / name)
    monkeypatch.chdir(root)
    for var in ("NEWSLETTER_TRACKING_URL", "NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY",
                "NEWSLETTER_SMTP_URL"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def sample_issue(project: Path) -> Path:
    """The sample issue's YAML inside the temporary project."""
    return project / "issues" / f"{SAMPLE_ISSUE}.yaml"


@pytest.fixture
def runner() -> CliRunner:
    """A click runner for in-process CLI tests."""
    return CliRunner()


@pytest.fixture
def sample_yaml(sample_issue: Path) -> str:
    """The sample issue's text, to edit into broken variants."""
    return sample_issue.read_text(encoding="utf-8")


@pytest.fixture
def check_issue(project: Path, runner: CliRunner):  # type: ignore[no-untyped-def]
    """Write YAML text to issues/draft.yaml, run ``newsletter check`` on it, return the result."""
    from newsletter.cli import main

    def run(text: str | bytes, name: str = "draft.yaml"):  # type: ignore[no-untyped-def]
        path = project / "issues" / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return runner.invoke(main, ["check", f"issues/{name}"])

    return run


# --- tracking ---
# The storage tests run against SQLite and a real PostgreSQL (`make test` starts one with
# scripts/start-postgres.sh and sets NEWSLETTER_TEST_PG_URL). Each PostgreSQL test gets a database
# of its own, dropped afterwards.


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "tracking.db")
        return
    import os
    import uuid

    import sqlalchemy as sa

    base = os.environ.get("NEWSLETTER_TEST_PG_URL")
    if not base:
        why = "NEWSLETTER_TEST_PG_URL is unset (make test starts PostgreSQL and sets it)"
        if os.environ.get("NEWSLETTER_TEST_REQUIRE_PG"):
            pytest.fail(why)        # make test: a PostgreSQL test never passes by skipping
        pytest.skip(why)
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def tracking_db(storage_url: str):  # type: ignore[no-untyped-def]
    """An open database (SQLite, then PostgreSQL) holding the shared tracking fixture."""
    from newsletter.db import open_db

    database = open_db(storage_url)
    try:
        seed_tracking(database)
        yield database
    finally:
        database.close()


# --- sending ---
# A real SMTP server (aiosmtpd) with faults to inject, local fake provider APIs (starlette under
# uvicorn in a thread), and a small project of our own to send from.


@pytest.fixture
def send_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample project with small audiences of our own (5 recipients, 1 on two lists)."""
    (project / "audiences.yaml").write_text(SEND_AUDIENCES, encoding="utf-8")
    (project / "audiences").mkdir(exist_ok=True)
    (project / "audiences" / "councils.csv").write_text(SEND_CSV, encoding="utf-8")
    for var in ("NEWSLETTER_ADAPTER", "NEWSLETTER_MAILDIR", "MAILGUN_API_KEY", "MAILGUN_DOMAIN",
                "MAILGUN_API_URL", "POSTMARK_SERVER_TOKEN", "POSTMARK_API_URL",
                "SENDGRID_API_KEY", "SENDGRID_API_URL", "NEWSLETTER_SEND_LEASE",
                "NEWSLETTER_SMTP_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    return project


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    """Start real aiosmtpd servers on 127.0.0.1: ``start(greeting=None) -> (recorder, url)``.

    ``greeting="421 ..."`` makes a server that refuses every connection at the greeting;
    ``auth=(user, password)`` offers AUTH and accepts only that login.
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    started: list[tuple[Controller, SmtpRecorder]] = []

    def start(greeting: str | None = None,
              auth: tuple[str, str] | None = None) -> tuple[SmtpRecorder, str]:
        recorder = SmtpRecorder()

        class Busy(SMTP):
            async def _handle_client(self) -> None:  # type: ignore[override]
                await self.push(greeting)
                self.transport.close()

        class Server(Controller):
            def factory(self):  # type: ignore[no-untyped-def]
                if greeting:
                    return Busy(self.handler, **self.SMTP_kwargs)
                return super().factory()

        port = free_port()
        options = {}
        if auth:
            from aiosmtpd.smtp import AuthResult, LoginPassword

            def authenticator(server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
                ok = isinstance(data, LoginPassword) and \
                    (data.login.decode(), data.password.decode()) == auth
                return AuthResult(success=ok, handled=False)

            # AUTH over plain TCP is fine on 127.0.0.1 in a test; not requiring it avoids
            # aiosmtpd's warning.
            options = {"authenticator": authenticator, "auth_require_tls": False}
        controller = Server(recorder, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append((controller, recorder))
        return recorder, f"smtp://127.0.0.1:{port}?timeout=1"

    yield start
    for controller, recorder in started:
        if recorder.release is not None:
            controller.loop.call_soon_threadsafe(recorder.release.set)
        controller.stop()


@pytest.fixture
def http_server():  # type: ignore[no-untyped-def]
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread: ``serve(app) -> base URL``."""
    import socket
    import threading
    import time

    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app) -> str:  # type: ignore[no-untyped-def]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="error", lifespan="off", ws="none",
                                http="h11", loop="asyncio", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        running.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield serve
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- browser ---
# Debian's Chromium, driven by playwright's Python package (never playwright's own download).


@pytest.fixture(scope="module")
def chromium():  # type: ignore[no-untyped-def]
    """A headless Chromium for one test module (make test installs the package).

    Module scope, not session: playwright's sync API holds an asyncio loop on the main thread
    while it runs, which would break later tests that start their own loop.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Folder for screenshots and other test artefacts (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# --- database trouble ---


@pytest.fixture
def own_postgres():  # type: ignore[no-untyped-def]
    """A PostgreSQL of this test's own, started; ``.stop()`` and ``.start()`` it at will."""
    import socket
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="newsletter-own-pg-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = OwnPostgres(folder, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real 2 MiB file system (tmpfs) to fill up or make read-only; needs root to mount."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (the CI runs as root)")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def imap():  # type: ignore[no-untyped-def]
    """A real IMAP server (Dovecot) on 127.0.0.1 with TLS, one per test module."""
    from helpers import dovecot

    with dovecot() as server:
        yield server


# --- reach: the sample issue as send leaves it for the tracker ---


@pytest.fixture
def published(project: Path, storage_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The sample issue built with its tracker at :data:`PUBLISHED_URL` and registered in a
    fresh database (SQLite, then PostgreSQL) with its outlets, as ``send`` leaves it; three
    recipients on list ``schools`` sent. Yields ``(database, built)``."""
    from helpers import seed_sent

    from newsletter.build import build_issue
    from newsletter.db import open_db
    from newsletter.ledger import register_issue
    from newsletter.project import Project

    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLISHED_URL)
    built = build_issue(project / "issues" / f"{SAMPLE_ISSUE}.yaml", Project.load(project))
    database = open_db(storage_url)
    try:
        register_issue(database, built)
        seed_sent(database, SAMPLE_ISSUE, {"schools": 3})
        yield database, built
    finally:
        database.close()
