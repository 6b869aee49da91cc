"""The tracking server: a plain ASGI app built by :func:`create_app`, served by uvicorn.

Routes::

    GET|HEAD /c/{token}   verify, record a click, 302 to the URL registered for that click ID
    GET|HEAD /v/{issue}   the web version of the issue, counted as a view
    GET|HEAD /v/{issue}/{outlet}   the same through an outlet's link (newsletter.outlets)
    GET|HEAD /f/{token}   an answer to the feedback question: counted, a thank-you page
    POST     /f/{token}   a comment from that page, stored without anything to identify anyone
    GET      /o/{token}   open pixel (only when the issue turns opens on)
    GET      /u/{token}   unsubscribe page with a button (changes nothing)
    POST     /u/{token}   unsubscribe (RFC 8058 one-click and the button): adds a suppression
    POST     /hooks/{provider}   Mailgun, Postmark, SendGrid delivery and bounce events
                                 (``newsletter.hooks.route``)
    GET|HEAD /healthz     "ok N" with N hits waiting to be stored; 503 when over a limit

and, in :mod:`newsletter.tracking.public`, the public routes that count nothing: published
images (/a/), the archive (/ and /v/) and its Atom feed (/feed.xml).

No framework: the click route is the hot path, and a raw ASGI callable with a cached registry
lookup does the least work per request. The redirect destination only ever comes from the link
registry (``links`` table, written by ``send``); nothing in the request can name one. A token that
does not verify gets 404 and nothing is recorded; a request we cannot parse gets 400; an unexpected
failure gets a plain 500 page (the traceback goes to the server log, never into the response).

State lives in the database only (plus short-lived caches), so several instances can run behind a
load balancer against one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter import db, feedback, outlets, suppressions
from newsletter.db import Database, open_db
from newsletter.journal import Journal
from newsletter.links import PLACEHOLDER_RE
from newsletter.model import FEEDBACK_ANSWERS, Feedback
from newsletter.tracking import classify, unsubscribe
from newsletter.tracking.events import JOURNAL_FIELDS, EventWriter, Hit
from newsletter.tracking.public import PublicRoutes, Site
from newsletter.tracking.tokens import InvalidToken, Signer, TokenData, TokenKind, signer_for

MAX_BACKLOG = 100_000            # hits waiting to be stored before /healthz answers 503
MAX_JOURNAL_BYTES = 1 << 30      # bytes of journal on disk before /healthz answers 503
MAX_PATH_BYTES = 2048
MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 4096
_TOKEN = re.compile(rb"^[A-Za-z0-9_.-]{1,1024}$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
          b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_COMMON = [
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
]
_HTML = (b"content-type", b"text/html; charset=utf-8")
_PAGE_CSP = (b"content-security-policy",
             b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:1.1rem/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;"
        "padding:0 1rem}button{font:inherit;padding:.5rem 1.2rem}</style>"
        f"<h1>{html.escape(title)}</h1>{body}</html>"
    ).encode()


_NOT_FOUND = _page("Link not found", "<p>This link is not valid, or has expired.</p>")
_BAD_REQUEST = _page("Bad request", "<p>The address of this request is not valid.</p>")
_UNAVAILABLE = _page("Please try again", "<p>This service is busy for a moment. Please try the "
                     "link again in a minute.</p>")


@dataclass(frozen=True)
class _Link:
    url: str
    kind: str
    headers: tuple = ()  # the whole 302 response's headers, built once per link


@dataclass(frozen=True)
class _Press:
    """An unsubscribe by the page's button, kept while a later verdict could withdraw it."""

    issue: str
    ip_hash: str
    agent: str
    address: str
    at: float


@dataclass(frozen=True)
class _Issue:
    web_html: str
    opens: bool
    counted: bool  # tracking is not "off"
    # the web version cut at its placeholders ({{click:ID}}, {{feedback:...}}): literal text
    # and (kind, argument) pairs, filled per outlet
    parts: tuple = ()
    feedback: Feedback | None = None
    pages: dict = field(default_factory=dict)   # outlet -> the filled page, while cached


