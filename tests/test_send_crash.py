"""Crashes and races, with real processes: SIGKILL mid-send, and two sends at once.

The promise under test: every recipient gets the issue; the only messages that can arrive
twice are those in flight when the sender died (rows left in ``sending``), and a repeat
carries the same Message-ID as the first copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import one_list, with_default_sigint

from newsletter import db
from newsletter.db import open_db

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
COUNT = 300


@pytest.fixture
def big_project(send_project: Path) -> Path:
    return one_list(send_project, "big", [f"r{i:04d}@org{i % 7}.example" for i in range(COUNT)],
                    lambda i: f"Org {i % 7}")


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTEST"))}
    env.update(extra)
    return env


def ledger(root: Path) -> dict[str, str]:
    """Message-ID -> status for every row."""
    database = open_db("sqlite:///" + str(root / "newsletter.db"))
    try:
        with database.engine.connect() as conn:
            return dict(conn.execute(sa.select(db.deliveries.c.message_id,
                                               db.deliveries.c.status)).all())
    finally:
        database.close()


def wait_for(condition, what: str, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    # A guard against hanging forever, not a timing assertion.
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_send_then_resume(big_project: Path, smtp_server) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server()
    env = env_with(NEWSLETTER_SMTP_URL=url)
    command = [NEWSLETTER, "send", "2026-spring", "--to", "big", "--adapter", "smtp", "--yes",
               "--allow-local-tracking",
               "--concurrency", "2"]
    process = subprocess.Popen([*command, "--rate", "150"], cwd=big_project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(recorder.messages) >= COUNT // 4, "a quarter of the messages")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    after_kill = ledger(big_project)
    in_flight = {mid for mid, status in after_kill.items() if status == "sending"}
    assert len(after_kill) == COUNT                       # every recipient has a row
    assert "pending" in after_kill.values()               # killed mid-run, not after
    received_before = Counter(recorder.message_ids())

    resumed = subprocess.run(command, cwd=big_project, env=env, capture_output=True, text=True,
                             check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = ledger(big_project)
    assert set(final.values()) == {"sent"}

    received = Counter(recorder.message_ids())
    assert set(received) == set(final)                    # everyone got it
    repeated = {mid for mid, n in received.items() if n > 1}
    assert repeated <= in_flight                          # only in-flight ones repeat...
    assert max(received.values()) <= 2                    # ...at most once more
    # ...and the repeat is the same Message-ID as a copy that arrived before the kill.
    assert all(received_before[mid] == 1 for mid in repeated)


def test_two_sends_at_once_never_double(big_project: Path) -> None:
    env = env_with()
    command = [NEWSLETTER, "send", "2026-spring", "--to", "big", "--yes", "--concurrency", "3"]
    processes = [subprocess.Popen(command, cwd=big_project, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate()[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    files = list((big_project / "maildir" / "new").iterdir())
    ids = Counter(next(line for line in f.read_text().splitlines()
                       if line.startswith("Message-ID: ")) for f in files)
    assert len(ids) == COUNT and set(ids.values()) == {1}


def test_ctrl_c_stops_cleanly_and_resume_sends_no_repeat(big_project: Path) -> None:
    env = env_with()
    command = [NEWSLETTER, "send", "2026-spring", "--to", "big", "--yes", "--concurrency", "2"]
    process = subprocess.Popen([*command, "--rate", "20"], cwd=big_project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=with_default_sigint)
    new = big_project / "maildir" / "new"
    wait_for(lambda: new.is_dir() and len(list(new.iterdir())) >= 30, "some messages")
    process.send_signal(signal.SIGINT)
    output = process.communicate()[0]
    assert process.returncode == 130, output
    assert "Interrupted." in output
    after = ledger(big_project)
    assert "sending" not in after.values()            # every answer was recorded
    assert list(after.values()).count("sent") == len(list(new.iterdir()))
    resumed = subprocess.run(command, cwd=big_project, env=env, capture_output=True, text=True,
                             check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ids = Counter(next(line for line in f.read_text().splitlines()
                       if line.startswith("Message-ID: ")) for f in new.iterdir())
    assert len(ids) == COUNT and set(ids.values()) == {1}   # a clean stop repeats nobody
