"""How long `newsletter report` takes over 1,000,000 stored click events.

    .venv/bin/python bench/bench_report.py [--events 1000000] [--pg postgresql://...]

Builds a database with one issue sent with individual tracking to 10,000 recipients in three
overlapping lists, 20 links (2 downloads, 1 honeypot) and N click events over 30 days (10% marked
as scanners), inserted directly as from a backup; ``track recount``'s rebuild then fills the
counts kept as events are written (m072), which the report reads. Times the whole command
(process start to exit) for each breakdown and format, and the aggregation alone beside a
reference measured in the same run: the same events counted by one GROUP BY (what a report
that reads every event pays at the least). Aim: under a second.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from newsletter import db
from newsletter import report as reporting
from newsletter.tracking import rollup

SLUG = "bench"
SENT_AT = 1_780_000_000.0


def seed(database: db.Database, events: int, recipients: int = 10_000) -> None:
    rng = random.Random(7)
    links = [(f"l{i:02d}", "download" if i < 2 else ("honeypot" if i == 19 else "article"))
             for i in range(20)]
    with database.engine.begin() as conn:
        conn.execute(db.issues.insert().values(slug=SLUG, subject="Bench issue",
                                               tracking="individual", opens=False,
                                               created_at=SENT_AT, updated_at=SENT_AT))
        conn.execute(db.links.insert(), [
            {"issue": SLUG, "link_id": lid, "url": f"https://example.org/{lid}",
             "text": f"Link {lid}", "section": "News", "kind": kind} for lid, kind in links])
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": f"r{i}@org{i % 150}.example", "pseudonym": f"p{i:05d}",
             "organisation": f"Org {i % 150}", "domain": f"org{i % 150}.example",
             "created_at": SENT_AT} for i in range(1, recipients + 1)])
        conn.execute(db.deliveries.insert(), [
            {"issue": SLUG, "recipient_id": i, "status": "sent", "message_id": f"<{i}@b>",
             "pseudonym": f"p{i:05d}", "sent_at": SENT_AT, "updated_at": SENT_AT}
            for i in range(1, recipients + 1)])
        conn.execute(db.delivery_lists.insert(), [
            {"issue": SLUG, "recipient_id": i, "list_key": key}
            for i in range(1, recipients + 1)
            for key in ("all", "schools" if i % 3 == 0 else "health",
                        *(["police"] * (i % 7 == 0)))])
    chunk = 100_000
    reasons = ["burst", "head", "after-delivery", "scanner-agent"]
    done = 0
    while done < events:
        rows = []
        for _ in range(min(chunk, events - done)):
            lid, kind = links[rng.randrange(20)]
            scanner = kind == "honeypot" or rng.random() < 0.1
            rows.append({
                "at": SENT_AT + rng.random() * 30 * 86400, "issue": SLUG, "kind": "click",
                "link_id": lid, "pseudonym": f"p{rng.randrange(1, recipients + 1):05d}",
                "list_key": "", "method": "GET", "user_agent": "Mozilla/5.0",
                "ip_hash": f"{rng.randrange(1 << 32):08x}", "scanner": scanner,
                "reasons": ("honeypot" if kind == "honeypot" else rng.choice(reasons))
                if scanner else ""})
        with database.engine.begin() as conn:
            conn.execute(db.events.insert(), rows)
        done += len(rows)
    start = time.perf_counter()
    with database.engine.begin() as conn:
        rollup.rebuild(conn)
    print(f"counts rebuilt from the events (track recount) in {time.perf_counter() - start:.1f} s")
    if database.is_sqlite:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    # from an empty folder: in the repository, ISSUE "bench" would name the bench/ folder
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def fresh_pg(url: str) -> None:
    """The PostgreSQL database ``url`` names, created if missing and emptied."""
    admin = db.create_db_engine(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        if not c.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).first():
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    engine = db.create_db_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", ""),
                        help="also run against this PostgreSQL database (emptied first)")
    args = parser.parse_args()
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        targets.append(("sqlite", "sqlite:///" + str(Path(tmp) / "bench.db")))
        if args.pg:
            targets.append(("postgresql", args.pg))
        for name, url in targets:
            if name == "postgresql":
                fresh_pg(url)
            database = db.open_db(url)
            start = time.perf_counter()
            seed(database, args.events)
            print(f"[{name}] seeded {args.events:,} click events in "
                  f"{time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            data = reporting.build(database, SLUG)
            build_s = time.perf_counter() - start
            with database.engine.connect() as conn:
                total = conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar()
                start = time.perf_counter()
                e = db.events
                conn.execute(sa.select(e.c.kind, e.c.scanner, e.c.link_id, sa.func.count())
                             .where(e.c.issue == SLUG)
                             .group_by(e.c.kind, e.c.scanner, e.c.link_id)).all()
                reference = time.perf_counter() - start
            database.close()
            print(f"[{name}] aggregation alone (report.build): {build_s * 1000:.0f} ms over "
                  f"{total:,} events; clicks {data['clicks']['total']:,}, unique "
                  f"{data['clicks']['unique']:,}, scanners {data['clicks']['scanners']:,}; "
                  f"reference, the events by one GROUP BY: {reference * 1000:.0f} ms")
            version = timed([newsletter, "--version"])
            print(f"[{name}] `newsletter --version` (process start-up only): {version:.2f} s")
            for extra in (["--by", "link"], ["--by", "list"], ["--by", "organisation"],
                          ["--by", "day"], ["--format", "json"], ["--format", "html"]):
                with tempfile.NamedTemporaryFile(suffix=".out") as out:
                    command = [newsletter, "report", SLUG, "--db", url, *extra, "-o", out.name]
                    best = min(timed(command) for _ in range(3))
                print(f"[{name}] newsletter report {SLUG} {' '.join(extra):<20} "
                      f"{best:.2f} s (best of 3, whole command)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
