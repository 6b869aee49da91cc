"""Storing tracking hits: a batched writer that loses nothing on shutdown, and data retention.

The tracker answers a click before the click is in the database: the request appends the hit to an
in-memory queue and a writer thread inserts the queue in one transaction every ``flush_interval``
seconds (50 ms by default). One transaction per batch instead of one per click is what lets SQLite
keep up with a burst of scanner traffic. :meth:`EventWriter.close` (called from the server's
lifespan shutdown, which uvicorn runs on SIGTERM and Ctrl+C) writes whatever is left, so a stopped
tracker has stored every click it redirected.

The writer also finishes classifying hits (see :mod:`newsletter.tracking.classify`): before a
batch is inserted, its hits go through the :class:`~newsletter.tracking.classify.Classifier`,
which needs the messages' delivery times (read from the ledger, cached) and the hits before them
(kept in its memory); the hits of earlier batches whose verdict it changed are updated in the
same transaction, so a report always counts the latest classification.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import json.encoder
import os
import re
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from newsletter import db
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.journal import Journal, Segment, count_lines, read_lines
from newsletter.tracking import classify, rollup


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
    # the outlet it came through (newsletter.outlets); a journal line from before outlets
    # has none, and came from the email
    outlet: str = "email"

    def values(self) -> tuple:
        """The row for :data:`_COLUMNS`."""
        reasons = classify.join_reasons(self.reasons) if self.reasons else ""
        return (self.at, self.issue, self.kind, self.link_id, self.pseudonym, self.list_key,
                self.method, self.user_agent[:512], self.ip_hash, bool(reasons), reasons,
                classify.VERSION, self.outlet)


HIT_FIELDS: tuple[str, ...] = tuple(Hit.__slots__)
_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, in C

# A journal line is a JSON array of these (each segment's header lists them, so a later version
# can still read an older segment). The time is whole microseconds ("at_us"): formatting a
# float's shortest repr was a fifth of the journal's cost per hit. Written by hand below, field
# by field, at under half the cost of json.dumps; a test checks every field of Hit round-trips.
JOURNAL_FIELDS = ("at_us", "issue", "kind", "link_id", "pseudonym", "list_key", "method",
                  "user_agent", "ip_hash", "reasons", "outlet")


def _journal_line(hit: Hit) -> bytes:
    q = _quote
    return (f"[{round(hit.at * 1_000_000)},{q(hit.issue)},{q(hit.kind)},{q(hit.link_id)},"
            f"{q(hit.pseudonym)},{q(hit.list_key)},{q(hit.method)},{q(hit.user_agent)},"
            f"{q(hit.ip_hash)},[{','.join(map(q, hit.reasons))}],{q(hit.outlet)}]\n").encode()


def _journal_parser(fields: tuple[str, ...]) -> Callable[[bytes], Hit | None]:
    """Reads a journal line written with ``fields`` (None for a line that cannot be read)."""
    def parse(line: bytes) -> Hit | None:
        try:
            data = dict(zip(fields, json.loads(line), strict=True))
            if "at_us" in data:
                data["at"] = data.pop("at_us") / 1_000_000
            return Hit(**{name: data[name] for name in HIT_FIELDS if name in data})
        except (ValueError, TypeError):
            return None
    return parse


def _spill_line(line: bytes) -> Hit | None:
    """A line of an ``events-unsaved-*.jsonl`` file (older versions): the columns of events."""
    try:
        row = json.loads(line)
        reasons = row.get("reasons") or ""
        return Hit(at=float(row["at"]), issue=str(row["issue"]), kind=str(row["kind"]),
                   link_id=str(row.get("link_id") or ""),
                   pseudonym=str(row.get("pseudonym") or ""),
                   list_key=str(row.get("list_key") or ""), method=str(row.get("method") or "GET"),
                   user_agent=str(row.get("user_agent") or ""),
                   ip_hash=str(row.get("ip_hash") or ""),
                   reasons=[r for r in str(reasons).split(",") if r],
                   outlet=str(row.get("outlet") or "email"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _positions(database: Database, names: list[str]) -> dict[str, int]:
    """How far the database holds each of the segments ``names``."""
    if not names:
        return {}
    t = db.journal_segments
    with database.engine.connect() as conn:
        return {row.segment: row.position for row in conn.execute(
            sa.select(t.c.segment, t.c.position).where(t.c.segment.in_(names)))}


def _record_positions(conn: sa.Connection, positions: dict[str, int],
                      forget: list[str]) -> None:
    t = db.journal_segments
    if positions:
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(t)
        conn.execute(insert.on_conflict_do_update(
            index_elements=[t.c.segment],
            set_={"position": insert.excluded.position, "updated_at": insert.excluded.updated_at}),
            [{"segment": name, "position": end, "updated_at": db.now()}
             for name, end in positions.items()])
    if forget:
        conn.execute(t.delete().where(t.c.segment.in_(forget)))


_COLUMNS = ("at", "issue", "kind", "link_id", "pseudonym", "list_key", "method", "user_agent",
            "ip_hash", "scanner", "reasons", "classifier", "outlet")


def _insert_sql(conn: sa.Connection) -> str:
    mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
    return (f"INSERT INTO {db.events.name} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})")


def _update_sql(conn: sa.Connection) -> str:
    """A later verdict about one stored hit, found by its time and who made it (the time alone
    is unique in practice; ``ix_events_issue_at`` finds it)."""
    mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
    # SQLite would pick a report index on (issue, kind, ...) and read every click of the issue
    # per row; PostgreSQL's planner finds ix_events_issue_at on its own.
    table = (f"{db.events.name} INDEXED BY ix_events_issue_at" if conn.dialect.name == "sqlite"
             else db.events.name)
    return (f"UPDATE {table} SET scanner = {mark}, reasons = {mark}, "
            f"classifier = {mark} WHERE issue = {mark} AND at = {mark} AND kind = {mark} "
            f"AND link_id = {mark} AND pseudonym = {mark} AND ip_hash = {mark}")


class EventWriter:
    """Take hits from the request path; insert them in batches from one background thread.

    With a :class:`~newsletter.journal.Journal`, :meth:`add` writes each hit to this
    process's journal segment before it returns, so the caller may answer the request knowing
    the hit survives a crash; the batches then also record how far each segment is stored.
    Without one (library use, tests) hits wait in memory only, as before.
    """

    def __init__(self, database: Database, rules: classify.Rules | None = None, *,
                 flush_interval: float = 0.05, max_batch: int = 5000,
                 spill_dir: str = "", journal: Journal | None = None,
                 max_queue: int = 200_000, patience: float = 60.0) -> None:
        self.database = database
        self.spill_dir = spill_dir
        self.rules = rules or classify.Rules()
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.batch_size = max_batch     # shrinks while writes fail, grows back as they succeed
        self._successes = 0
        self.journal = journal
        self.max_queue = max_queue      # beyond this, hits wait in the journal file only
        self.patience = patience        # seconds of failed writes before /healthz says 503
        self.stored = 0                 # hits written by this process, replayed ones included
        self.received = 0               # hits added (request side only)
        self._stored_own = 0            # of the hits added here (writer side only)
        self.replay_waiting = 0         # hits of dead processes' segments not yet stored
        self.failing_since: float | None = None
        self.last_error = ""
        self.replayed = journal is None  # dead processes' segments stored (after start-up)
        self._queue: deque[tuple[Hit, Segment | None, int]] = deque()
        self._closed_segments: list[Segment] = []
        self._forget: list[str] = []    # journal_segments rows of deleted segments
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.classifier = classify.Classifier(self.rules)
        self._deliveries = _Deliveries()
        # hits classified but not yet committed (a failed batch is retried: classify it once)
        self._classified: dict[int, Hit] = {}
        # stored hits whose verdict changed, until the transaction updating them commits
        self._changed: dict[int, Hit] = {}
        # the reasons each hit the classifier may still change was stored with: what a change
        # takes off the counts (rollup); pruned by age, read back from the database if gone
        self._stored_as: dict[int, tuple[Hit, str]] = {}
        # called after each flush that stored hits, with the flush lock held (the server
        # reviews recent unsubscribes against the classifier's latest verdicts)
        self.after_flush: Callable[[], None] | None = None
        # issues whose events this version of the rules is recorded to classify
        self._versioned: set[str] = set()
        self._versions_pending: set[str] = set()
        self._said_at = 0.0
        self._said = ""
        self._journal_trouble = ""
        self.pending_spilled = 0

    # -- request side ---------------------------------------------------------------------
    def add(self, hit: Hit) -> None:
        """Take one hit: in the journal (when there is one) before this returns, then queued.

        Called from the server's event loop; cheap (one ``write()`` of one line) and
        thread-safe. If the journal cannot be written (a full disk), the hit is kept in
        memory only and the trouble is reported on stderr and by ``/healthz``.
        """
        entry: tuple[Hit, Segment | None, int] | None = (hit, None, 0)  # None: file only
        journal = self.journal
        if journal is not None:
            line = _journal_line(hit)
            with journal.lock:
                try:
                    segment, end = journal.append(line)
                except OSError as exc:
                    self._journal_failed(exc)
                else:
                    self._journal_trouble = ""
                    if segment.file_only_from is None and len(self._queue) >= self.max_queue:
                        segment.file_only_from = end - len(line)
                    entry = (hit, segment, end) if segment.file_only_from is None else None
                if entry is not None:
                    self._queue.append(entry)
        else:
            self._queue.append((hit, None, 0))
        self.received += 1
        if len(self._queue) >= self.max_batch and self.failing_since is None:
            self._wake.set()

    def _journal_failed(self, exc: OSError) -> None:
        text = exc.strerror or str(exc)
        if text != self._journal_trouble:
            self._journal_trouble = text
            print(f"tracker: cannot write the journal ({text}); hits are kept in memory only "
                  "until it can be written again", file=sys.stderr, flush=True)

    @property
    def pending(self) -> int:
        """Hits answered but not yet in the database: queued, in the journal, or orphaned."""
        return self.received - self._stored_own + self.replay_waiting

    def health(self) -> str | None:
        """Why the tracker is unwell (for /healthz), or None."""
        if self._journal_trouble:
            return f"cannot write the journal: {self._journal_trouble}"
        if self.failing_since is not None and time.monotonic() - self.failing_since >= \
                self.patience:
            return (f"cannot store events for {time.monotonic() - self.failing_since:.0f} s: "
                    f"{self.last_error}")
        if not self.replayed:
            return "storing the hits an earlier run left in the journal"
        return None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and write everything still waiting.

        If the database cannot take them (it is down, or the disk is full), the hits stay in
        the journal, stored when the tracker next starts; without a journal they go to a
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
            if self.journal is not None:
                print(f"tracker: could not store {self.pending} event(s) "
                      f"({db.describe_error(exc)}); they are kept in the journal in "
                      f"{self.journal.folder} and stored when the tracker next starts",
                      file=sys.stderr, flush=True)
                self.journal.close()
                return
            path = self.spill()
            print(f"tracker: could not store {self.pending_spilled} event(s) "
                  f"({db.describe_error(exc)}); saved them to {path}", file=sys.stderr)
            return
        if self.journal is not None:
            current = self.journal.current
            self.journal.close()
            if current is not None and current.stored_to >= current.size:
                self.journal.remove(current)
                self._forget.append(current.name)
            with contextlib.suppress(Exception):  # only tidiness: stale rows are harmless
                with self.database.engine.begin() as conn:
                    _record_positions(conn, {}, self._forget)
                self._forget = []

    def spill(self, folder: Path | None = None) -> Path:
        """Write every queued hit to ``events-unsaved-<pid>-<time>.jsonl`` and empty the queue."""
        folder = folder or Path(self.spill_dir or tempfile.gettempdir())
        path = folder / f"events-unsaved-{os.getpid()}-{int(time.time())}.jsonl"
        hits = [entry[0] for entry in self._queue]
        with path.open("a", encoding="utf-8") as out:
            for hit in hits:
                out.write(json.dumps(dict(zip(_COLUMNS, hit.values(), strict=True))) + "\n")
        self._queue.clear()
        self._stored_own += len(hits)
        self.pending_spilled = len(hits)
        return path

    def _run(self) -> None:
        delay = self.flush_interval
        while True:
            try:
                if not self.replayed:
                    self.replay()
                self.flush()
            except Exception as exc:  # keep the hits and try again, a smaller batch, later
                self._failed(exc, delay)
                delay = min(delay * 2, 5.0)
            else:
                if self.failing_since is not None:
                    self._recovered()
                delay = self.flush_interval
            if self.journal is not None:
                self.journal.sync()
            if self._stop:
                return
            self._wake.wait(delay)
            self._wake.clear()

    def _failed(self, exc: BaseException, delay: float) -> None:
        """Say what the writer waits for: at once, then at most every 10 s unless it changes."""
        text = db.describe_error(exc)
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.last_error = text
        if text != self._said or now - self._said_at >= 10:
            self._said, self._said_at = text, now
            print(f"tracker: cannot store events yet ({text}); {self.pending} waiting"
                  f"{' in the journal' if self.journal else ''}, retrying in {delay:.1f} s",
                  file=sys.stderr, flush=True)

    def _recovered(self) -> None:
        seconds = time.monotonic() - (self.failing_since or time.monotonic())
        self.failing_since = None
        self._said = ""
        print(f"tracker: storing events again after {seconds:.0f} s", file=sys.stderr,
              flush=True)

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every waiting hit now; return how many were written.

        A batch that fails goes back whole; the next try takes half as many, down to one, so
        a nearly full disk or an oversized transaction still lets hits through. Success grows
        the batch back.
        """
        written = 0
        with self._flush_lock:
            while self._queue:
                entries = [self._queue.popleft()
                           for _ in range(min(self.batch_size, len(self._queue)))]
                positions: dict[str, int] = {}
                for _, segment, end in entries:
                    if segment is not None:
                        positions[segment.name] = end
                try:
                    self._commit([entry[0] for entry in entries], positions)
                except Exception:
                    self._queue.extendleft(reversed(entries))
                    raise
                for _, segment, end in entries:
                    if segment is not None:
                        segment.stored_to = end
                self._stored_own += len(entries)
                written += len(entries)
            written += self._flush_journal_files()
            if written and self.after_flush is not None:
                try:
                    self.after_flush()
                except Exception as exc:  # a review never stops the storing
                    print(f"tracker: {exc!r} after storing events", file=sys.stderr, flush=True)
        return written

    def _commit(self, batch: list[Hit], positions: dict[str, int]) -> None:
        """One transaction: the hits, and how far their segments are now stored."""
        forget = self._forget
        try:
            self._write(batch, positions, forget)
        except Exception:
            self.batch_size = max(1, len(batch) // 2)
            self._successes = 0
            raise
        self._forget = self._forget[len(forget):]
        self.stored += len(batch)
        # Grow back slowly: straight after a failure the cause (a nearly full disk) is
        # likely still there, and a batch that fails every other time never catches up.
        self._successes += 1
        if self._successes >= 8 and self.batch_size < self.max_batch:
            self.batch_size = min(self.max_batch, self.batch_size * 2)
            self._successes = 0

    def _flush_journal_files(self) -> int:
        """Store hits that wait only in this process's segments; delete finished segments."""
        journal = self.journal
        if journal is None:
            return 0
        written = 0
        current = journal.current
        if current is not None and (current.file_only_from is not None
                                    or current.size >= journal.max_segment_bytes):
            self._closed_segments.append(journal.rotate())
        for segment in list(self._closed_segments):
            if segment.file_only_from is not None and segment.stored_to >= \
                    segment.file_only_from:
                written += self._store_lines(segment.path, segment.name, segment.stored_to,
                                             _journal_parser(JOURNAL_FIELDS), segment=segment)
            if segment.stored_to >= segment.size:
                journal.remove(segment)
                self._forget.append(segment.name)
                self._closed_segments.remove(segment)
        return written

    def replay(self) -> int:
        """Store the hits of journal segments left by processes that died; return how many.

        Each is stored from where the database says it was reached, then deleted. A segment
        written for another database is left alone, with a warning naming it.
        """
        journal = self.journal
        if journal is None:
            return 0
        written = 0
        orphans = list(journal.orphans())
        try:
            ours = [o for o in orphans if o.header["database"] == journal.database_id]
            positions = _positions(self.database, [o.name for o in ours])
            starts = {o.name: max(o.start, positions.get(o.name, 0)) for o in ours}
            self.replay_waiting = sum(count_lines(o.path, starts[o.name]) for o in ours)
            for orphan in orphans:
                if orphan.header["database"] is None:  # died before writing a hit
                    orphan.remove()
                elif orphan.header["database"] != journal.database_id:
                    print(f"tracker: {orphan.path} holds hits for another database; start the "
                          "tracker on that database to store them", file=sys.stderr,
                          flush=True)
                    orphan.release()
                else:
                    count = self._store_lines(
                        orphan.path, orphan.name, starts[orphan.name],
                        _journal_parser(tuple(orphan.header["fields"])), replay=True)
                    written += count
                    orphan.remove()
                    self._forget.append(orphan.name)
                    if count:
                        print(f"tracker: stored {count} hit(s) left in the journal by an "
                              f"earlier run ({orphan.name})", file=sys.stderr, flush=True)
        finally:
            for orphan in orphans:
                orphan.release()
        self.replay_waiting = 0
        self.replayed = True
        return written

    def _store_lines(self, path: Path, name: str, offset: int,
                     parse: Callable[[bytes], Hit | None], *, segment: Segment | None = None,
                     replay: bool = False, tail: bool = False) -> int:
        """Store the hits of a journal file from ``offset``, recording each batch's end."""
        written = 0
        batch: list[Hit] = []
        start = end = offset
        for line, position in read_lines(path, offset, tail=tail):
            if not line.strip():
                end = position
                continue
            hit = parse(line)
            if hit is None:
                print(f"tracker: {path}: the unreadable line at byte {end} is left out",
                      file=sys.stderr, flush=True)
            else:
                batch.append(hit)
            end = position
            if len(batch) >= self.batch_size:
                self._commit(batch, {name: end})
                written += self._stored_lines(batch, end, segment, replay)
                batch = []
                start = end
        if end > start:
            self._commit(batch, {name: end})
            written += self._stored_lines(batch, end, segment, replay)
        return written

    def _stored_lines(self, batch: list[Hit], end: int, segment: Segment | None,
                      replay: bool) -> int:
        if segment is not None:
            segment.stored_to = end
            self._stored_own += len(batch)
        if replay:
            self.replay_waiting = max(0, self.replay_waiting - len(batch))
        return len(batch)

    def _write(self, batch: list[Hit], positions: dict[str, int] | None = None,
               forget: list[str] | None = None) -> None:
        deltas = rollup.Deltas()
        stored_as: list[tuple[Hit, str]] = []
        with self.database.engine.begin() as conn:
            if batch:
                self._note_version(conn, batch)
                self._classify(conn, batch)
                # the driver's executemany with plain tuples: one prepared statement for the
                # batch, none of the per-row parameter processing of a Core insert (the hot
                # loop here)
                rows = [hit.values() for hit in batch]
                conn.exec_driver_sql(_insert_sql(conn), rows)
                for hit, row in zip(batch, rows, strict=True):
                    deltas.stored(hit, row[10])
                    stored_as.append((hit, row[10]))
            stored_as += self._update_earlier(conn, deltas)
            # the counts in the same transaction as the events they count
            rollup.apply(conn, deltas)
            # in the same transaction: a replay after a crash starts where these hits end
            _record_positions(conn, positions or {}, forget or [])
        # only now: a failed transaction leaves the changes to be stored by the next one
        self._changed = {}
        for hit in batch:
            self._classified.pop(id(hit), None)
        self._remember_stored(stored_as)
        self._versioned |= self._versions_pending
        self._versions_pending = set()

    # -- classifying ----------------------------------------------------------------------
    def _classify(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Run the batch's new hits through the classifier; note stored hits it changed."""
        fresh = [h for h in batch if self._classified.get(id(h)) is not h]
        if not fresh:
            return
        self._load_deliveries(conn, fresh)
        # The classifier hands back hits it was given, in this batch or an earlier one.
        changed = cast(list[Hit], self.classifier.observe(fresh, self._deliveries))
        for hit in fresh:
            self._classified[id(hit)] = hit
        in_batch = {id(h) for h in batch}
        for hit in changed:
            if id(hit) not in in_batch and self._classified.get(id(hit)) is not hit:
                self._changed[id(hit)] = hit  # stored already: its row needs the new verdict

    def _note_version(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Record that this version of the rules classifies events of these issues (once per
        issue and process; the report reads it)."""
        new = {h.issue for h in batch} - self._versioned
        if not new:
            return
        t = db.event_classifiers
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(t)
        conn.execute(insert.on_conflict_do_nothing(),
                     [{"issue": issue, "classifier": classify.VERSION} for issue in sorted(new)])
        self._versions_pending = new

    def _update_earlier(self, conn: sa.Connection,
                        deltas: rollup.Deltas) -> list[tuple[Hit, str]]:
        """Store the new verdicts of earlier hits, and move them on the counts from their old
        verdict to the new one; return each hit with the reasons now stored."""
        if not self._changed:
            return []
        rows = []
        stored_as = []
        for hit in self._changed.values():
            reasons = classify.join_reasons(hit.reasons)
            before = self._stored_as.get(id(hit))
            was = before[1] if before is not None and before[0] is hit else \
                self._reasons_stored(conn, hit)
            if was is None:   # not in the database (deleted meanwhile): nothing to move
                continue
            deltas.changed(hit, was, reasons)
            stored_as.append((hit, reasons))
            rows.append((bool(reasons), reasons, classify.VERSION, hit.issue, hit.at, hit.kind,
                         hit.link_id, hit.pseudonym, hit.ip_hash))
        if rows:
            conn.exec_driver_sql(_update_sql(conn), rows)
        return stored_as

    @staticmethod
    def _reasons_stored(conn: sa.Connection, hit: Hit) -> str | None:
        """The reasons ``hit`` is stored with, read back (its memory was pruned)."""
        e = db.events
        return conn.execute(sa.select(e.c.reasons).where(
            e.c.issue == hit.issue, e.c.at == hit.at, e.c.kind == hit.kind,
            e.c.link_id == hit.link_id, e.c.pseudonym == hit.pseudonym,
            e.c.ip_hash == hit.ip_hash).limit(1)).scalar()

    def _remember_stored(self, stored_as: list[tuple[Hit, str]]) -> None:
        """Note what each committed hit was stored with; forget hits too old for the
        classifier to change (it reaches back no further than its widest window; an hour's
        margin)."""
        if not stored_as:
            return
        known = self._stored_as
        for hit, reasons in stored_as:
            known[id(hit)] = (hit, reasons)
        if len(known) > 100_000:
            rules = self.rules
            horizon = max(h.at for h, _ in stored_as) - 3600 - max(
                rules.client_seconds, rules.sweep_seconds)
            self._stored_as = {k: v for k, v in known.items() if v[0].at >= horizon}

    def suspected(self, issue: str, ip_hash: str, user_agent: str, at: float) -> bool:
        """Whether the classifier holds this address and browser a probable scanner on
        ``issue`` at ``at`` (hits still queued are stored, and so classified, first)."""
        # if the database is away, judge on what is classified already; the writer keeps trying
        with contextlib.suppress(Exception):
            self.flush()
        with self._flush_lock:
            return self.classifier.suspected(issue, ip_hash, user_agent, at)

    def _load_deliveries(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Delivery times of the batch's recipients not yet known (from the ledger)."""
        self._deliveries.load(conn, batch)


class _Deliveries:
    """When each message reached its recipient's server, as the classifier asks (cached).

    The ledger's ``delivered_at`` when a provider or a DSN reported it, else ``sent_at``. A
    report often comes seconds after the scanners it is needed for, so a message known only by
    its send time is read again once :attr:`RECHECK` seconds of hits have passed (for a day:
    a report that late changes nothing the rules look at).
    """

    RECHECK = 10.0   # seconds (of hit time) before a message without delivered_at is read again
    REFRESH = 30.0   # seconds (of hit time) before an issue's list of deliveries is read again

    def __init__(self) -> None:
        # (issue, pseudonym) -> (delivery time or None, final, read at)
        self._delivered: dict[tuple[str, str], tuple[float | None, bool, float]] = {}
        self._issues: dict[str, tuple[float, list[float]]] = {}

    def of(self, issue: str, pseudonym: str) -> float | None:
        known = self._delivered.get((issue, pseudonym))
        return known[0] if known else None

    def any_between(self, issue: str, start: float, end: float) -> bool:
        times = self._issues.get(issue, (0.0, []))[1]
        i = bisect.bisect_left(times, start)
        return i < len(times) and times[i] <= end

    def load(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Read what the batch's hits need and the cache does not hold (or holds stale)."""
        self._load_messages(conn, batch)
        self._load_issues(conn, batch)

    def _load_messages(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """The delivery time of each message the batch's hits came from."""
        wanted: dict[str, set[str]] = {}
        for hit in batch:
            if not hit.pseudonym:
                continue
            known = self._delivered.get((hit.issue, hit.pseudonym))
            if known is None or (not known[1] and hit.at - known[2] >= self.RECHECK):
                wanted.setdefault(hit.issue, set()).add(hit.pseudonym)
        if len(self._delivered) > 200_000:
            self._delivered.clear()
        d = db.deliveries
        for issue, names in wanted.items():
            read_at = max(h.at for h in batch if h.issue == issue)
            for name in names:
                self._delivered[(issue, name)] = (None, False, read_at)
            query = (sa.select(d.c.pseudonym, d.c.sent_at, d.c.delivered_at)
                     .where(d.c.issue == issue, d.c.pseudonym.in_(names),
                            d.c.sent_at.is_not(None)))
            for pseudonym, sent_at, delivered_at in conn.execute(query):
                final = delivered_at is not None or read_at - sent_at > 86400
                self._delivered[(issue, pseudonym)] = (_delivery(sent_at, delivered_at), final,
                                                       read_at)

    def _load_issues(self, conn: sa.Connection, batch: list[Hit]) -> None:
        """Every delivery time of each issue the batch's views are of."""
        d = db.deliveries
        for issue in {h.issue for h in batch if h.kind == "view"}:
            latest = max(h.at for h in batch if h.issue == issue)
            loaded = self._issues.get(issue)
            if loaded is not None and latest - loaded[0] < self.REFRESH:
                continue
            times = sorted(_delivery(sent, delivered) for sent, delivered in conn.execute(
                sa.select(d.c.sent_at, d.c.delivered_at)
                .where(d.c.issue == issue, d.c.sent_at.is_not(None))))
            self._issues[issue] = (latest, times)
            if len(self._issues) > 1000:
                self._issues = {issue: self._issues[issue]}


def _delivery(sent_at: float, delivered_at: float | None) -> float:
    # A provider's clock a little behind ours must not put delivery before the send.
    return sent_at if delivered_at is None else max(sent_at, delivered_at)


SPILL_PATTERN = "events-unsaved-*.jsonl"


def _spill_name(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "spill:" + digest.hexdigest()


def spill_imported(database: Database, path: Path) -> bool:
    """Whether :func:`import_spill` has stored the whole of ``path``."""
    name = _spill_name(path)
    return _positions(database, [name]).get(name, 0) >= path.stat().st_size


def import_spill(database: Database, path: Path) -> tuple[int, bool]:
    """Store the events of a file older versions saved when the database could not take them.

    Returns ``(events stored, already imported)``. Each file is imported once: its content's
    SHA-256 and how far it was stored are kept in ``journal_segments``, in the same transaction
    as its events, so a second import (or one after an interruption) stores nothing twice.
    """
    name = _spill_name(path)
    size = path.stat().st_size
    done = _positions(database, [name]).get(name, 0)
    if done >= size:
        return 0, True
    writer = EventWriter(database)
    count = writer._store_lines(path, name, done, _spill_line, tail=True)
    return count, False


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


def purge(database: Database, older_than: float, *,
          issue: str | None = None) -> tuple[int, int]:
    """Delete events older than ``older_than`` seconds, and readers' feedback comments from
    before then (data retention); return how many of each."""
    from newsletter.feedback import purge_comments

    cutoff = db.now() - older_than
    deleted = 0
    # In batches, each taken off the counts in its own transaction: a purge of millions of
    # events neither holds one huge transaction nor leaves counts that disagree with events.
    while True:
        with database.engine.begin() as conn:
            count = rollup.delete_events(conn, cutoff, issue, 50_000)
        deleted += count
        if count < 50_000:
            break
    with database.engine.begin() as conn:
        return deleted, purge_comments(conn, cutoff, issue)
