"""The real tracker on 127.0.0.1 against hostile connections, and its workers' lifetime.

Thousands of connections that send nothing, or send headers a line at a time, are one script
away for anyone on the internet; they must not stop a person's click being answered.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time

import httpx
import pytest
import sqlalchemy as sa
from helpers import alive, child_pids, free_port, start_tracker, stop_group

from newsletter import db
from newsletter.tracking.tokens import signer_for

IDLE = 2000
SLOW = 2000


@pytest.fixture
def many_files():  # type: ignore[no-untyped-def]
    """Room for this test's sockets (the tracker raises its own limit at start-up)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE + SLOW + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            pytest.fail(f"this test needs {wanted} open files and the hard limit is {hard}: "
                        "raise it (ulimit -Hn) to run it")
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_connections(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def still_open(sockets: list[socket.socket]) -> int:
    """How many the server has neither closed nor answered (nothing to read yet)."""
    count = 0
    for sock in sockets:
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def test_idle_and_slow_header_connections_do_not_stop_a_click(tracking_db, tmp_path,  # type: ignore[no-untyped-def]
                                                              many_files) -> None:
    token = signer_for(tracking_db).click("spring", "a1", pseudonym="p1")
    port = free_port()
    process = start_tracker(tracking_db.url, tmp_path, port)
    idle = slow = []
    try:
        idle = open_connections(port, IDLE)
        slow = open_connections(port, SLOW)
        time.sleep(0.5)  # let the connections finish opening
        for sock in slow:  # headers begun, never finished: a "slowloris"
            with contextlib.suppress(BlockingIOError):
                sock.send(b"GET /c/" + token.encode() + b" HTTP/1.1\r\nHost: t.example.org\r\n")
        with httpx.Client(timeout=1.0) as http:  # the requirement: answered within 1 s
            response = http.get(f"http://127.0.0.1:{port}/c/{token}")
        assert response.status_code == 302
        assert response.headers["location"] == "https://example.org/review"
        # they were all still open while the click was answered
        assert still_open(idle) == IDLE and still_open(slow) == SLOW
    finally:
        for sock in idle + slow:
            sock.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        stop_group(process)
    assert process.returncode == 0, err
    with tracking_db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar() == 1


def test_sigkill_of_the_main_process_takes_its_workers_with_it(tracking_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = signer_for(tracking_db).click("spring", "a1", pseudonym="p1")
    port = free_port()
    process = start_tracker(tracking_db.url, tmp_path, port, "--workers", "2",
                            "--flush-interval", "3600")
    try:
        workers = child_pids(process.pid)
        with httpx.Client() as http:
            for _ in range(10):
                assert http.get(f"http://127.0.0.1:{port}/c/{token}").status_code == 302
        os.kill(process.pid, signal.SIGKILL)  # the main process only
        # Bounds for a loaded machine, not timings: each worker stores its hits and stops.
        process.communicate(timeout=120)
        deadline = time.monotonic() + 120
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its main process"
            time.sleep(0.05)
        again = start_tracker(tracking_db.url, tmp_path, port)  # the port is free again
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
    finally:
        stop_group(process)
    assert len(workers) >= 2
    with tracking_db.engine.connect() as conn:  # the workers stopped cleanly: nothing lost
        assert conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar() == 10



def test_an_orphaned_worker_ends_after_the_grace(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.tracking import hardening

    ended = []
    monkeypatch.setattr(os, "_exit", ended.append)
    # a main process that is not our parent: ours died, and we were handed to another
    hardening.watch_parent(os.getppid() + 1_000_000, grace=0.01, every=0.01)
    assert ended == [0]


def test_a_worker_whose_main_process_lives_keeps_serving(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.tracking import hardening

    checks = []
    monkeypatch.setattr(os, "_exit", lambda code: pytest.fail("ended a worker with a parent"))
    # stop the watch after a few looks, through its sleep, without ending anything
    def sleep(seconds: float) -> None:
        checks.append(seconds)
        if len(checks) == 3:
            raise StopIteration
    monkeypatch.setattr(hardening.time, "sleep", sleep)
    with pytest.raises(StopIteration):
        hardening.watch_parent(os.getppid(), grace=0.01, every=0.01)
    assert checks == [0.01, 0.01, 0.01]
