"""Storing tracking hits: a batched writer that loses nothing on shutdown, and data retention.

The tracker answers a click before the click is in the database: the request appends the hit to an
in-memory queue and a writer thread inserts the queue in one transaction every ``flush_interval``
seconds (50 ms by default). One transaction per batch instead of one per click is what lets SQLite
keep up with a burst of scanner traffic. :meth:`EventWriter.close` (called from the server's
lifespan shutdown, which uvicorn runs on SIGTERM and Ctrl+C) writes whatever is left, so a stopped
tracker has stored every click it redirected.

The writer also finishes classifying hits (see :mod:`newsletter.tracking.classify`): the
``after-delivery`` reason needs the ledger's ``sent_at`` and the ``burst`` reason needs the hits
around it, kept here in a small per-sender window.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from newsletter import db
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.tracking import classify


@dataclass(slots=True)
class Hit:
    """One raw request to the tracker, before it is stored."""

    at: float
    issue: str
    kind: str  # click | view | open
    link_id: str = ""
    pseudonym: str = ""
    list_key: str = ""
    method: str = "GET"
    user_agent: str = ""
    ip_hash: str = ""
    reasons: list[str] = field(default_factory=list)

    def values(self) -> tuple:
        """The row for :data:`_COLUMNS`."""
        reasons = classify.join_reasons(self.reasons) if self.reasons else ""
        return (self.at, self.issue, self.kind, self.link_id, self.pseudonym, self.list_key,
                self.method, self.user_agent[:512], self.ip_hash, bool(reasons), reasons)


_COLUMNS = ("at", "issue", "kind", "link_id", "pseudonym", "list_key", "method", "user_agent",
            "ip_hash", "scanner", "reasons")


def _insert_sql(conn: sa.Connection) -> str:
    mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
    return (f"INSERT INTO {db.events.name} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})")


class _Window:
    """Recent click hits of one sender, to spot many links hit in one burst."""

    __slots__ = ("hits", "links", "marked_to")

    def __init__(self) -> None:
        self.hits: deque[tuple[float, str]] = deque()
        self.links: dict[str, int] = {}
        self.marked_to = float("-inf")

    def add(self, at: float, link: str, span: float) -> None:
        self.hits.append((at, link))
        self.links[link] = self.links.get(link, 0) + 1
        while self.hits and at - self.hits[0][0] > span:
            _, old = self.hits.popleft()
            self.links[old] -= 1
            if not self.links[old]:
                del self.links[old]


class EventWriter:
    """Queue hits from the request path; insert them in batches from one background thread."""

    def __init__(self, database: Database, rules: classify.Rules | None = None, *,
                 flush_interval: float = 0.05, max_batch: int = 5000,
                 spill_dir: str = "") -> None:
        self.database = database
        self.spill_dir = spill_dir
        self.rules = rules or classify.Rules()
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.stored = 0
        self._queue: deque[Hit] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self._sent_at: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, ...], _Window] = {}
        self.pending_spilled = 0

    # -- request side ---------------------------------------------------------------------
    def add(self, hit: Hit) -> None:
        """Queue one hit (cheap, thread-safe: deque.append is atomic)."""
        self._queue.append(hit)
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and write everything still queued.

        If the database cannot take them (it is down, or the disk is full), the events go to a
        JSON-lines file instead, named on stderr, so that stopping never loses a click.
        """
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.flush()
        except Exception as exc:
            path = self.spill()
            print(f"tracker: could not store {self.pending_spilled} event(s) ({exc}); "
                  f"saved them to {path}", file=sys.stderr)

    def spill(self, folder: Path | None = None) -> Path:
        """Write every queued hit to ``events-unsaved-<pid>-<time>.jsonl`` and empty the queue."""
        folder = folder or Path(self.spill_dir or tempfile.gettempdir())
        path = folder / f"events-unsaved-{os.getpid()}-{int(time.time())}.jsonl"
        hits = list(self._queue)
        with path.open("a", encoding="utf-8") as out:
            for hit in hits:
                out.write(json.dumps(dict(zip(_COLUMNS, hit.values(), strict=True))) + "\n")
        self._queue.clear()
        self.pending_spilled = len(hits)
        return path

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # keep the hits queued and try again next round
                print(f"tracker: could not store events yet ({exc}); will retry",
                      file=sys.stderr)
                time.sleep(min(1.0, self.flush_interval * 10))

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every queued hit now; return how many were written."""
        written = 0
        with self._flush_lock:
            while self._queue:
                batch: list[Hit] = []
                while self._queue and len(batch) < self.max_batch:
                    batch.append(self._queue.popleft())
                try:
                    self._write(batch)
                except Exception:
                    self._queue.extendleft(reversed(batch))
                    raise
                written += len(batch)
        self.stored += written
        return written

    def _write(self, batch: list[Hit]) -> None:
        with self.database.engine.begin() as conn:
            self._mark_after_delivery(conn, batch)
            # the driver's executemany with plain tuples: one prepared statement for the batch,
            # none of the per-row parameter processing of a Core insert (the hot loop here)
            conn.exec_driver_sql(_insert_sql(conn), [hit.values() for hit in batch])
            self._mark_bursts(conn, batch)

    def _mark_after_delivery(self, conn: sa.Connection, batch: list[Hit]) -> None:
        wanted = {(h.issue, h.pseudonym) for h in batch
                  if h.pseudonym and (h.issue, h.pseudonym) not in self._sent_at}
        by_issue: dict[str, list[str]] = {}
        for issue, pseudonym in wanted:
            by_issue.setdefault(issue, []).append(pseudonym)
        for issue, names in by_issue.items():
            query = (sa.select(db.recipients.c.pseudonym, db.deliveries.c.sent_at)
                     .join(db.deliveries, db.deliveries.c.recipient_id == db.recipients.c.id)
                     .where(db.deliveries.c.issue == issue,
                            db.recipients.c.pseudonym.in_(names),
                            db.deliveries.c.sent_at.is_not(None)))
            for pseudonym, sent_at in conn.execute(query):
                if len(self._sent_at) > 200_000:
                    self._sent_at.clear()
                self._sent_at[(issue, pseudonym)] = sent_at
        for hit in batch:
            sent_at = self._sent_at.get((hit.issue, hit.pseudonym)) if hit.pseudonym else None
            if classify.after_delivery(self.rules, hit.at, sent_at):
                hit.reasons.append("after-delivery")

    def _mark_bursts(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Mark every hit of a sender's window once it holds ``burst_links`` distinct links.

        The window lives here, in the writer, so bursts are seen among the hits one tracker
        instance serves; behind a load balancer, balance on the client address (docs).
        """
        span = self.rules.burst_seconds
        bursts: dict[tuple[str, ...], tuple[float, float]] = {}
        for hit in batch:
            if hit.kind != "click":
                continue
            key = ((hit.issue, "r", hit.pseudonym) if hit.pseudonym
                   else (hit.issue, "a", hit.ip_hash, hit.user_agent))
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            window.add(hit.at, hit.link_id, span)
            if len(window.links) >= self.rules.burst_links:
                start = max(window.hits[0][0], window.marked_to)
                first, _ = bursts.get(key, (start, hit.at))
                bursts[key] = (min(first, start), hit.at)
                window.marked_to = hit.at
        e = db.events
        for key, (first, last) in bursts.items():
            who = ([e.c.pseudonym == key[2]] if key[1] == "r"
                   else [e.c.pseudonym == "", e.c.ip_hash == key[2], e.c.user_agent == key[3]])
            conn.execute(
                e.update()
                .where(e.c.issue == key[0], e.c.at >= first, e.c.at <= last,
                       e.c.kind == "click", *who, e.c.reasons.not_like("%burst%"))
                .values(scanner=True, reasons=sa.case((e.c.reasons == "", "burst"),
                                                      else_=e.c.reasons + ",burst")))
        if len(self._windows) > 10_000:
            latest = batch[-1].at
            self._windows = {k: w for k, w in self._windows.items()
                             if w.hits and latest - w.hits[-1][0] <= span}


def store(database: Database, hits: Iterable[Hit], rules: classify.Rules | None = None) -> int:
    """Classify and write ``hits`` at once (tests, imports): the writer without its thread."""
    writer = EventWriter(database, rules)
    for hit in hits:
        writer.add(hit)
    return writer.flush()


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``180d`` -> seconds. Units: s, m, h, d, w."""
    match = _AGE.match(text or "")
    if not match:
        raise NewsletterError(
            f"--older-than {text!r} is not an age",
            hint="give a number and a unit: s, m, h, d (days) or w (weeks), e.g. 180d")
    seconds = float(match.group(1)) * _UNIT[match.group(2).lower()]
    if seconds <= 0:
        raise NewsletterError(f"--older-than {text!r} must be more than zero",
                              hint="e.g. 180d keeps the last 180 days")
    return seconds


def purge(database: Database, older_than: float, *, issue: str | None = None) -> int:
    """Delete events older than ``older_than`` seconds (data retention); return how many."""
    cutoff = db.now() - older_than
    query = db.events.delete().where(db.events.c.at < cutoff)
    if issue:
        query = query.where(db.events.c.issue == issue)
    with database.engine.begin() as conn:
        return conn.execute(query).rowcount or 0
