"""One issue being previewed: its latest build (a :class:`Snapshot`) and the pages told of it.

A build that fails never stops the preview: the snapshot then carries the errors, and the
last build that worked stays available for the text and link tabs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import InvalidIssue, NewsletterError, Problem
from newsletter.preview.files import referenced_files

if TYPE_CHECKING:
    from newsletter.build import BuiltIssue
    from newsletter.project import Project

log = logging.getLogger(__name__)

# How often an event stream checks whether the server is stopping, and sends a keep-alive.
STREAM_TICK_S = 0.5
KEEPALIVE_S = 15.0

Builder = Callable[..., "BuiltIssue"]
Echo = Callable[[str, bool], None]


@dataclass(frozen=True)
class Snapshot:
    """The outcome of one build, replaced as a whole after each rebuild (no partial states)."""

    version: int
    built: BuiltIssue | None  # None when this build failed
    last_good: BuiltIssue | None  # the newest build that worked, for the text and link tabs
    problems: tuple[Problem, ...] = ()  # located errors and warnings of a failed build
    error: str = ""  # an error without a location (missing file...), formatted
    build_ms: float = 0.0
    finished: str = ""  # wall-clock time of the build, for the page
    served: dict[str, Path] = field(default_factory=dict)  # URL path -> file inside the root
    watched: frozenset[Path] = frozenset()

    @property
    def ok(self) -> bool:
        return self.built is not None

    @property
    def errors(self) -> list[str]:
        """Every error as one ``file:line:column: message`` line (with its hint)."""
        lines = [p.format() for p in self.problems if p.severity == "error"]
        if self.error:
            lines.append(self.error)
        return lines


def _default_build(path: Path, project: Project, *, tracked: bool) -> BuiltIssue:
    from newsletter.build import build_issue

    return build_issue(path, project, tracked=tracked)


def _log_echo(message: str, is_error: bool) -> None:
    log.log(logging.ERROR if is_error else logging.INFO, "%s", message)


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class Preview:
    """One issue being previewed: its latest build and the open pages."""

    def __init__(self, issue_path: Path, project: Project, *, build: Builder | None = None,
                 echo: Echo | None = None) -> None:
        self.issue_path = issue_path.resolve()
        self.project = project
        self.root = project.root.resolve()
        self._build = build or _default_build
        self._echo = echo or _log_echo
        self._build_lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = set()
        self._listeners_lock = threading.Lock()
        self.closing = False  # set when the server stops, so event streams end
        # Set once the watcher follows the files; each pass of its loop (a rebuild, or a
        # quiet interval) counts, so a caller can wait for it to have seen a change.
        self.watching = threading.Event()
        self.watch_passes = 0
        # Notified at each rebuild and each pass of the watcher: callers (tests, benchmarks)
        # wait for what they expect with wait_until() instead of sleeping.
        self._changed = threading.Condition()
        self.snapshot = Snapshot(version=0, built=None, last_good=None,
                                 watched=self.always_watched())

    def display(self, path: Path) -> str:
        """A path as the user would type it: relative to the project when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def always_watched(self) -> frozenset[Path]:
        """Files that matter even before a build succeeds: the issue and the theme."""
        return frozenset({self.issue_path, self.project.theme_path.resolve()})

    def echo(self, message: str, is_error: bool) -> None:
        """Tell the person at the terminal."""
        self._echo(message, is_error)

    # -- building

    def rebuild(self) -> Snapshot:
        """Build the issue again and tell every open page. Never raises for bad input."""
        with self._build_lock:
            previous = self.snapshot
            started = time.perf_counter()
            built, problems, error = self._try_build()
            snapshot = self._snapshot(previous, built, problems, error,
                                      (time.perf_counter() - started) * 1000)
            self.snapshot = snapshot
        with self._changed:
            self._changed.notify_all()
        self._report(snapshot)
        self._publish(json.dumps({"version": snapshot.version, "ok": snapshot.ok}))
        return snapshot

    def watched_once(self) -> None:
        """The watcher went round its loop once (a rebuild, or a quiet interval)."""
        with self._changed:
            self.watch_passes += 1
            self.watching.set()
            self._changed.notify_all()

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` holds after a rebuild or a pass of the watcher (at most
        ``timeout`` seconds); whether it holds."""
        with self._changed:
            return self._changed.wait_for(done, timeout)

    def _try_build(self) -> tuple[BuiltIssue | None, tuple[Problem, ...], str]:
        """(the build, or None with its located problems or its error)."""
        try:
            return self._build(self.issue_path, self.project, tracked=False), (), ""
        except InvalidIssue as exc:
            return None, tuple(exc.problems), ""
        except NewsletterError as exc:
            return None, (), exc.format()
        except Exception as exc:  # a bug in a build step must not take the preview down
            log.debug("the build of %s failed", self.issue_path, exc_info=True)
            return None, (), (f"The build failed unexpectedly: {type(exc).__name__}: {exc}\n"
                              "    hint: this is a bug in newsletter, not in your issue; "
                              "please report it with the issue file.")

    def _snapshot(self, previous: Snapshot, built: BuiltIssue | None,
                  problems: tuple[Problem, ...], error: str, elapsed: float) -> Snapshot:
        if built is not None:
            watched = self.always_watched() | {Path(p).resolve() for p in built.dependencies}
            served = referenced_files(built.html, self.root)
        else:  # keep following what the last good build read, so its fix is seen too
            watched = previous.watched | self.always_watched()
            served = previous.served
        return Snapshot(version=previous.version + 1, built=built,
                        last_good=built or previous.last_good, problems=problems, error=error,
                        build_ms=elapsed, finished=dt.datetime.now().strftime("%H:%M:%S"),
                        served=served, watched=frozenset(watched))

    def _report(self, snapshot: Snapshot) -> None:
        name = self.display(self.issue_path)
        when = snapshot.finished
        if snapshot.built is not None:
            warnings = len(snapshot.built.warnings)
            extra = f", {warnings} warning(s)" if warnings else ""
            self._echo(f"{when} built {name} in {snapshot.build_ms:.0f} ms{extra}", False)
            return
        lines = [p.format() for p in snapshot.problems] + ([snapshot.error] if snapshot.error
                                                          else [])
        self._echo(f"{when} {name} has errors; the preview shows them until the next good "
                   "save:\n" + "\n".join(lines), True)

    # -- telling the pages

    def _publish(self, message: str) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for loop, queue in listeners:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, message)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[str]]:
        """A queue that receives one message per rebuild, for as long as the block runs."""
        entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]] = (
            asyncio.get_running_loop(), asyncio.Queue())
        with self._listeners_lock:
            self._listeners.add(entry)
        try:
            yield entry[1]
        finally:
            with self._listeners_lock:
                self._listeners.discard(entry)

    async def events(self) -> AsyncIterator[str]:
        """The server-sent event stream for one page."""
        with self.listen() as queue:
            snapshot = self.snapshot
            # The current version first: a page that reconnects after missing a build catches up.
            yield "retry: 1000\n\n"
            yield _event("build", json.dumps({"version": snapshot.version, "ok": snapshot.ok}))
            quiet = 0.0
            while not self.closing:
                try:
                    message = await asyncio.wait_for(queue.get(), STREAM_TICK_S)
                except TimeoutError:
                    quiet += STREAM_TICK_S
                    if quiet >= KEEPALIVE_S:  # also how a closed tab is noticed
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                    continue
                quiet = 0.0
                yield _event("build", message)
