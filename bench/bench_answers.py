"""What keeping every answer durable costs `send`: a transaction per answer, or a journal line.

    .venv/bin/python bench/bench_answers.py [--rows 5000] [--pg URL]

An answer from the mail server must be durable before that connection sends its next message
(issue 11). Two ways, measured here on the real ledger (SQLite; PostgreSQL too with --pg or
NEWSLETTER_TEST_PG_URL), each by 4 threads at once as `send --concurrency 4` would:

- per answer: ``ledger.record`` of one result, one transaction each;
- journal: one ``write()`` of the answer to the send journal (``send_journal.py``), then
  ``ledger.record`` of 20 results at a time, as the loop does.

It prints microseconds of wall time per answer for each, beside Postfix's smtp-source's time
per message at 4 connections on this machine if it is installed (the budget a send shares).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from newsletter import db, ledger
from newsletter.send_journal import AnswerJournal

THREADS = 4


def seed(url: str, rows: int) -> None:
    database = db.open_db(url)
    try:
        with database.engine.begin() as conn:
            conn.execute(db.deliveries.delete().where(db.deliveries.c.issue == "bench"))
            conn.execute(db.recipients.delete().where(db.recipients.c.address.like("%@bench")))
            conn.execute(db.recipients.insert(), [
                {"address": f"r{i}@bench", "pseudonym": f"bench-{i}", "created_at": 0.0}
                for i in range(rows)])
            ids = conn.execute(sa.select(db.recipients.c.id)
                               .where(db.recipients.c.address.like("%@bench"))).scalars().all()
            conn.execute(db.deliveries.insert(), [
                {"issue": "bench", "recipient_id": rid, "status": "pending",
                 "message_id": f"<{rid}@bench>", "updated_at": 0.0} for rid in ids])
    finally:
        database.close()


def run(url: str, rows: int, way: str, folder: Path) -> float:
    """Wall seconds per answer over ``rows`` answers by THREADS threads."""
    seed(url, rows)
    database = db.open_db(url)
    journal = None
    if way == "journal":
        journal = AnswerJournal(folder, database)
        journal.open()

    def worker() -> None:
        token = ledger.worker_token()
        while True:
            claimed = ledger.claim(database, "bench", token, 50)
            if not claimed:
                return
            if journal:
                journal.claimed(token, "bench")
            pending: list[ledger.Result] = []
            for row in claimed:
                result = ledger.Result(row.recipient_id, "sent", provider_id="250 ok")
                if journal is None:
                    ledger.record(database, "bench", token, [result])
                    continue
                journal.trying(token, [row.recipient_id])
                journal.answered(token, [result])
                pending.append(result)
                if len(pending) == 20:
                    ledger.record(database, "bench", token, pending)
                    pending = []
            if pending:
                ledger.record(database, "bench", token, pending)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if journal:
        journal.close(everything_recorded=True)
    database.close()
    return elapsed / rows


def smtp_source_per_message(count: int = 5000) -> float | None:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not (Path(sink).exists() and Path(source).exists()):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sink, "-u", "nobody", f"127.0.0.1:{port}", "256"]
    if os.geteuid() != 0:
        command = [sink, f"127.0.0.1:{port}", "256"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        subprocess.run([source, "-s", str(THREADS), "-m", str(count), "-l", "20000",
                        "-f", "a@example.org", "-t", "b@example.org", f"127.0.0.1:{port}"],
                       check=True, stdout=subprocess.DEVNULL)
        return (time.perf_counter() - start) / count
    finally:
        server.terminate()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--pg", default=os.environ.get("NEWSLETTER_TEST_PG_URL", ""))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"SQLite": "sqlite:///" + str(Path(tmp) / "bench.db")}
        if args.pg:
            urls["PostgreSQL"] = args.pg
        print(f"{args.rows} answers by {THREADS} threads; load average "
              f"{os.getloadavg()[0]:.1f}; µs of wall time per answer")
        reference = smtp_source_per_message()
        if reference is not None:
            print(f"  smtp-source, 4 connections, 20 kB messages: {reference * 1e6:8.1f} "
                  "per message (the budget)")
        for name, url in urls.items():
            for way in ("per-answer", "journal"):
                seconds = run(url, args.rows, way, Path(tmp) / "journal")
                print(f"  {name:10} {way:11} {seconds * 1e6:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
