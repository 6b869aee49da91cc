"""Database trouble is a message, and a short outage is survived (tracker and commands).

Real faults: PostgreSQL stopped and started again, a full file system. (A file system made
read-only under a running process cannot be had as root: the kernel refuses to remount one
with files open for writing; the message for it is tested with the others.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest
import sqlalchemy as sa
from helpers import free_port, seed_tracking, start_tracker, stop_group

from newsletter import db
from newsletter.tracking.tokens import signer_for

SECRETS = ("p1", "p2", "Agent/secret-7")  # pseudonyms and a user agent that must not leak


# --- waiting --------------------------------------------------------------------------------

def locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))


def test_patiently_waits_out_a_passing_fault_and_says_what_it_waits_for() -> None:
    said: list[str] = []
    tries = iter([locked(), locked(), None])

    def action() -> str:
        error = next(tries)
        if error is not None:
            raise error
        return "done"

    assert db.patiently(action, patience=30, doing="record", say=said.append) == "done"
    assert said == ["waiting for the database to record (database is locked); trying again "
                    "for up to 30 s"]


def test_patiently_gives_up_after_its_patience() -> None:
    said: list[str] = []

    def action() -> None:
        raise locked()

    with pytest.raises(sa.exc.OperationalError):
        db.patiently(action, patience=0.3, doing="record", say=said.append)
    assert len(said) == 1


def test_patiently_does_not_wait_for_a_mistake() -> None:
    def action() -> None:
        raise sa.exc.ProgrammingError("SELECT", {}, Exception("no such column: x"))

    with pytest.raises(sa.exc.ProgrammingError):
        db.patiently(action, patience=30, doing="read", say=lambda text: None)


@pytest.mark.parametrize(("why", "hint"), [
    ("database or disk is full", "free some disk space"),
    ("attempt to write a readonly database", "make the database file and its folder writable"),
    ("database is locked", "another program held the database too long"),
    ("connection failed: Connection refused", "check that the database server is running"),
])
def test_a_database_failure_says_what_to_do(why: str, hint: str) -> None:
    error = db.storage_error(sa.exc.OperationalError("INSERT", {"a": "p1"}, Exception(why)),
                             resumes="newsletter send")
    text = error.format()
    assert text.startswith(f"the database failed: {why}")
    assert hint in text and "run the same `newsletter send` again" in text
    assert "INSERT" not in text and "p1" not in text


# --- commands ---------------------------------------------------------------------------------

def test_a_command_waits_for_postgresql_then_says_what_failed(project, runner,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    monkeypatch.setenv("NEWSLETTER_DB_WAIT", "1")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens"
    result = runner.invoke(main, ["track", "purge", "--older-than", "180d", "--db", url])
    assert result.exit_code == 1
    assert "waiting for the database to connect (connection failed:" in result.output
    assert "cannot open database 'postgresql://postgres@127.0.0.1:" in result.output
    assert "Connection refused" in result.output
    assert "Traceback" not in result.output


def test_a_database_error_inside_a_command_is_a_message(project, runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    url = "sqlite:///" + str(tmp_path / "t.db")
    database = db.open_db(url)
    with database.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE events"))
    database.close()
    result = runner.invoke(main, ["track", "purge", "--older-than", "180d", "--db", url])
    assert result.exit_code == 1
    assert result.output.startswith("the database failed: no such table: events")
    assert "Traceback" not in result.output and "DELETE" not in result.output


def test_the_wait_is_a_setting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.errors import ConfigurationError
    from newsletter.settings import Settings

    assert Settings.load(project_root(), {}).db_wait == 60.0
    assert Settings.load(project_root(), {"NEWSLETTER_DB_WAIT": "5"}).db_wait == 5.0
    with pytest.raises(ConfigurationError, match="NEWSLETTER_DB_WAIT='soon'"):
        Settings.load(project_root(), {"NEWSLETTER_DB_WAIT": "soon"})


def project_root():  # type: ignore[no-untyped-def]
    from pathlib import Path

    return Path(__file__).resolve().parent


# --- the tracker ---------------------------------------------------------------------------

def click(http: httpx.Client, tokens: list[str], count: int) -> int:
    answered = 0
    for i in range(count):
        response = http.get(f"/c/{tokens[i % len(tokens)]}",
                            headers={"user-agent": SECRETS[2]})
        answered += response.status_code == 302
    return answered


def wait_for_health(http: httpx.Client, wanted: str, limit: float = 120) -> str:
    deadline = time.monotonic() + limit
    while True:
        text = http.get("/healthz").text
        if text.startswith(wanted):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def run_tracker_through(url: str, tmp_path, fault, repair) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Clicks before, during and after a fault; returns (clicks answered, tracker's stderr)."""
    database = db.open_db(url)
    seed_tracking(database)
    signer = signer_for(database)
    tokens = [signer.click("spring", link, pseudonym=who) for link in ("a1", "d1")
              for who in SECRETS[:2]]
    database.close()
    port = free_port()
    os.environ["NEWSLETTER_DB_WAIT"] = "1"
    try:
        tracker = start_tracker(url, tmp_path, port)
    finally:
        del os.environ["NEWSLETTER_DB_WAIT"]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            answered = click(http, tokens, 20)          # every link now in the cache
            wait_for_health(http, "ok 0")
            fault()
            answered += click(http, tokens, 40)         # still answered, kept in the journal
            unwell = wait_for_health(http, "unwell")
            assert "cannot store events for" in unwell
            assert http.get("/healthz").status_code == 503
            repair()
            wait_for_health(http, "ok 0")
        tracker.send_signal(signal.SIGTERM)
        _, err = tracker.communicate(timeout=60)
    finally:
        stop_group(tracker)
    assert tracker.returncode == 0, err
    return answered, err


def stored(url: str) -> int:
    database = db.open_db(url)
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar()
    finally:
        database.close()


def assert_told_without_values(err: str) -> None:
    assert "tracker: cannot store events yet (" in err
    assert "tracker: storing events again after" in err
    assert "Traceback" not in err
    for secret in SECRETS:
        assert secret not in err


def test_the_tracker_survives_postgresql_stopping(own_postgres, tmp_path) -> None:  # type: ignore[no-untyped-def]
    answered, err = run_tracker_through(own_postgres.url, tmp_path, own_postgres.stop,
                                        own_postgres.start)
    assert answered == 60
    assert stored(own_postgres.url) == 60
    assert_told_without_values(err)


def test_the_tracker_survives_a_full_disk(small_disk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = "sqlite:///" + str(small_disk / "tracking.db")
    filler = small_disk / "filler"

    def fill() -> None:  # every block the database could grow into
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)

    answered, err = run_tracker_through(url, tmp_path, fill, filler.unlink)
    assert answered == 60
    assert stored(url) == 60
    assert_told_without_values(err)
    assert "database or disk is full" in err


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://news:s3cret@db.example.org:5432/news",
     "postgresql://news:***@db.example.org:5432/news"),
    ("postgresql+psycopg://news:p%40ss@127.0.0.1/news", "postgresql+psycopg://news:***@127.0.0.1/news"),
    ("postgresql://news@127.0.0.1/news", "postgresql://news@127.0.0.1/news"),
    ("sqlite:///newsletter.db", "sqlite:///newsletter.db"),
    ("newsletter.db", "newsletter.db"),
    # not a URL SQLAlchemy can read (a port that is not a number): the login is still hidden
    ("postgresql://news:s3cret@db.example.org:port/news", "postgresql://***@db.example.org:port/news"),
])
def test_messages_never_show_a_database_password(url: str, shown: str) -> None:
    from newsletter.db import shown_url

    assert shown_url(url) == shown
