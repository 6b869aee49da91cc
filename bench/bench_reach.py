"""How long `newsletter report --all` and one issue's report take over millions of events.

    .venv/bin/python bench/bench_reach.py [--issues 20] [--events 5000000] [--pg URL]

Builds a database with ``--issues`` issues (half individual tracking to 2,000 recipients, half
aggregate through three lists), 20 links each (2 downloads, 1 honeypot), the sample project's
ten outlets, and ``--events`` events spread over the issues: clicks, views and feedback answers
through the email and the outlets, 10% probable scanners. The events are inserted directly
(like a restore from a backup), then ``newsletter track recount``'s rebuild fills the kept
counts (m072) from them; that rebuild reads every event once.

Figures, each beside its reference measured in the same run on the same data:

- ``report --all`` (in-process and the whole command, best of 3) beside the same counts taken
  from the events, one GROUP BY over every event (what a report that reads events pays);
- one issue's report (the largest, in-process and the whole command) beside that issue's
  events counted by one GROUP BY.

Targets (issue 13): ``report --all`` under 2 s over 20 issues and 5,000,000 events on SQLite
and PostgreSQL; one issue's report under 1 s on PostgreSQL over 1,000,000 events.
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

from newsletter import db, reach
from newsletter import report as reporting
from newsletter.tracking import rollup

from bench_report import fresh_pg  # isort: skip  (the benchmark beside this one)

SENT_AT = 1_760_000_000.0          # 2025-10-09
OUTLETS = ["email", "kscmp-newsletter", "kmsab-newsletter", "facebook", "knet", "viva-engage",
           "medspace", "kelsi", "partner-websites", "gp-surgeries", "public-screens", "direct",
           "unknown"]
RECIPIENTS = 2_000


def _issue(n: int) -> tuple[str, str, float]:
    return f"issue-{n:02d}", "individual" if n % 2 == 0 else "aggregate", \
        SENT_AT + n * 30 * 86400


def seed(database: db.Database, issues: int, events: int) -> None:
    """The issues, their ledger and the events (inserted directly, counts not kept)."""
    rng = random.Random(13)
    links = [(f"l{i:02d}", "download" if i < 2 else ("honeypot" if i == 19 else "article"))
             for i in range(20)]
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": f"r{i}@org{i % 150}.example", "pseudonym": f"r{i}",
             "organisation": f"Org {i % 150}", "domain": f"org{i % 150}.example",
             "created_at": SENT_AT} for i in range(1, RECIPIENTS + 1)])
        conn.execute(db.outlets.insert(), [
            {"id": o, "name": o.replace("-", " ").title(), "kind": "website",
             "created_at": SENT_AT, "updated_at": SENT_AT} for o in OUTLETS[1:-2]])
        for n in range(issues):
            slug, tracking, sent = _issue(n)
            conn.execute(db.issues.insert().values(slug=slug, subject=f"Issue {n}",
                                                   tracking=tracking, created_at=sent,
                                                   updated_at=sent))
            conn.execute(db.links.insert(), [
                {"issue": slug, "link_id": lid, "url": f"https://example.org/{slug}/{lid}",
                 "text": f"Link {lid}", "section": "News", "kind": kind} for lid, kind in links])
            conn.execute(db.deliveries.insert(), [
                {"issue": slug, "recipient_id": i, "status": "sent",
                 "message_id": f"<{slug}.{i}@b>", "pseudonym": f"{slug}-p{i}", "sent_at": sent,
                 "updated_at": sent} for i in range(1, RECIPIENTS + 1)])
            conn.execute(db.delivery_lists.insert(), [
                {"issue": slug, "recipient_id": i,
                 "list_key": ("schools", "health", "police")[i % 3]}
                for i in range(1, RECIPIENTS + 1)])
    # One issue gets a fifth of the events (the per-issue figure), the rest share the others.
    weights = [max(1, issues // 4)] + [1] * (issues - 1)
    chunk = 100_000
    done = 0
    reasons = ["burst", "head", "after-delivery", "scanner-agent"]
    while done < events:
        rows = []
        for _ in range(min(chunk, events - done)):
            n = rng.choices(range(issues), weights)[0]
            slug, tracking, sent = _issue(n)
            outlet = OUTLETS[0] if rng.random() < 0.6 else rng.choice(OUTLETS[1:])
            roll = rng.random()
            kind = "view" if roll < 0.3 else ("feedback" if roll < 0.33 else "click")
            link, link_kind = rng.choice(links) if kind == "click" else ("", "")
            if kind == "feedback":
                link = rng.choice(("yes", "no"))
            scanner = link_kind == "honeypot" or rng.random() < 0.1
            person = f"{slug}-p{rng.randrange(1, RECIPIENTS + 1)}" \
                if tracking == "individual" and outlet == "email" and kind == "click" else ""
            rows.append({
                "at": sent + rng.random() * 30 * 86400, "issue": slug, "kind": kind,
                "link_id": link, "pseudonym": person,
                "list_key": rng.choice(("schools", "health", "police"))
                if tracking == "aggregate" and outlet == "email" else "",
                "method": "GET", "user_agent": "Mozilla/5.0",
                "ip_hash": f"{rng.randrange(1 << 32):08x}", "scanner": scanner,
                "reasons": ("honeypot" if link_kind == "honeypot" else rng.choice(reasons))
                if scanner else "", "outlet": outlet})
        with database.engine.begin() as conn:
            conn.execute(db.events.insert(), rows)
        done += len(rows)


def _analyse(database: db.Database) -> None:
    if database.is_sqlite:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")


def best(work, times: int = 3) -> float:  # type: ignore[no-untyped-def]
    found = []
    for _ in range(times):
        start = time.perf_counter()
        work()
        found.append(time.perf_counter() - start)
    return min(found)


def _from_events(database: db.Database, issue: str | None = None) -> None:
    """The reference: the same counts taken from the events, one GROUP BY over them."""
    e = db.events
    query = sa.select(e.c.issue, e.c.kind, e.c.scanner, e.c.link_id, e.c.outlet,
                      sa.func.count()).group_by(e.c.issue, e.c.kind, e.c.scanner, e.c.link_id,
                                                e.c.outlet)
    if issue:
        query = query.where(e.c.issue == issue)
    with database.engine.connect() as conn:
        conn.execute(query).all()


def _command(arguments: list[str]) -> float:
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")

    def run() -> None:
        with tempfile.NamedTemporaryFile(suffix=".out") as out:
            subprocess.run([newsletter, "report", *arguments, "-o", out.name], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return best(run)


def run_one(name: str, url: str, issues: int, events: int) -> None:
    if name == "postgresql":
        fresh_pg(url)
    database = db.open_db(url)
    try:
        start = time.perf_counter()
        seed(database, issues, events)
        print(f"[{name}] seeded {issues} issues, {events:,} events in "
              f"{time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        with database.engine.begin() as conn:
            rollup.rebuild(conn)
        print(f"[{name}] counts rebuilt from the events (track recount) in "
              f"{time.perf_counter() - start:.1f} s")
        _analyse(database)
        with database.engine.connect() as conn:
            kept = sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                       for t in (db.event_counts, db.event_reasons, db.event_people))
        print(f"[{name}] kept counts: {kept:,} rows for {events:,} events")
        biggest = _issue(0)[0]
        with database.engine.connect() as conn:
            in_biggest = conn.execute(sa.select(sa.func.count()).select_from(db.events)
                                      .where(db.events.c.issue == biggest)).scalar_one()
        every = best(lambda: reach.across(database))
        reference = best(lambda: _from_events(database))
        print(f"[{name}] report --all, figures only: {every * 1000:7.0f} ms   reference, the "
              f"events counted by one GROUP BY: {reference * 1000:7.0f} ms")
        one = best(lambda: reporting.build(database, biggest))
        reference = best(lambda: _from_events(database, biggest))
        print(f"[{name}] report {biggest} ({in_biggest:,} events), figures only: "
              f"{one * 1000:7.0f} ms   reference, its events by one GROUP BY: "
              f"{reference * 1000:7.0f} ms")
    finally:
        database.close()
    whole_all = _command(["--all", "--format", "json", "--db", url])
    whole_one = _command([biggest, "--format", "json", "--db", url])
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    startup = best(lambda: subprocess.run([newsletter, "--version"], check=True,
                                          stdout=subprocess.DEVNULL))
    print(f"[{name}] whole command (best of 3): report --all {whole_all:.2f} s, report "
          f"{biggest} {whole_one:.2f} s; process start-up alone (newsletter --version) "
          f"{startup:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", ""),
                        help="also run against this PostgreSQL database (emptied first)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{args.issues} issues, {args.events:,} events; load average {load:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        run_one("sqlite", "sqlite:///" + str(Path(tmp) / "bench.db"), args.issues, args.events)
        if args.pg:
            run_one("postgresql", args.pg, args.issues, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
