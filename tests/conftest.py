"""Shared fixtures. Real parts wherever they can run here: files, SQLite, servers on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import settings as hypothesis_settings

# Property-based tests (tests/test_fuzz.py): a few seconds in `make test`; a long hunt with
# `pytest tests/test_fuzz.py --hypothesis-profile=fuzz`. No deadline: the machine is shared.
hypothesis_settings.register_profile("quick", max_examples=25, deadline=None)
hypothesis_settings.register_profile("fuzz", max_examples=2_000, deadline=None)
hypothesis_settings.load_profile("quick")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "2026-spring"
PROJECT_FILES = ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
                 "newsletter.yaml")


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


TRACKING_SENT_AT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: when the fixture issue went out


def seed_tracking(database, sent_at: float = TRACKING_SENT_AT) -> None:  # type: ignore[no-untyped-def]
    """The fixture the tracking and report tests share (figures in tests/test_report.py).

    Issue ``spring`` (individual tracking, opens on): links a1 article, d1 download, e1 event,
    hp honeypot; recipients 1-5 sent, 6 failed. Lists: schools {1,2}, partners {1..5},
    police {3,4}, charities {6}. Issue ``autumn`` (aggregate): a1, d1; 1-4 sent; schools {1,2},
    police {3,4}. Issue ``draft``: registered, never sent.
    """
    from newsletter import db

    people = [
        (1, "ann@school.example", "Hill School", "school.example"),
        (2, "bob@school.example", "Hill School", "school.example"),
        (3, "cat@police.example", "County Police", "police.example"),
        (4, "dan@police.example", "County Police", "police.example"),
        (5, "eve@council.example", "County Council", "council.example"),
        (6, "fay@charity.example", "Helping Hands", "charity.example"),
    ]
    links = {
        "spring": [("a1", "https://example.org/review", "Read the review", "News", "article"),
                   ("d1", "https://example.org/guide.pdf", "Download the guide", "Resources",
                    "download"),
                   ("e1", "https://example.org/book", "Book a place", "Events", "event"),
                   ("hp", "https://example.org/hp", "", "", "honeypot")],
        "autumn": [("a1", "https://example.org/autumn", "Autumn news", "News", "article"),
                   ("d1", "https://example.org/autumn.pdf", "Autumn guide", "Resources",
                    "download")],
        "draft": [("a1", "https://example.org/draft", "Draft", "News", "article")],
    }
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": a, "pseudonym": f"p{i}", "name": a.split("@")[0],
             "organisation": o, "domain": d, "created_at": sent_at - 86400}
            for i, a, o, d in people])
        for slug, mode, opens in (("spring", "individual", True), ("autumn", "aggregate", False),
                                  ("draft", "individual", False)):
            conn.execute(db.issues.insert().values(
                slug=slug, subject=f"The {slug} issue", tracking=mode, opens=opens,
                web_html=f"<h1>The {slug} issue</h1>", created_at=sent_at, updated_at=sent_at))
            conn.execute(db.links.insert(), [
                {"issue": slug, "link_id": lid, "url": url, "text": text, "section": section,
                 "kind": kind, "tracked": True} for lid, url, text, section, kind in links[slug]])
        rows = [("spring", i, "sent" if i <= 5 else "failed") for i in range(1, 7)]
        rows += [("autumn", i, "sent") for i in range(1, 5)]
        conn.execute(db.deliveries.insert(), [
            {"issue": s, "recipient_id": i, "status": st, "message_id": f"<{s}.{i}@test>",
             "pseudonym": f"p{i}", "sent_at": sent_at if st == "sent" else None,
             "updated_at": sent_at}
            for s, i, st in rows])
        memberships = {"spring": {"schools": [1, 2], "partners": [1, 2, 3, 4, 5],
                                  "police": [3, 4], "charities": [6]},
                       "autumn": {"schools": [1, 2], "police": [3, 4]}}
        conn.execute(db.delivery_lists.insert(), [
            {"issue": s, "recipient_id": i, "list_key": key}
            for s, lists in memberships.items() for key, ids in lists.items() for i in ids])


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

SEND_AUDIENCES = """\
lists:
  schools:
    name: Schools
    members:
      - {email: Ann@School.example, name: Ann Lee, organisation: Hill School}
      - {email: bob@school.example, name: Bob Roe, organisation: Hill School}
      - {email: shared@council.example, name: Sam Shared, organisation: County Council}
  councils:
    name: Councils
    members_file: audiences/councils.csv
"""
SEND_CSV = ("email,name,organisation\n"
            "shared@council.example,Sam Shared,County Council\n"
            "cat@council.example,Cat Smith,County Council\n"
            "dan@district.example,,District Council\n")
SEND_ADDRESSES = {"ann@school.example", "bob@school.example", "shared@council.example",
                  "cat@council.example", "dan@district.example"}


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


def one_list(project: Path, key: str, addresses: list[str], organisation) -> Path:  # type: ignore[no-untyped-def]
    """Give ``project`` a single list ``key`` whose members (one per address) are in a CSV;
    ``organisation(i)`` names the i-th member's organisation."""
    rows = ["email,name,organisation"] + [f"{a},Reader {i},{organisation(i)}"
                                          for i, a in enumerate(addresses)]
    (project / "audiences" / f"{key}.csv").write_text("\n".join(rows) + "\n")
    (project / "audiences.yaml").write_text(
        f"lists:\n  {key}:\n    name: Everyone\n    members_file: audiences/{key}.csv\n")
    return project


