"""The real tracker: `newsletter track serve` as a subprocess, stopped with SIGTERM mid-stream."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest
import sqlalchemy as sa
from helpers import start_tracker, stop_group

from newsletter import db
from newsletter.tracking.tokens import signer_for

CLICKS = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tracker exited early: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"tracker did not open port {port}")


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_sigterm_stores_every_click_served(tracking_db, tmp_path, server: str) -> None:  # type: ignore[no-untyped-def]
    signer = signer_for(tracking_db)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY")}
    command = [shutil.which("newsletter") or "newsletter", "track", "serve",
               "--port", str(port), "--db", tracking_db.url, "--server", server,
               # no timed flush during the test: every click waits in the queue for SIGTERM
               "--flush-interval", "3600"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process)
        served = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as http:
            for i in range(CLICKS):
                token = signer.click("spring", ("a1", "d1", "e1")[i % 3],
                                     pseudonym=f"p{1 + i % 5}")
                response = http.get(f"/c/{token}")
                assert response.headers["referrer-policy"] == "no-referrer"
                served += response.status_code == 302
            # the real server hands the app the raw path: encoded slashes stay malformed
            assert http.get("/c/abc%2Fdef").status_code == 400
            assert http.get("/c//evil.example").status_code == 400
            assert http.get(f"/c/{token[:-4]}").status_code == 404
        assert count_clicks(tracking_db) == 0  # all still queued in the tracker
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert served == CLICKS
    assert f"Stopped; {CLICKS} event(s) stored." in err
    assert count_clicks(tracking_db) == CLICKS


def count_clicks(database) -> int:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(db.events)
                            .where(db.events.c.kind == "click")).scalar()


def test_serve_says_when_the_port_is_taken(tmp_path, runner, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["track", "serve", "--port", str(port),
                                      "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 1
    assert (f"cannot listen on 127.0.0.1:{port}: Address already in use by process "
            f"{os.getpid()} (") in result.output
    assert f"hint: if that is a tracker left running, stop it with `kill {os.getpid()}`" \
        in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_workers_with_uvicorn(tmp_path, runner, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["track", "serve", "--server", "uvicorn", "--workers", "2",
                                  "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2
    assert "--workers needs --server granian" in result.output


def click_until_stopped(port: int, tokens: list[str], answered: list[int], stop) -> None:  # type: ignore[no-untyped-def]
    """One keep-alive client: count every 302 received whole, until the tracker is gone."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    try:
        while not stop.is_set():
            connection.request("GET", f"/c/{tokens[i % len(tokens)]}")
            response = connection.getresponse()
            response.read()
            if response.status == 302:
                answered[0] += 1
            i += 1
    except (OSError, http.client.HTTPException):
        return  # killed under us: the request in flight was never answered
    finally:
        connection.close()


@pytest.mark.parametrize("workers,flush", [("1", "3600"), ("2", "0.05")])
def test_sigkill_loses_no_click_it_answered(tracking_db, tmp_path, workers: str,  # type: ignore[no-untyped-def]
                                            flush: str) -> None:
    """Under load, SIGKILL the tracker and all its workers; the next start stores every click
    a client received a 302 for. Flush interval 3600 s: everything waits in the journal;
    0.05 s: the kill falls among batches being stored."""
    import threading

    signer = signer_for(tracking_db)
    tokens = [signer.click("spring", link, pseudonym=f"p{1 + n}")
              for n in range(5) for link in ("a1", "d1", "e1")]
    port = free_port()
    process = start_tracker(tracking_db.url, tmp_path, port, "--workers", workers,
                            "--flush-interval", flush)
    counters = [[0] for _ in range(4)]
    stop = threading.Event()
    clients = [threading.Thread(target=click_until_stopped, args=(port, tokens, c, stop))
               for c in counters]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while sum(c[0] for c in counters) < 1500 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        stop.set()
        stop_group(process)
        for client in clients:
            client.join(30)
    answered = sum(c[0] for c in counters)
    assert answered >= 1500
    if flush == "3600":
        # nothing was stored before the kill: every click must come back from the journal
        # (at 0.05 s a loaded machine may have stored them all, so that run only checks totals)
        assert count_clicks(tracking_db) < answered
    port = free_port()
    again = start_tracker(tracking_db.url, tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 60
            while (health := http.get("/healthz")).text != "ok 0\n":
                assert time.monotonic() < deadline, health.text
                time.sleep(0.05)
        again.send_signal(signal.SIGTERM)
        out, err = again.communicate(timeout=60)
    finally:
        stop_group(again)
    assert again.returncode == 0, err
    assert "left in the journal by an earlier run" in err
    # Every click answered is stored. A request in flight at the kill may have been journaled
    # with its 302 not yet received: at most one per connection more.
    assert answered <= count_clicks(tracking_db) <= answered + len(clients)
    assert list((tmp_path / "journal").glob("hits-*.jsonl")) == []
