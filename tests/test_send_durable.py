"""The ledger never forgets an accepted message: the real `send`, killed and locked out.

Against a real SMTP server that keeps what it received, on SQLite and PostgreSQL, at
concurrency 1, 4 and 8: SIGKILL at several moments, then resume. Nobody is lost; each kill
repeats at most one message per connection (the one in flight), with the same Message-ID; and
one `send` after the crashes finishes the job. A database lock held past the timeout in the
middle of a run stops it cleanly, with every answer kept, and the resume repeats nobody.
"""

from __future__ import annotations

import contextlib
import email
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import db

from helpers import one_list  # isort: skip

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
COUNT = 400


def env_for(url: str, smtp: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTEST"))}
    env.update(NEWSLETTER_DB=url, NEWSLETTER_SMTP_URL=smtp, **extra)
    return env


@pytest.fixture
def crowd(send_project: Path) -> Path:
    return one_list(send_project, "crowd", [f"r{i:04d}@org{i % 7}.example" for i in range(COUNT)],
                    lambda i: f"Org {i % 7}")


def command(concurrency: int) -> list[str]:
    return [NEWSLETTER, "send", "2026-spring", "--to", "crowd", "--adapter", "smtp", "--yes",
            "--create-db", "--allow-local-tracking", "--concurrency", str(concurrency)]


def statuses(url: str) -> Counter:
    database = db.open_db(url)
    try:
        with database.engine.connect() as conn:
            return Counter(conn.execute(sa.select(db.deliveries.c.status)).scalars())
    finally:
        database.close()


def message_ids(url: str) -> dict[str, str]:
    """Recipient address -> the Message-ID the ledger gave it."""
    database = db.open_db(url)
    try:
        with database.engine.connect() as conn:
            return dict(conn.execute(
                sa.select(db.recipients.c.address, db.deliveries.c.message_id)
                .join(db.deliveries, db.deliveries.c.recipient_id == db.recipients.c.id)).all())
    finally:
        database.close()


def received(recorder) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(To address, Message-ID) of every message the server accepted, in order."""
    found = []
    for raw in list(recorder.messages):
        message = email.message_from_bytes(raw)
        found.append((email.utils.parseaddr(message["To"])[1].lower(), message["Message-ID"]))
    return found


def wait_for(condition, what: str, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit     # a guard against hanging, not a timing assertion
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def kill_when(process: subprocess.Popen, recorder, count: int) -> None:  # type: ignore[no-untyped-def]
    try:
        wait_for(lambda: len(recorder.messages) >= count or process.poll() is not None,
                 f"{count} messages")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_sigkill_repeats_at_most_one_message_per_connection(crowd, storage_url, smtp_server,  # type: ignore[no-untyped-def]
                                                            concurrency: int) -> None:
    recorder, smtp = smtp_server()
    env = env_for(storage_url, smtp, PYTHONUNBUFFERED="1")
    outputs = []
    for fraction in (0.15, 0.45, 0.75):
        out = crowd / f"run-{fraction}.txt"
        with out.open("w") as stdout:
            process = subprocess.Popen(command(concurrency), cwd=crowd, env=env, stdout=stdout,
                                       stderr=subprocess.STDOUT)
            kill_when(process, recorder, int(COUNT * fraction))
        assert process.returncode == -signal.SIGKILL, out.read_text()
        outputs.append(out.read_text())
    # One `send` after three kills finishes the job.
    resumed = subprocess.run(command(concurrency), cwd=crowd, env=env, capture_output=True,
                             text=True, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "run the same command again" not in resumed.stdout + resumed.stderr
    outputs.append(resumed.stdout)
    assert statuses(storage_url) == {"sent": COUNT}

    got = received(recorder)
    ids = message_ids(storage_url)
    assert {address for address, _ in got} == set(ids)          # nobody lost
    assert all(ids[address] == mid for address, mid in got)     # a repeat is the same message
    # Each run after a kill says, from the killed run's journal, how many messages were being
    # handed over when it died: the only ones that can arrive twice.
    in_flight = [in_flight_after(output) for output in outputs[1:]]
    assert all(n <= concurrency for n in in_flight), in_flight
    repeats = len(got) - len({mid for _, mid in got})
    assert repeats <= sum(in_flight), (repeats, in_flight)


def in_flight_after(output: str) -> int:
    import re

    found = re.search(r"(\d+) message\(s\) it was handing over when it stopped", output)
    return int(found.group(1)) if found else 0


@contextlib.contextmanager
def held_lock(url: str):  # type: ignore[no-untyped-def]
    """Hold the ledger's write lock (SQLite) or an exclusive lock on it (PostgreSQL)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        conn = psycopg.connect(url)
        conn.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        conn.rollback() if not url.startswith("sqlite") else conn.execute("ROLLBACK")
        conn.close()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_lock_past_the_timeout_stops_the_run_cleanly_and_loses_nothing(  # type: ignore[no-untyped-def]
        crowd, storage_url, smtp_server, concurrency: int) -> None:
    recorder, smtp = smtp_server()
    env = env_for(storage_url, smtp, NEWSLETTER_DB_WAIT="2")
    process = subprocess.Popen([*command(concurrency), "--rate", "400"], cwd=crowd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(recorder.messages) >= COUNT // 3, "a third of the messages")
        with held_lock(storage_url):
            output = process.communicate(timeout=120)[0]  # send gives up while it is held
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, output
    assert "the database failed:" in output and "lock" in output
    assert "nothing recorded is lost: run the same `newsletter send` again" in output
    assert "waiting for the database" in output
    assert "Traceback" not in output
    before = Counter(mid for _, mid in received(recorder))
    assert set(before.values()) == {1}

    resumed = subprocess.run(command(concurrency), cwd=crowd, env=env, capture_output=True,
                             text=True, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert statuses(storage_url) == {"sent": COUNT}
    got = Counter(mid for _, mid in received(recorder))
    assert len(got) == COUNT and set(got.values()) == {1}     # a clean stop repeats nobody
