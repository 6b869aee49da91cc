"""CPU time the event writer spends per hit (classifying and storing), beside a bare insert.

    .venv/bin/python bench/bench_writer.py [--hits 100000] [--db URL]

The tracker answers a click before storing it; the writer thread then classifies and inserts
the queued hits in batches. On a small machine that thread shares the CPUs (and the GIL) with the
request path, so its cost per hit is what limits sustained redirects per second. Two traffic
shapes, each stored by ``EventWriter.flush`` in batches of 1,000 (what a busy tracker's 50 ms
flush collects), on a fresh SQLite file (or --db, emptied first):

- ``one client``: what bench_tracker.py sends, one link of an aggregate issue from one address;
- ``mixed``: an individual-tracking issue, 2,000 recipients, people and scanner passes (a
  client hitting many links, the honeypot, views), in time order.

The reference, measured in the same run on the same rows: the same INSERT executed directly
(``executemany`` in one transaction per batch), i.e. storing with no classification at all.
Figures are process CPU time (less sensitive than wall time to other load on the machine).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from newsletter import db
from newsletter.tracking import events
from newsletter.tracking.events import EventWriter, Hit

T0 = 1_780_000_000.0
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


def one_client(n: int) -> list[Hit]:
    return [Hit(at=T0 + i * 0.0001, issue="bench", kind="click", link_id="a1",
                list_key="partners", user_agent="wrk", ip_hash="127.0.0.1")
            for i in range(n)]


def mixed(n: int) -> list[Hit]:
    rng = random.Random(1)
    links = [f"l{i}" for i in range(13)]
    hits: list[Hit] = []
    at = T0
    while len(hits) < n:
        who = f"p{rng.randrange(2000)}"
        at += rng.uniform(0.001, 0.02)
        if rng.random() < 0.6:  # a scanner pass over the whole message
            ip = f"scan{rng.randrange(50)}"
            for j, link in enumerate([*links, "hp"]):
                hits.append(Hit(at=at + j * 0.2, issue="bench", kind="click", link_id=link,
                                pseudonym=who, user_agent=AGENT, ip_hash=ip,
                                reasons=["honeypot"] if link == "hp" else []))
            hits.append(Hit(at=at + 3, issue="bench", kind="view", user_agent=AGENT, ip_hash=ip))
        else:  # a person: a link or two
            for j in range(rng.choice((1, 1, 2))):
                hits.append(Hit(at=at + j * 40, issue="bench", kind="click",
                                link_id=rng.choice(links), pseudonym=who, user_agent=AGENT,
                                ip_hash=f"home{rng.randrange(5000)}"))
    hits.sort(key=lambda h: h.at)
    return hits[:n]


def fresh(url: str) -> db.Database:
    database = db.open_db(url)
    with database.engine.begin() as conn:
        conn.execute(db.events.delete())
    return database


def timed_writer(url: str, hits: list[Hit], batch: int) -> float:
    database = fresh(url)
    try:
        writer = EventWriter(database)
        started = time.process_time()
        for i in range(0, len(hits), batch):
            for hit in hits[i:i + batch]:
                writer.add(hit)
            writer.flush()
        return time.process_time() - started
    finally:
        database.close()


def timed_insert(url: str, hits: list[Hit], batch: int) -> float:
    database = fresh(url)
    try:
        started = time.process_time()
        for i in range(0, len(hits), batch):
            with database.engine.begin() as conn:
                conn.exec_driver_sql(events._insert_sql(conn),
                                     [hit.values() for hit in hits[i:i + batch]])
        return time.process_time() - started
    finally:
        database.close()


def copies(hits: list[Hit]) -> list[Hit]:
    """The same hits, unclassified (the writer adds reasons to the objects it is given)."""
    return [Hit(at=h.at, issue=h.issue, kind=h.kind, link_id=h.link_id, pseudonym=h.pseudonym,
                list_key=h.list_key, user_agent=h.user_agent, ip_hash=h.ip_hash,
                reasons=list(h.reasons)) for h in hits]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or "sqlite:///" + str(Path(tmp) / "writer.db")
        print(f"{args.hits:,} hits in batches of {args.batch}; CPU µs per hit "
              f"(database {url.split(':')[0]})")
        print(f"{'':12} {'bare insert':>12} {'EventWriter':>12} {'difference':>11}")
        for name, make in (("one client", one_client), ("mixed", mixed)):
            hits = make(args.hits)
            bare = timed_insert(url, copies(hits), args.batch) / len(hits) * 1e6
            writer = timed_writer(url, copies(hits), args.batch) / len(hits) * 1e6
            print(f"{name:12} {bare:>12.1f} {writer:>12.1f} {writer - bare:>+11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
