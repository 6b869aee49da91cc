"""Preview an issue in the browser while drafting it, with live reload.

``create_app(issue_path, project)`` builds a Starlette app that shows one issue::

    GET /                       the preview page: inbox line, the email at 375 or 800 px,
                                the plain text, the link table and the warnings
    GET /_preview/email.html    the email as built now (links not tracked)
    GET /_preview/email.txt     its plain-text part
    GET /_preview/parts.json    the page's panels, rendered again after every build
    GET /_preview/events        server-sent events: one ``build`` event per rebuild
    GET /_preview/static/...    the page's own script and style sheet
    GET /<path>                 a file the email references (its images), inside the project only

While the app runs, a watcher (watchfiles) follows every file the last build read (the issue,
the theme, the templates, the images) and rebuilds on save. The page hears about it over
server-sent events, fetches the new panels and loads the new email into a second, hidden
frame scrolled to where the reader was, then swaps the two: no flash, no lost place.

A build that fails never stops the server: the page and the terminal show the errors instead
of the email, and the next good save brings the email back.

``serve(app, sock)`` runs the app under uvicorn until Ctrl-C; ``bind(host, port)`` finds the
socket (port 8000 or the next free one when none is asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import jinja2
import markupsafe
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from newsletter.errors import InvalidIssue, NewsletterError, Problem

if TYPE_CHECKING:
    from newsletter.build import BuiltIssue
    from newsletter.project import Project

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
PORTS_TRIED = 20  # 8000..8019 when no port is asked for
WIDTHS = (375, 800)  # mobile and desktop, in CSS pixels

# How long the watcher waits for a burst of file events (an editor's save is several) to end.
WATCH_STEP_MS = 20
# How often an event stream checks whether the server is stopping, and sends a keep-alive.
STREAM_TICK_S = 0.5
KEEPALIVE_S = 15.0

NO_STORE = {"Cache-Control": "no-store"}

Builder = Callable[..., "BuiltIssue"]
Echo = Callable[[str, bool], None]


# --- one build and what the page may serve from it -------------------------------------------


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


# Relative references in the built email: src="...", href="...", background="...", url(...)
_REFERENCE = re.compile(
    r"""(?:\b(?:src|href|background)\s*=\s*(?:"([^"]*)"|'([^']*)'))"""
    r"""|(?:url\(\s*["']?([^"')]+)["']?\s*\))""",
    re.IGNORECASE,
)


def referenced_files(html: str, root: Path) -> dict[str, Path]:
    """Files inside ``root`` that ``html`` refers to by a relative URL, keyed by URL path.

    These, and nothing else, are what the preview serves besides the page itself: the issue
    YAML, the theme, the settings and the rest of the folder stay private.
    """
    served: dict[str, Path] = {}
    for match in _REFERENCE.finditer(html):
        ref = next(group for group in match.groups() if group is not None).strip()
        parts = urlsplit(ref)
        if parts.scheme or parts.netloc or not parts.path or ref.startswith(("/", "#")):
            continue
        key = safe_relative(unquote(parts.path))
        if key is None:
            continue
        path = inside(root, key)
        if path is not None:
            served[key] = path
    return served


def safe_relative(path: str) -> str | None:
    """``path`` as a plain relative POSIX path, or None when it tries to leave its folder.

    Refuses absolute paths, ``..`` and ``.`` segments, empty segments (``//``), backslashes
    and NUL bytes: callers get either a clean ``a/b/c.png`` or nothing.
    """
    if not path or "\\" in path or "\x00" in path:
        return None
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return "/".join(segments)


def inside(root: Path, relative: str) -> Path | None:
    """The regular file ``root/relative`` after following symlinks, if it is still in ``root``."""
    try:
        resolved = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        return None
    return resolved


def _default_build(path: Path, project: Project, *, tracked: bool) -> BuiltIssue:
    from newsletter.build import build_issue

    return build_issue(path, project, tracked=tracked)


def _log_echo(message: str, is_error: bool) -> None:
    log.log(logging.ERROR if is_error else logging.INFO, "%s", message)


