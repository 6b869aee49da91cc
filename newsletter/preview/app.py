"""The preview's web app: the page, its panels, the email as built now, and its files.

Routes::

    GET /                       the preview page: inbox line, the email at 375 or 800 px,
                                the plain text, the link table and the warnings
    GET /_preview/email.html    the email as built now (links not tracked)
    GET /_preview/email.txt     its plain-text part
    GET /_preview/parts.json    the page's panels, rendered again after every build
    GET /_preview/events        server-sent events: one ``build`` event per rebuild
    GET /_preview/static/...    the page's own script and style sheet
    GET /<path>                 a file the email references (its images), inside the project only

The page hears about each rebuild over server-sent events, fetches the new panels and loads
the new email into a second, hidden frame scrolled to where the reader was, then swaps the
two: no flash, no lost place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from newsletter.errors import Problem
from newsletter.preview import files
from newsletter.preview.state import Builder, Echo, Preview
from newsletter.preview.watcher import watch as watch_files
from newsletter.serving import LOOPBACK_NAMES

if TYPE_CHECKING:
    from newsletter.project import Project

log = logging.getLogger(__name__)

WIDTHS = (375, 800)  # mobile and desktop, in CSS pixels
NO_STORE = {"Cache-Control": "no-store"}


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
        path = files.asset(request.scope.get("raw_path", b""),
                           request.path_params.get("path", ""), preview.snapshot.served,
                           preview.root)
        if path is None:
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(path, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(watch_files(preview, stop)) if watch else None
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


