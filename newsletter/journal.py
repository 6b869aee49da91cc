"""Journals: what a process must not forget is in a file before it acts on it.

Two users: the tracker writes each hit before it answers the request
(``tracking/events.py``), and ``send`` writes each server answer before that connection
sends its next message (``send_journal.py``). Both then store what they wrote in the
database in batches, and a process that died leaves its journal for the next one to store.

Each process appends to segment files of its own, ``<folder>/<prefix><host>-<pid>-<random>.jsonl``,
one ``write()`` per entry. The first line of a segment is a JSON header naming the database it
belongs to and the fields of its entries; each further line is one entry, a JSON array.

What a ``write()`` survives: SIGKILL, an out-of-memory kill or any crash of the process (the
bytes are in the kernel's page cache the moment ``write()`` returns). What it does not survive
alone: the machine losing power before the kernel writes the page out. Users call :meth:`sync`
(``fdatasync``) now and then, which bounds that window the same way the database's own setting
does (SQLite in WAL mode with ``synchronous=NORMAL`` does not sync every commit either).
``fdatasync`` per entry was measured at 6-7 ms on this machine's disk, which would cap a tracker
worker near 150 clicks/s: see docs/tracking.md.

A process holds an exclusive ``flock`` on each of its segments while it runs; a segment nobody
holds belongs to a process that died (:meth:`Journal.orphans`). Several processes and instances
may share one folder: a segment names the database it belongs to, and one for another database
is left alone (with a warning).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
PREFIX = "hits-"        # the tracker's segments (the default)
SUFFIX = ".jsonl"


class JournalError(Exception):
    """A segment cannot be read as a journal (not ours, or damaged at the start)."""


@dataclass(eq=False)
class Segment:
    """One journal file this process writes (or wrote) to."""

    path: Path
    fd: int
    size: int            # bytes written so far, header included
    start: int           # where the first entry begins (after the header line)
    hits: int = 0        # entries written to it
    closed: bool = False  # no more writes: a newer segment took over
    stored_to: int = 0   # the database holds every entry before this offset
    # Hits from this offset on were written to the file but not queued in memory (the queue
    # was full): the writer reads them back from the file.
    file_only_from: int | None = None

    @property
    def name(self) -> str:
        return self.path.name


def _header(database_id: str, fields: tuple[str, ...]) -> bytes:
    return (json.dumps({"journal": VERSION, "database": database_id, "fields": list(fields),
                        "pid": os.getpid(), "host": socket.gethostname()[:64],
                        "created": time.time()}) + "\n").encode()


class Journal:
    """This process's segments in ``folder``: append entries, rotate, find orphans."""

    def __init__(self, folder: Path, database_id: str, fields: tuple[str, ...], *,
                 max_segment_bytes: int = 32 * 1024 * 1024, prefix: str = PREFIX) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.database_id = database_id
        self.fields = fields
        self.max_segment_bytes = max_segment_bytes
        self.lock = threading.Lock()
        self.current: Segment | None = None
        self._synced = 0

    # -- writing --------------------------------------------------------------------------
    def open(self) -> Segment:
        """Start a new segment (the first, or after :meth:`rotate`); create the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = (f"{self.prefix}{socket.gethostname()[:30]}-{os.getpid()}-"
                f"{secrets.token_hex(4)}{SUFFIX}")
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                     0o600)
        # Held until the process ends: whoever can take it knows this process is gone.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = _header(self.database_id, self.fields)
        _write_all(fd, header)
        segment = Segment(path=path, fd=fd, size=len(header), start=len(header),
                          stored_to=len(header))
        self.current = segment
        return segment

    def append(self, line: bytes) -> tuple[Segment, int]:
        """Write one entry's line (ending in a newline); return its segment and end offset.

        Call with :attr:`lock` held, so that a rotation cannot fall between the write and the
        caller queueing the entry.
        """
        segment = self.current
        assert segment is not None, "the journal is open while the tracker serves"
        try:
            written = os.write(segment.fd, line)
            if written != len(line):  # only a signal or a full disk splits a few hundred bytes
                _write_all(segment.fd, line[written:])
        except OSError:
            # Part of the line may have reached the file (a full disk): cut it off, or the next
            # line would be glued to it.
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.size)
            raise
        segment.size += len(line)
        segment.hits += 1
        return segment, segment.size

    def rotate(self) -> Segment:
        """Start a new segment for new entries; return the old one, now closed to writes."""
        with self.lock:
            old = self.current
            assert old is not None, "journal not open"
            self.open()
            old.closed = True
        self._sync(old)
        return old

    def sync(self) -> None:
        """``fdatasync`` the current segment if anything was written since the last sync."""
        segment = self.current
        if segment is not None and segment.size != self._synced:
            size = segment.size
            self._sync(segment)
            self._synced = size

    @staticmethod
    def _sync(segment: Segment) -> None:
        if segment.fd >= 0:
            with contextlib.suppress(OSError):  # closed under us at shutdown: nothing to sync
                os.fdatasync(segment.fd)

    def remove(self, segment: Segment) -> None:
        """Delete a segment whose entries are all stored (closed, or at shutdown)."""
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        _let_go(segment)

    def close(self) -> None:
        """Sync and let go of the current segment (its lock goes with the descriptor)."""
        segment = self.current
        if segment is None:
            return
        self._sync(segment)
        _let_go(segment)
        self.current = None

    @property
    def bytes_on_disk(self) -> int:
        """Bytes in every segment in the folder (this process's and others')."""
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if entry.name.startswith(self.prefix):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    # -- orphans --------------------------------------------------------------------------
    def orphans(self) -> Iterator[Orphan]:
        """Segments in the folder whose process has gone, each locked for the caller.

        The caller stores the entries, then calls :meth:`Orphan.remove` (or :meth:`Orphan.release`
        to leave it for later). Another process may be storing the same folder's orphans at
        the same time: the lock makes each one go to one process only.
        """
        if not self.folder.is_dir():
            return
        mine = self.current.name if self.current else ""
        for path in sorted(self.folder.glob(f"{self.prefix}*{SUFFIX}")):
            if path.name == mine:
                continue
            try:
                orphan = Orphan.take(path)
            except JournalError as exc:
                print(f"tracker: {exc}; it is left alone", file=sys.stderr, flush=True)
                continue
            if orphan is not None:
                yield orphan


@dataclass(eq=False)
class Orphan:
    """A segment left by a process that has gone, locked by this process while it is stored."""

    path: Path
    fd: int
    header: dict
    start: int

    @classmethod
    def take(cls, path: Path) -> Orphan | None:
        """Lock ``path`` if no live process holds it; None if one does or it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None  # its process is alive
            raise
        if os.fstat(fd).st_nlink == 0:  # another process stored and deleted it meanwhile
            os.close(fd)
            return None
        with open(path, "rb") as handle:
            first = handle.readline()
        if not first.endswith(b"\n"):
            # killed between creating the file and finishing its header: it holds nothing
            return cls(path=path, fd=fd, header={"journal": VERSION, "database": None,
                                                 "fields": []}, start=len(first))
        try:
            header = json.loads(first)
            if not isinstance(header, dict) or header.get("journal") != VERSION \
                    or not isinstance(header.get("fields"), list):
                raise ValueError("not a journal header")
        except ValueError:
            os.close(fd)
            raise JournalError(f"{path} is not a tracker journal segment") from None
        return cls(path=path, fd=fd, header=header, start=len(first))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def empty(self) -> bool:
        return os.fstat(self.fd).st_size <= self.start

    def lines(self, offset: int) -> Iterator[tuple[bytes, int]]:
        """Each whole line from ``offset`` (at least the header's end), with its end offset.

        A last line without its newline was being written when the process died: it was
        never answered, so it is left out.
        """
        position = max(offset, self.start)
        yield from read_lines(self.path, position)

    def remove(self) -> None:
        """Delete the segment (its entries are stored) and let go of it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        """Let go of the lock, leaving the file for another time (idempotent)."""
        _let_go(self)


def read_lines(path: Path, offset: int, chunk: int = 1 << 20,
               tail: bool = False) -> Iterator[tuple[bytes, int]]:
    """Whole lines of ``path`` from ``offset``, each with the offset just after it.

    With ``tail``, a last line without its newline comes too (files not written hit by hit).
    """
    with open(path, "rb") as handle:
        handle.seek(offset)
        position = offset
        rest = b""
        while True:
            data = handle.read(chunk)
            if not data:
                if tail and rest:
                    yield rest, position + len(rest)
                return
            data = rest + data
            lines = data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                position += len(line) + 1
                yield line, position


def count_lines(path: Path, offset: int) -> int:
    """Whole lines from ``offset`` to the end of ``path`` (for the backlog figure)."""
    total = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        while data := handle.read(1 << 20):
            total += data.count(b"\n")
    return total


def _let_go(held: Segment | Orphan) -> None:
    # Closing the descriptor drops the lock. Only once: the number may be reused at once.
    if held.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(held.fd)
        held.fd = -1


def _write_all(fd: int, data: bytes) -> None:
    # One write() for a line of a few hundred bytes: the loop only matters if the kernel ever
    # takes part of it (a signal, a full disk), and then it finishes the line or raises.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