class SmtpRecorder:
    """An aiosmtpd handler that keeps every accepted message and can misbehave on purpose.

    ``faults[address]`` is a list of actions used one per attempt for that recipient:
    an SMTP reply such as ``"451 4.7.1 later"`` at RCPT, ``"data:552 ..."`` at the end of
    DATA, ``"drop"`` (close the connection after the data, before replying) or ``"stall"``
    (never answer the data).
    """

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.faults: dict[str, list[str]] = {}
        self.attempts: dict[str, int] = {}
        self.release = None  # an asyncio.Event set at teardown, ending stalls
        self.pipelining = False  # advertise PIPELINING (RFC 2920) in the EHLO answer
        self.greetings: list[str] = []   # the name each EHLO gave

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        self.greetings.append(hostname)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def _next(self, address: str, stage: str) -> str | None:
        actions = self.faults.get(address)
        if not actions:
            return None
        action = actions[0]
        is_data = action in ("drop", "stall") or action.startswith("data:")
        if (stage == "data") != is_data:
            return None
        actions.pop(0)
        return action.removeprefix("data:")

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        self.attempts[address] = self.attempts.get(address, 0) + 1
        action = self._next(address, "rcpt")
        if action:
            return action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        import asyncio

        address = envelope.rcpt_tos[0]
        action = self._next(address, "data")
        if action == "drop":
            self.messages.append(envelope.original_content)   # it did arrive whole
            server.transport.close()
            return "250 OK"
        if action == "stall":
            if self.release is None:
                self.release = asyncio.Event()
            await self.release.wait()
            return "451 too late"
        if action:
            return action
        self.messages.append(envelope.original_content)
        return f"250 2.0.0 queued as {len(self.messages)}"

    def message_ids(self) -> list[str]:
        import email

        return [email.message_from_bytes(m)["Message-ID"] for m in self.messages]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

        port = _free_port()
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


def make_built(slug: str = "spring", tracking: str = "aggregate", opens: bool = False,
               subject: str = "Spring update: what’s new", html: str | None = None,
               text: str | None = None):  # type: ignore[no-untyped-def]
    """A small hand-made BuiltIssue (the build contract) for message and adapter tests."""
    import datetime as dt
    from types import SimpleNamespace

    from newsletter.links import Link
    from newsletter.model import Sender

    issue = SimpleNamespace(slug=slug, subject=subject, preheader="", language="en-GB",
                            sender=Sender("Prevent Team – Kent", "team@example.org",
                                          "replies@example.org"),
                            tracking=tracking, opens=opens, date=dt.date(2026, 3, 17))
    base = "http://127.0.0.1:8025"
    html = html if html is not None else (
        "<html><body><p>Dear {{name}},</p>"
        f'<p><a href="{base}/c/{{{{click:aaa111}}}}">Read the review</a> · '
        f'<a href="{base}/c/{{{{click:bbb222}}}}">Download</a></p>'
        + ("<p>" + "Long line of text. " * 30 + "</p>\n") * 3
        + "<p>.dot at start</p>\n.leading dot line\n"
        f'<p><a href="{base}/u/{{{{unsubscribe}}}}">Unsubscribe</a></p>'
        + (f'<img src="{base}/o/{{{{open}}}}" alt="">' if opens else "")
        + "</body></html>")
    text = text if text is not None else (
        "Dear {{name}},\n\nRead the review: " f"{base}/c/{{{{click:aaa111}}}}\n"
        ".a line starting with a dot\nCafé £5\n\n"
        f"Unsubscribe: {base}/u/{{{{unsubscribe}}}}\n")
    links = [Link("aaa111", "https://example.org/review", "Read the review", "news", "article",
                  True),
             Link("bbb222", "https://example.org/guide.pdf", "Download", "news", "download",
                  True)]
    return SimpleNamespace(issue=issue, html=html, text=text, web_html="<h1>web</h1>",
                           links=links, warnings=[], mjml="", dependencies=[],
                           email_images=[], assets_url="", tracking_url=base)


# --- browser ---
# Debian's Chromium, driven by playwright's Python package (never playwright's own download).

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"


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


class OwnPostgres:
    """A PostgreSQL cluster of one test's own (scripts/start-postgres.sh), to stop and start."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.url = ""

    def _script(self, *args: str) -> str:
        import os
        import subprocess

        env = {**os.environ, "NEWSLETTER_PG_DIR": str(self.folder),
               "NEWSLETTER_PG_PORT": str(self.port)}
        done = subprocess.run(["bash", str(REPO / "scripts" / "start-postgres.sh"), *args],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        self.url = self._script().strip().rpartition("=")[2]

    def stop(self) -> None:
        self._script("stop")


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