# --- the preview: builds, watches, tells the pages -------------------------------------------


class Preview:
    """One issue being previewed: its latest build, the watcher and the open pages."""

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
        self.snapshot = Snapshot(version=0, built=None, last_good=None,
                                 watched=self._always_watched())

    # -- building

    def display(self, path: Path) -> str:
        """A path as the user would type it: relative to the project when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def _always_watched(self) -> frozenset[Path]:
        """Files that matter even before a build succeeds: the issue and the theme."""
        return frozenset({self.issue_path, self.project.theme_path.resolve()})

    def rebuild(self) -> Snapshot:
        """Build the issue again and tell every open page. Never raises for bad input."""
        with self._build_lock:
            previous = self.snapshot
            started = time.perf_counter()
            built: BuiltIssue | None = None
            problems: tuple[Problem, ...] = ()
            error = ""
            try:
                built = self._build(self.issue_path, self.project, tracked=False)
            except InvalidIssue as exc:
                problems = tuple(exc.problems)
            except NewsletterError as exc:
                error = exc.format()
            except Exception as exc:  # a bug in a build step must not take the preview down
                log.debug("the build of %s failed", self.issue_path, exc_info=True)
                error = (f"The build failed unexpectedly: {type(exc).__name__}: {exc}\n"
                         "    hint: this is a bug in newsletter, not in your issue; "
                         "please report it with the issue file.")
            elapsed = (time.perf_counter() - started) * 1000
            if built is not None:
                watched = self._always_watched() | {Path(p).resolve() for p in built.dependencies}
                served = referenced_files(built.html, self.root)
            else:  # keep following what the last good build read, so its fix is seen too
                watched = previous.watched | self._always_watched()
                served = previous.served
            snapshot = Snapshot(
                version=previous.version + 1,
                built=built,
                last_good=built or previous.last_good,
                problems=problems,
                error=error,
                build_ms=elapsed,
                finished=dt.datetime.now().strftime("%H:%M:%S"),
                served=served,
                watched=frozenset(watched),
            )
            self.snapshot = snapshot
        self._report(snapshot)
        self._publish(json.dumps({"version": snapshot.version, "ok": snapshot.ok}))
        return snapshot

    def _report(self, snapshot: Snapshot) -> None:
        name = self.display(self.issue_path)
        when = snapshot.finished
        if snapshot.ok:
            assert snapshot.built is not None
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

    # -- watching

    def watch_dirs(self) -> frozenset[Path]:
        """Folders to watch (not recursively): those of the files read, and every template folder.

        Watching the whole project recursively would follow .venv/ and build/ too.
        """
        dirs = {path.parent for path in self.snapshot.watched}
        templates = self.project.templates_dir
        if templates.is_dir():
            dirs.add(templates.resolve())
            dirs.update(p.resolve() for p in templates.rglob("*") if p.is_dir())
        return frozenset(d for d in dirs if d.is_dir())

    def is_watched(self, _change: Any, path: str) -> bool:
        """Whether a changed file should trigger a rebuild."""
        changed = Path(path)
        if changed in self.snapshot.watched:
            return True
        templates = self.project.templates_dir.resolve()
        return changed.is_relative_to(templates) and not changed.name.startswith(".")

    async def watch(self, stop: asyncio.Event) -> None:
        """Rebuild after every save until ``stop`` is set."""
        import watchfiles

        while not stop.is_set():
            dirs = self.watch_dirs()
            try:
                if dirs:
                    async for _changes in watchfiles.awatch(
                        *sorted(dirs), watch_filter=self.is_watched, recursive=False,
                        step=WATCH_STEP_MS, stop_event=stop,
                    ):
                        await asyncio.to_thread(self.rebuild)
                        if self.watch_dirs() != dirs:
                            break  # the issue now uses a file in another folder: watch it too
                    continue
            except Exception as exc:  # a folder vanished mid-watch...: say so, then start again
                self._echo(f"Watching for changes failed ({exc}); trying again in a second.",
                           True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    # -- serving files

    def asset(self, request: Request) -> Path | None:
        """The file a request for ``/<path>`` may get, or None (the caller answers 404).

        Only files the current email refers to are served. Encoded slashes, backslashes, dots
        and NUL in the raw path are refused before decoding can turn them into ``../``.
        """
        raw = request.scope.get("raw_path", b"").decode("latin-1").lower()
        if any(code in raw for code in ("%2f", "%5c", "%2e", "%00")):
            return None
        key = safe_relative(request.path_params.get("path", ""))
        if key is None:
            return None
        allowed = self.snapshot.served.get(key)
        if allowed is None:
            return None
        # Check again now: the file may have been swapped for a symlink since the build.
        return inside(self.root, key)


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


# --- the page --------------------------------------------------------------------------------

_PAGE_FILES = resources.files("newsletter") / "preview_page"


def _templates() -> jinja2.Environment:
    def load(name: str) -> str:
        return (_PAGE_FILES / name).read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


PARTS = ("inbox", "status", "build-info", "text-part", "links-part", "warnings-part",
         "links-count", "warnings-count")


def _context(preview: Preview) -> dict[str, Any]:
    snapshot = preview.snapshot
    shown = snapshot.built or snapshot.last_good
    warnings: list[Problem] = []
    if snapshot.built is not None:
        warnings = list(snapshot.built.warnings)
    else:
        warnings = [p for p in snapshot.problems if p.severity != "error"]
    return {
        "snapshot": snapshot,
        "shown": shown,
        "issue": shown.issue if shown else None,
        "stale": snapshot.built is None and shown is not None,
        "issue_file": preview.display(preview.issue_path),
        "warnings": warnings,
        "widths": WIDTHS,
    }


def _render_parts(env: jinja2.Environment, preview: Preview) -> dict[str, markupsafe.Markup]:
    """Each panel of the page as safe HTML (the macros escape every value themselves)."""
    module = env.get_template("parts.html.j2").make_module(_context(preview))
    return {name: markupsafe.Markup(getattr(module, name.replace("-", "_"))()) for name in PARTS}


def _with_base(html: str) -> str:
    """The email with ``<base href="/" target="_blank">``: images resolve from the project root,
    and a click opens the link in a new tab instead of inside the preview frame."""
    base = '<base href="/" target="_blank">'
    match = re.search(r"<head\b[^>]*>", html, re.IGNORECASE)
    if match is None:
        return base + html
    return html[: match.end()] + base + html[match.end():]


def create_app(issue_path: Path, project: Project, *, watch: bool = True,
               build: Builder | None = None, echo: Echo | None = None,
               hosts_allowed: Iterable[str] | None = None) -> Starlette:
    """The preview app for one issue. Builds it once now; with ``watch``, again on every save.

    ``build`` replaces :func:`newsletter.build.build_issue` (tests); ``echo(message, is_error)``
    receives what the terminal should show; ``hosts_allowed`` lists the Host headers
    answered (default: the loopback names; see :func:`allowed_hosts`).
    """
    preview = Preview(Path(issue_path), project, build=build, echo=echo)
    preview.rebuild()
    env = _templates()

    async def page(request: Request) -> Response:
        html = env.get_template("page.html.j2").render(
            parts=_render_parts(env, preview), **_context(preview))
        return HTMLResponse(html, headers=NO_STORE)

    async def parts(request: Request) -> Response:
        snapshot = preview.snapshot
        shown = snapshot.built or snapshot.last_good
        title = f"Preview: {shown.issue.subject}" if shown else "Preview: issue has errors"
        return JSONResponse({"version": snapshot.version, "ok": snapshot.ok, "title": title,
                             "parts": _render_parts(env, preview)}, headers=NO_STORE)

    async def email_html(request: Request) -> Response:
        snapshot = preview.snapshot
        if snapshot.built is None:
            body = "The issue has errors:\n\n" + "\n".join(snapshot.errors)
            return PlainTextResponse(body, status_code=409, headers=NO_STORE)
        return HTMLResponse(_with_base(snapshot.built.html), headers=NO_STORE)

    async def email_text(request: Request) -> Response:
        snapshot = preview.snapshot
        if snapshot.built is None:
            body = "The issue has errors:\n\n" + "\n".join(snapshot.errors)
            return PlainTextResponse(body, status_code=409, headers=NO_STORE)
        return PlainTextResponse(snapshot.built.text, headers=NO_STORE)

    async def events(request: Request) -> Response:
        return StreamingResponse(preview.events(), media_type="text/event-stream",
                                 headers={**NO_STORE, "X-Accel-Buffering": "no"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        media = {"page.js": "text/javascript", "page.css": "text/css"}.get(name)
        if media is None:
            return PlainTextResponse("Not found", status_code=404)
        return Response((_PAGE_FILES / name).read_text(encoding="utf-8"),
                        media_type=media, headers=NO_STORE)

    async def project_file(request: Request) -> Response:
        path = preview.asset(request)
        if path is None:
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(path, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(preview.watch(stop)) if watch else None
        try:
            yield
        finally:
            preview.closing = True
            stop.set()
            if task is not None:
                try:
                    await asyncio.wait_for(task, 5)
                except TimeoutError:
                    log.warning("the file watcher did not stop in time")

    hosts = list(hosts_allowed) if hosts_allowed is not None else list(LOOPBACK_NAMES)
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/_preview/parts.json", parts),
            Route("/_preview/email.html", email_html),
            Route("/_preview/email.txt", email_text),
            Route("/_preview/events", events),
            Route("/_preview/static/{name}", static),
            Route("/{path:path}", project_file),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        lifespan=lifespan,
    )
    app.state.preview = preview
    return app


# --- running it ------------------------------------------------------------------------------


def bind(host: str = DEFAULT_HOST, port: int | None = None) -> socket.socket:
    """A listening socket on ``host``: ``port`` exactly, or 8000 and up when ``port`` is None.

    Binding here (not in uvicorn) means the port printed is the port served, with no race.
    """
    candidates = [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TRIED)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise NewsletterError(f"Cannot listen on {host}:{candidate}: {exc.strerror}.",
                                  hint="Check --host: it must be an address of this machine, "
                                       "such as 127.0.0.1.") from exc
        sock.listen(128)
        sock.setblocking(False)
        return sock
    if port is not None:
        raise NewsletterError(f"Port {port} on {host} is already in use.",
                              hint="Choose another with --port, or leave --port out to take "
                                   "the next free one from 8000.")
    last = DEFAULT_PORT + PORTS_TRIED - 1
    raise NewsletterError(f"Ports {DEFAULT_PORT} to {last} on {host} are all in use.",
                          hint="Choose a free one with --port N (or --port 0 for any).")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def allowed_hosts(host: str) -> list[str]:
    """Host header values to accept when listening on ``host``.

    Only the loopback names by default, so a web page elsewhere cannot read the draft by
    pointing a name of its own at 127.0.0.1 (DNS rebinding). Listening on a wildcard address
    means any name the machine goes by.
    """
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return [*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host]


def url_for(sock: socket.socket) -> str:
    """The address a browser should open for a listening socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    elif host == "0.0.0.0":
        host = "127.0.0.1"
    return f"http://{host}:{port}/"


class PreviewServer:
    """uvicorn serving a preview app on a bound socket; ends the event streams before stopping.

    ``run()`` blocks (Ctrl-C stops it; uvicorn re-raises the signal afterwards);
    ``start()``/``stop()`` run it in a thread, for tests and the benchmark.
    """

    def __init__(self, app: Starlette, sock: socket.socket,
                 on_started: Callable[[], None] | None = None) -> None:
        import uvicorn

        preview: Preview = app.state.preview
        self.on_started = on_started
        outer = self

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                preview.closing = True  # else uvicorn waits for open event streams to end
                super().handle_exit(sig, frame)

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started and outer.on_started is not None:
                    outer.on_started()

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                ws="none", timeout_graceful_shutdown=3)
        self.preview = preview
        self.sock = sock
        self.url = url_for(sock)
        self.server = _Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> PreviewServer:
        self._thread = threading.Thread(target=self.run, name="preview-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the preview server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.preview.closing = True
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