class TrackerApp:
    """The ASGI callable. Build it with :func:`create_app`."""

    def __init__(self, database: Database, *, owns_database: bool, rules: classify.Rules,
                 flush_interval: float, cache_seconds: float, secret_key: str = "",
                 spill_dir: str = "", journal_dir: Path | None = None,
                 max_backlog: int = MAX_BACKLOG, max_journal_bytes: int = MAX_JOURNAL_BYTES,
                 patience: float = 60.0, clock: Callable[[], float] = time.time,
                 webhook_env: Mapping[str, str] | None = None,
                 soft_bounce_limit: int = 3, site: Site | None = None) -> None:
        from newsletter.hooks.route import HookRoute

        self.database = database
        # When a hit happened: the wall clock, or a simulated one (bench/simulate_scanners.py
        # compresses days of traffic into seconds without changing what the rules see).
        self.clock = clock
        self._owns_database = owns_database
        self.rules = rules
        self.signer: Signer = signer_for(database, secret_key)
        # IP addresses are kept only as an HMAC keyed by a value derived from the signing key.
        self._ip_key = self.signer.ip_hash_key()
        self._form_key = unsubscribe.form_key(self._ip_key)
        # presses of the unsubscribe page's button, reviewed as the classifier learns more
        self._presses: deque[_Press] = deque()
        self.journal: Journal | None = None
        if journal_dir is not None:
            self.journal = Journal(journal_dir, db.database_id(database), JOURNAL_FIELDS)
            self.journal.open()
        self.writer = EventWriter(database, rules, flush_interval=flush_interval,
                                  spill_dir=spill_dir, journal=self.journal, patience=patience)
        self.writer.after_flush = self._review_presses
        self.max_backlog = max_backlog
        self.max_journal_bytes = max_journal_bytes
        self.cache_seconds = cache_seconds
        self.public = PublicRoutes(database, cache_seconds, site, self.signer)
        self._links: dict[tuple[str, str], tuple[float, _Link | None]] = {}
        self._issues: dict[str, tuple[float, _Issue | None]] = {}
        self._outlets: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._ip_hashes: dict[str, str] = {}
        self._tokens: dict[tuple[bytes, str], TokenData | int] = {}
        self._closed = False
        self.announce_stop = False
        self.hooks = HookRoute(database, webhook_env or {}, soft_bounce_limit)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        """Flush every queued event, then release the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        if self._owns_database:
            self.database.close()

    def flush(self) -> int:
        """Write queued events now (tests, benchmarks)."""
        return self.writer.flush()

    def health(self) -> tuple[int, str]:
        """``(200, "ok N")`` with N hits waiting to be stored, or 503 and what is wrong."""
        waiting = self.writer.pending
        trouble = self.writer.health()
        if trouble is None and waiting > self.max_backlog:
            trouble = f"{waiting} hits waiting to be stored, over the limit of {self.max_backlog}"
        if trouble is None and self.journal is not None:
            size = self.journal.bytes_on_disk
            if size > self.max_journal_bytes:
                trouble = (f"the journal holds {size} bytes, over the limit of "
                           f"{self.max_journal_bytes}")
        if trouble is not None:
            return 503, f"unwell {waiting}: {trouble}\n"
        return 200, f"ok {waiting}\n"

    # -- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except sa.exc.SQLAlchemyError as exc:
                # The database is down, locked or full: a one-line reason (never the statement's
                # values: IP hashes, user agents, pseudonyms), and "try again" for the visitor.
                print(f"tracker: database unavailable ({db.describe_error(exc)}); answered 503",
                      file=sys.stderr, flush=True)
                await _respond(send, 503, _UNAVAILABLE, [_HTML, (b"retry-after", b"5")])
            except Exception:
                traceback.print_exc(file=sys.stderr)
                await _respond(send, 500, _page("Server error", "<p>Please try again later.</p>"),
                               [_HTML])
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.close)
                if self.announce_stop:
                    print(f"Stopped; {self.writer.stored} event(s) stored.", file=sys.stderr,
                          flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        raw = raw.split(b"?", 1)[0]
        if len(raw) > MAX_PATH_BYTES:
            return await _respond(send, 414, _BAD_REQUEST, [_HTML])
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            return await _respond(send, 431, _BAD_REQUEST, [_HTML])
        method = scope["method"]
        head = method == "HEAD"
        for prefix, route in ((b"/c/", self._click), (b"/v/", self._view),
                              (b"/o/", self._open)):
            if raw.startswith(prefix):
                if method not in ("GET", "HEAD"):
                    return await _method_not_allowed(send, b"GET, HEAD")
                return await route(scope, send, raw[3:], head)
        if raw.startswith((b"/f/", b"/u/")):
            return await self._form(scope, receive, send, raw)
        if raw.startswith(b"/hooks/"):
            return await self.hooks(scope, receive, send, raw[7:])
        if raw == b"/healthz":
            if method not in ("GET", "HEAD"):
                return await _method_not_allowed(send, b"GET, HEAD")
            status, body = self.health()
            return await _respond(send, status, body.encode(),
                                  [(b"content-type", b"text/plain; charset=utf-8")], head)
        if await self.public(scope, receive, send, raw):
            return None
        return await _respond(send, 404, _NOT_FOUND, [_HTML], head)

    async def _form(self, scope: Scope, receive: Receive, send: Send, raw: bytes) -> None:
        """A page with a form (GET, HEAD) and its answer (POST): the feedback question's
        thank-you page (/f/) and the unsubscribe page (/u/)."""
        method, token = scope["method"], raw[3:]
        if method not in ("GET", "HEAD", "POST"):
            return await _method_not_allowed(send, b"GET, HEAD, POST")
        head = method == "HEAD"
        if raw.startswith(b"/f/"):
            if method == "POST":
                return await self._comment(scope, receive, send, token)
            return await self._answer(scope, send, token, head)
        if method == "POST":
            return await self._unsubscribe(scope, receive, send, token)
        return await self._unsubscribe_page(send, token, head)

    # -- routes ---------------------------------------------------------------------------
    def _verify(self, token: bytes, kind: TokenKind) -> TokenData | int:
        """TokenData, or 400 (malformed) / 404 (does not verify) as an int."""
        key = (token, kind)
        known = self._tokens.get(key)
        if known is not None:
            return known
        if not _TOKEN.match(token):
            return 400
        try:
            result: TokenData | int = self.signer.verify(token.decode("ascii"), kind)
        except InvalidToken:
            result = 404
        # Each message's links repeat across clicks and scanner passes: remember the answer
        # (the keys cannot change while the process runs).
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[key] = result
        return result

    async def _click(self, scope: Scope, send: Send, token: bytes, head: bool) -> None:
        data = self._verify(token, "c")
        if isinstance(data, int):
            return await _respond(send, data, _NOT_FOUND if data == 404 else _BAD_REQUEST,
                                  [_HTML], head)
        link = await self._link(data.issue, data.link)
        if link is None:
            return await _respond(send, 404, _NOT_FOUND, [_HTML], head)
        # a link of the email names its list or recipient; one of the web version its outlet
        self._record(scope, "click", data.issue, data.link, data.pseudonym, data.list,
                     link.kind, data.outlet or outlets.EMAIL)
        await send({"type": "http.response.start", "status": 302, "headers": link.headers})
        await send({"type": "http.response.body", "body": b""})

    async def _view(self, scope: Scope, send: Send, slug_raw: bytes, head: bool) -> None:
        if not slug_raw:
            return await self.public.archive(send, head)
        # /v/{slug}/{outlet}: an outlet's link (newsletter.outlets) is the same page, its links
        # and answers naming the outlet. Whatever the outlet part says, never an error page.
        slug_raw, _, rest = slug_raw.partition(b"/")
        slug = slug_raw.decode("ascii", "replace")
        if not _SLUG.match(slug):
            return await _respond(send, 400, _BAD_REQUEST, [_HTML], head)
        issue = await self._issue(slug)
        if issue is None or not issue.web_html:
            return await _respond(send, 404, _NOT_FOUND, [_HTML], head)
        outlet = outlets.outlet_of(rest.decode("utf-8", "replace"), await self._known_outlets())
        if issue.counted:
            self._record(scope, "view", slug, "", None, None, "", outlet)
        return await self.public.page(send, 200, self._page(slug, issue, outlet), head)

    def _page(self, slug: str, issue: _Issue, outlet: str) -> bytes:
        """The web version for ``outlet``: its links and answers carry tokens naming it."""
        page = issue.pages.get(outlet)
        if page is None:
            signer = self.signer
            out = []
            for part in issue.parts:
                if isinstance(part, str):
                    out.append(part)
                elif part[0] == "click":
                    out.append(signer.click(slug, part[1], outlet=outlet))
                elif part[0] == "feedback":
                    out.append(signer.feedback(slug, part[1], outlet=outlet))
                elif part[0] == "og_url":
                    # A site that reshares the page (Facebook, Teams) links its card to this
                    # address: the outlet's own, so visits through the card count for it.
                    named = outlet not in (outlets.DIRECT, outlets.UNKNOWN)
                    out.append(f"{part[1]}/{outlet}" if named else part[1])
            page = issue.pages[outlet] = "".join(out).encode("utf-8")
        return page

    async def _known_outlets(self) -> frozenset[str]:
        until, known = self._outlets
        if until <= time.monotonic():
            known = await asyncio.to_thread(self._load_outlets)
            self._outlets = (time.monotonic() + self.cache_seconds, known)
        return known

    def _load_outlets(self) -> frozenset[str]:
        with self.database.engine.connect() as conn:
            return frozenset(outlets.registered(conn))

    async def _feedback_link(self, token: bytes
                             ) -> tuple[TokenData, _Issue, Feedback] | int:
        """The answer link ``token`` names, with its issue and question; else 400 or 404."""
        data = self._verify(token, "f")
        if isinstance(data, int):
            return data
        issue = await self._issue(data.issue)
        if issue is None or issue.feedback is None or data.link not in FEEDBACK_ANSWERS:
            return 404
        return data, issue, issue.feedback

    async def _answer(self, scope: Scope, send: Send, token: bytes, head: bool) -> None:
        found = await self._feedback_link(token)
        if isinstance(found, int):
            return await _respond(send, found, _NOT_FOUND if found == 404 else _BAD_REQUEST,
                                  [_HTML], head)
        data, issue, question = found
        outlet = data.outlet or outlets.EMAIL
        if issue.counted:
            # the list (email) or outlet (web version), never a person: an aggregate answer
            self._record(scope, "feedback", data.issue, data.link, None, data.list, "", outlet)
        title, body = feedback.thanks_page(question, data.link,
                                           outlets.view_url("", data.issue, outlet))
        return await _respond(send, 200, _page(title, body), [_HTML, _PAGE_CSP], head)

    async def _comment(self, scope: Scope, receive: Receive, send: Send, token: bytes) -> None:
        body, complete = await _read_body(receive, feedback.BODY_LIMIT, _DRAIN_LIMIT)
        if body is None:
            return None      # the visitor left
        found = await self._feedback_link(token)
        if isinstance(found, int):
            return await _respond(send, found, _NOT_FOUND if found == 404 else _BAD_REQUEST,
                                  [_HTML])
        data, _issue, question = found
        kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind != b"application/x-www-form-urlencoded":
            return await _respond(send, 415, _page("Please use the form", (
                "<p>Comments are sent with the form on the thank-you page.</p>")), [_HTML])
        text, cut = feedback.comment_from_form(body, complete)
        outlet = data.outlet or outlets.EMAIL
        if text:
            await asyncio.to_thread(self._store_comment, data.issue, data.link, outlet, text)
        title, page = feedback.comment_page(question, bool(text), cut,
                                            outlets.view_url("", data.issue, outlet))
        return await _respond(send, 200, _page(title, page), [_HTML, _PAGE_CSP])

    def _store_comment(self, issue: str, answer: str, outlet: str, text: str) -> None:
        with self.database.engine.begin() as conn:
            feedback.store_comment(conn, issue, answer, outlet, text, self.clock())

    async def _open(self, scope: Scope, send: Send, token: bytes, head: bool) -> None:
        data = self._verify(token, "o")
        if isinstance(data, int):
            return await _respond(send, data, _NOT_FOUND if data == 404 else _BAD_REQUEST,
                                  [_HTML], head)
        issue = await self._issue(data.issue)
        if issue is None or not issue.opens:
            return await _respond(send, 404, _NOT_FOUND, [_HTML], head)
        self._record(scope, "open", data.issue, "", data.pseudonym, data.list, "")
        return await _respond(send, 200, _PIXEL, [(b"content-type", b"image/gif")], head)

    async def _unsubscribe_page(self, send: Send, token: bytes, head: bool) -> None:
        data = self._verify(token, "u")
        if isinstance(data, int):
            return await _respond(send, data, _NOT_FOUND if data == 404 else _BAD_REQUEST,
                                  [_HTML], head)
        body = self._unsubscribe_form(
            token.decode("ascii"),
            "Press the button to stop receiving this newsletter at your address.")
        return await _respond(send, 200, body, [_HTML, _PAGE_CSP], head)

    def _unsubscribe_form(self, token: str, text: str) -> bytes:
        """The page with its button; the form carries a nonce signed for this token and now
        (see :mod:`newsletter.tracking.unsubscribe`)."""
        nonce = html.escape(unsubscribe.nonce(self._form_key, token, self.clock()))
        name, value = unsubscribe.BUTTON
        return _page("Unsubscribe", (
            f"<p>{html.escape(text)}</p><form method=post>"
            f"<input type=hidden name={unsubscribe.NONCE} value=\"{nonce}\">"
            f"<button type=submit name={name} value={value}>Unsubscribe</button></form>"))

    async def _unsubscribe(self, scope: Scope, receive: Receive, send: Send,
                           token: bytes) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:  # read (and bound) the body: the one-click pair or the page's form
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
            if size > MAX_BODY_BYTES:
                return await _respond(send, 413, _BAD_REQUEST, [_HTML])
        data = self._verify(token, "u")
        if isinstance(data, int) or not data.pseudonym:
            status = data if isinstance(data, int) else 404
            return await _respond(send, status, _NOT_FOUND if status == 404 else _BAD_REQUEST,
                                  [_HTML])
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope["headers"]}
        client = scope.get("client")
        decision = await asyncio.to_thread(
            self._unsubscribe_decision, b"".join(chunks), headers, token.decode("ascii"),
            data.issue, data.pseudonym, client[0] if client else "")
        if decision is None:
            return await _respond(send, 404, _NOT_FOUND, [_HTML])
        if decision is unsubscribe.Decision.CONFIRM:
            body = self._unsubscribe_form(
                token.decode("ascii"),
                "Press the button to confirm that you want to stop receiving this newsletter. "
                "If this page comes back each time, use the Unsubscribe button your mail "
                "program shows with the message.")
            return await _respond(send, 200, body, [_HTML, _PAGE_CSP])
        body = _page("You are unsubscribed",
                     "<p>You will not receive further issues of this newsletter.</p>")
        return await _respond(send, 200, body, [_HTML, _PAGE_CSP])

    def _unsubscribe_decision(self, body: bytes, headers: dict[str, str], token: str,
                              issue: str, pseudonym: str,
                              ip: str) -> unsubscribe.Decision | None:
        """Decide (and do) an unsubscribe; None when the token names nobody we sent to."""
        if self._address(pseudonym, issue) is None:
            return None
        agent = headers.get("user-agent", "")

        def scanner() -> bool:
            if classify.hit_reasons(self.rules, method="POST", user_agent=agent, ip=ip):
                return True
            ip_hash = classify.hash_ip(self._ip_key, ip)
            return self.writer.suspected(issue, ip_hash, agent, self.clock())

        now = self.clock()
        decision = unsubscribe.decide(body, headers, key=self._form_key, token=token, now=now,
                                      scanner=scanner)
        if decision is unsubscribe.Decision.ONE_CLICK:
            self._suppress(pseudonym, issue, "one-click unsubscribe (RFC 8058)")
        elif decision is unsubscribe.Decision.PRESSED:
            address = self._suppress(pseudonym, issue, unsubscribe.PRESSED_DETAIL)
            if address:
                self._presses.append(_Press(issue, classify.hash_ip(self._ip_key, ip), agent,
                                            address, now))
        return decision

    def _review_presses(self) -> None:
        """Withdraw an unsubscribe whose press came from an address and browser that the
        classifier, within :data:`unsubscribe.REVIEW_SECONDS` of it, judges a scanner (one
        pressing the button before its fetches gave it away)."""
        now = self.clock()
        while self._presses and self._presses[0].at < now - unsubscribe.REVIEW_SECONDS:
            self._presses.popleft()
        for press in list(self._presses):
            if self.writer.classifier.suspected(press.issue, press.ip_hash, press.agent, now):
                self._presses.remove(press)
                unsubscribe.withdraw(self.database, press.address, press.issue)

    def _address(self, pseudonym: str, issue: str) -> str | None:
        # The pseudonym is the recipient's for this issue: only the ledger knows whose it is.
        d, r = db.deliveries, db.recipients
        with self.database.engine.connect() as conn:
            return conn.execute(sa.select(r.c.address)
                                .join(d, d.c.recipient_id == r.c.id)
                                .where(d.c.issue == issue, d.c.pseudonym == pseudonym)
                                .limit(1)).scalar()

    def _suppress(self, pseudonym: str, issue: str, detail: str) -> str:
        """Suppress the recipient; their address if this added the suppression, else ""."""
        # The pseudonym is the recipient's for this issue: only the ledger knows whose it is.
        d, r = db.deliveries, db.recipients
        with self.database.engine.begin() as conn:
            address = conn.execute(sa.select(r.c.address)
                                   .join(d, d.c.recipient_id == r.c.id)
                                   .where(d.c.issue == issue, d.c.pseudonym == pseudonym)
                                   .limit(1)).scalar()
            if address is None:
                return ""
            added = suppressions.add(conn, address, "unsubscribed", "tracker", issue=issue,
                                     detail=detail)
        return address if added else ""

    # -- helpers --------------------------------------------------------------------------
    def _record(self, scope: Scope, kind: str, issue: str, link_id: str,
                pseudonym: str | None, list_key: str | None, link_kind: str,
                outlet: str = outlets.EMAIL) -> None:
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
                break
        client = scope.get("client")
        ip = client[0] if client else ""
        method = scope["method"]
        reasons = classify.hit_reasons(self.rules, method=method, user_agent=agent, ip=ip,
                                       link_kind=link_kind)
        ip_hash = self._ip_hashes.get(ip)
        if ip_hash is None:
            if len(self._ip_hashes) > 100_000:
                self._ip_hashes.clear()
            ip_hash = self._ip_hashes[ip] = classify.hash_ip(self._ip_key, ip)
        self.writer.add(Hit(at=self.clock(), issue=issue, kind=kind, link_id=link_id,
                            pseudonym=pseudonym or "", list_key=list_key or "", method=method,
                            user_agent=agent, ip_hash=ip_hash, reasons=reasons, outlet=outlet))

    async def _link(self, issue: str, link_id: str) -> _Link | None:
        key = (issue, link_id)
        cached = self._links.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        link = await asyncio.to_thread(self._load_link, issue, link_id)
        if len(self._links) > 50_000:
            self._links.clear()
        self._links[key] = (time.monotonic() + self.cache_seconds, link)
        return link

    def _load_link(self, issue: str, link_id: str) -> _Link | None:
        t = db.links
        with self.database.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.url, t.c.kind)
                               .where(t.c.issue == issue, t.c.link_id == link_id)).first()
        if row is None or not row.url.lower().startswith(("http://", "https://", "mailto:",
                                                           "tel:")):
            return None
        headers = (*_COMMON, (b"location", row.url.encode("utf-8")), (b"content-length", b"0"))
        return _Link(url=row.url, kind=row.kind, headers=headers)

    async def _issue(self, slug: str) -> _Issue | None:
        cached = self._issues.get(slug)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        issue = await asyncio.to_thread(self._load_issue, slug)
        if len(self._issues) > 1000:
            self._issues.clear()
        self._issues[slug] = (time.monotonic() + self.cache_seconds, issue)
        return issue

    def _load_issue(self, slug: str) -> _Issue | None:
        t = db.issues
        with self.database.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.web_html, t.c.opens, t.c.tracking, t.c.feedback)
                               .where(t.c.slug == slug)).first()
        if row is None:
            return None
        counted = row.tracking != "off"
        return _Issue(web_html=row.web_html, opens=bool(row.opens) and counted, counted=counted,
                      parts=_placeholders(row.web_html),
                      feedback=feedback.wording(row.feedback) if counted else None)


_OG_URL = re.compile(r'(<meta property="og:url" content=")([^"]*)(">)')


def _placeholders(page: str) -> tuple:
    """``page`` as literal text and the (kind, argument) of each placeholder the tracker fills
    (clicks and feedback answers, and the page's own address in its Open Graph card);
    anything else is left as it is."""
    parts: list = []
    position = 0
    spots = [(m.start(), m.end(), (m.group(1), m.group(2)))
             for m in PLACEHOLDER_RE.finditer(page)
             if m.group(1) in ("click", "feedback") and m.group(2)]
    spots += [(m.start(2), m.end(2), ("og_url", m.group(2))) for m in _OG_URL.finditer(page)]
    for start, end, part in sorted(spots):
        parts += [page[position:start], part]
        position = end
    parts.append(page[position:])
    return tuple(p for p in parts if p != "")


_DRAIN_LIMIT = 1 << 20   # bytes of a request body read at most; a longer one is answered early


async def _read_body(receive: Receive, keep: int, limit: int) -> tuple[bytes | None, bool]:
    """The first ``keep`` bytes of the request body, and whether that was all of it; reads at
    most ``limit`` bytes (the rest is left unread). None when the visitor went away."""
    kept = bytearray()
    size = 0
    more = True
    while more and size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        size += len(chunk)
        if len(kept) < keep:
            kept += chunk[:keep - len(kept)]
        more = message.get("more_body", False)
    return bytes(kept), size <= keep and not more


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                   head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_COMMON, *headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _method_not_allowed(send: Send, allow: bytes) -> None:
    body = _page("Method not allowed", "<p>This address does not accept that method.</p>")
    await _respond(send, 405, body, [_HTML, (b"allow", allow)])


def create_app(database_url: str | None = None, *, database: Database | None = None,
               rules: classify.Rules | None = None, flush_interval: float = 0.05,
               cache_seconds: float = 30.0, secret_key: str = "",
               spill_dir: str = "", journal_dir: Path | None = None,
               max_backlog: int = MAX_BACKLOG, max_journal_bytes: int = MAX_JOURNAL_BYTES,
               patience: float = 60.0, clock: Callable[[], float] = time.time,
               webhook_env: Mapping[str, str] | None = None,
               soft_bounce_limit: int = 3, site: Site | None = None) -> TrackerApp:
    """The tracker for the database at ``database_url`` (or an already open ``database``).

    Serve it with any ASGI server; its lifespan starts the event writer and, on shutdown, stores
    every queued event before the database is closed. Without a lifespan (some test clients),
    call :meth:`TrackerApp.close` when done.

    With ``journal_dir``, every hit is written to this process's journal there before it is
    answered (``track serve`` always gives one), and the journals of processes that died are
    stored at start-up. ``/healthz`` answers 503 when more than ``max_backlog`` hits wait, the
    journal folder holds more than ``max_journal_bytes``, or writes have failed for longer than
    ``patience`` seconds.
    """
    if (database_url is None) == (database is None):
        raise ValueError("give exactly one of database_url and database")
    owns = database is None
    # A visitor waits no longer than this for a connection (then gets 503); the event writer
    # retries on its own, for as long as it takes, with the hits safe in the journal.
    if database is None:
        assert database_url is not None
        database = open_db(database_url, patience=2.0)
    try:
        return TrackerApp(database, owns_database=owns, rules=rules or classify.Rules(),
                          flush_interval=flush_interval, cache_seconds=cache_seconds,
                          secret_key=secret_key, spill_dir=spill_dir,
                          journal_dir=journal_dir, max_backlog=max_backlog,
                          max_journal_bytes=max_journal_bytes, patience=patience, clock=clock,
                          webhook_env=webhook_env, soft_bounce_limit=soft_bounce_limit,
                          site=site)
    except Exception:
        if owns:
            database.close()
        raise


def app_from_env() -> ASGIApp:
    """The app for a server that imports it by name in each worker (``track serve``, granian).

    Reads the settings ``track serve`` handed over (see :class:`settings.TrackerWorker`);
    trusts X-Forwarded-For only from the proxies named there.
    """
    from newsletter.settings import TrackerWorker
    from newsletter.tracking.hardening import die_with_parent

    worker = TrackerWorker.from_environment()
    die_with_parent(worker.main_pid)
    app = create_app(worker.database, flush_interval=worker.flush_interval,
                     secret_key=worker.secret_key, spill_dir=worker.spill_dir,
                     journal_dir=Path(worker.journal) if worker.journal else None,
                     patience=worker.db_wait,
                     webhook_env=worker.webhook_env,
                     soft_bounce_limit=worker.soft_bounce_limit,
                     rules=classify.Rules(networks=classify.scanner_networks(
                         worker.scanner_networks)),
                     site=Site(worker.public_url, worker.search_engines))
    app.announce_stop = True
    return behind_proxies(app, worker.proxies)


def behind_proxies(app: ASGIApp, proxies: str | Iterable[str]) -> ASGIApp:
    """``app`` taking the client address from ``X-Forwarded-For`` only when the request comes
    from one of ``proxies`` (addresses or CIDRs, a list or comma-separated); from anyone else the
    header is ignored and the socket address counts. The simulator wraps the app the same way."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    if isinstance(proxies, str):
        proxies = proxies.split(",")
    trusted = [p.strip() for p in proxies if p.strip()]
    return wrap_asgi_with_proxy_headers(app, trusted_hosts=trusted)
