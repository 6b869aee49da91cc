"""Send's journal: every answer is on disk before that connection sends its next message.

The send loop writes the ledger in batches (``LoopOptions.record_every`` answers at a time), so
without this a crash (SIGKILL, power cut of the process, the out-of-memory killer) forgot every
answer of the batch in progress, and the next ``send`` sent those messages again: up to 20 per
connection. Now each worker writes, with one ``write()`` each:

- ``["c", token, issue]`` when it claims rows;
- ``["t", token, [rid, ...]]`` just before it hands those rows' messages over;
- ``["r", token, rid, status, error, provider_id, next_attempt_at, attempt, recipient_problem]``
  for each answer, before the next message goes, and for each row it gives back untried
  (``error`` null: the row keeps its last error).

The next ``send`` (:func:`replay`) applies a dead process's journal to the ledger, exactly: the
answers it holds are recorded, rows handed over without an answer become ``unknown`` (the only
messages that may arrive twice, at most one per connection, each retried with the same
Message-ID), and rows claimed but never tried go back as they were. Everything is conditional
on the row still being claimed by that token, so replaying twice, or after the batch reached
the database, changes nothing.

Measured against a transaction per answer (``bench/bench_answers.py``): see docs/sending.md.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from newsletter import db, ledger
from newsletter.db import Database
from newsletter.journal import Journal, read_lines

PREFIX = "answers-"
FIELDS = ("entry",)          # each line says what it is in its first value


class AnswerJournal:
    """One ``send`` process's journal (thread-safe: every worker writes to it)."""

    def __init__(self, folder: Path, database: Database, *, sync_every: float = 1.0) -> None:
        self.journal = Journal(folder, db.database_id(database), FIELDS, prefix=PREFIX)
        self.sync_every = sync_every
        self._synced_at = time.monotonic()

    @property
    def folder(self) -> Path:
        return self.journal.folder

    def open(self) -> None:
        self.journal.open()

    def _write(self, lines: Iterable[list]) -> None:
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        if not data:
            return
        with self.journal.lock:
            self.journal.append(data)
        # No fsync per answer (6-7 ms each here): a write() survives any crash of this
        # process; a sync now and then bounds what a power cut could take, as for the database.
        if time.monotonic() - self._synced_at >= self.sync_every:
            self._synced_at = time.monotonic()
            self.journal.sync()

    def claimed(self, token: str, slug: str) -> None:
        """Rows of ``slug`` are about to be claimed with ``token``."""
        self._write([["c", token, slug]])

    def trying(self, token: str, recipient_ids: Sequence[int]) -> None:
        """These rows' messages are about to be handed over."""
        self._write([["t", token, list(recipient_ids)]])

    def answered(self, token: str, results: Iterable[ledger.Result]) -> None:
        """What became of rows: answers, or rows given back untried."""
        self._write([["r", token, r.recipient_id, str(r.status), r.error, r.provider_id,
                      r.next_attempt_at, r.counts_as_attempt, r.recipient_problem]
                     for r in results])

    def close(self, *, everything_recorded: bool) -> None:
        """Delete the journal when the ledger holds everything it says; else keep it for the
        next ``send`` (the lock goes with this process)."""
        segment = self.journal.current
        if segment is None:
            return
        if everything_recorded:
            self.journal.remove(segment)
            self.journal.current = None
        else:
            self.journal.close()


@dataclass
class Replayed:
    """What :func:`replay` did to the ledger."""

    recorded: int = 0        # answers written that the ledger did not have yet
    in_flight: int = 0       # rows handed over without an answer: now unknown
    given_back: int = 0      # rows claimed but never tried: back as they were

    def __bool__(self) -> bool:
        return bool(self.recorded or self.in_flight or self.given_back)


def replay(database: Database, folder: Path) -> Replayed:
    """Apply the journals that dead ``send`` processes left in ``folder`` to the ledger."""
    done = Replayed()
    if not folder.is_dir():
        return done
    journal = Journal(folder, db.database_id(database), FIELDS, prefix=PREFIX)
    for orphan in journal.orphans():
        try:
            if orphan.header["database"] is None:
                orphan.remove()
                continue
            if orphan.header["database"] != journal.database_id:
                print(f"send: {orphan.path} holds answers for another database; run `newsletter "
                      "send` on that database to record them", file=sys.stderr, flush=True)
                continue
            _apply(database, _read(orphan.path, orphan.start), done)
            orphan.remove()
        finally:
            orphan.release()
    return done


@dataclass
class _Claim:
    slug: str
    trying: set[int]
    results: dict[int, ledger.Result]


def _read(path: Path, start: int) -> dict[str, _Claim]:
    claims: dict[str, _Claim] = {}
    for line, _ in read_lines(path, start):
        try:
            entry = json.loads(line)
            kind, token = entry[0], entry[1]
            if kind == "c":
                claims.setdefault(token, _Claim(entry[2], set(), {}))
            elif kind == "t" and token in claims:
                claims[token].trying.update(int(rid) for rid in entry[2])
            elif kind == "r" and token in claims:
                rid, status, error, provider, due, attempt, problem = entry[2:9]
                claims[token].results[int(rid)] = ledger.Result(
                    int(rid), status, error, provider, float(due), bool(attempt), bool(problem))
        except (ValueError, TypeError, IndexError, KeyError):
            # A line cut short by the crash (the last one) or damaged: its row is treated as
            # having no entry, which errs towards "unknown" (sent again, same Message-ID).
            continue
    return claims


def _apply(database: Database, claims: dict[str, _Claim], done: Replayed) -> None:
    for token, claim in claims.items():
        held = ledger.claimed_by(database, claim.slug, token)   # what the ledger lacks
        answered = held & set(claim.results)
        in_flight = (held & claim.trying) - answered
        ledger.record(database, claim.slug, token,
                      [claim.results[rid] for rid in sorted(answered)])
        ledger.mark_in_flight(database, claim.slug, token, in_flight)
        ledger.release(database, claim.slug, token)
        done.recorded += len(answered)
        done.in_flight += len(in_flight)
        done.given_back += len(held - answered - in_flight)


