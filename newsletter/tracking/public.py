"""The tracker as the newsletter's public site: published images and how pages are served.

Routes::

    GET|HEAD /a/{name}    an image published with an issue (``<hash>.<ext>``), cacheable for ever
    GET|HEAD /  and /v/   the archive: every sent issue, newest first (``tracking.archive``)
    GET|HEAD /feed.xml    the same as an Atom feed
    GET      /healthz/db/{nonce}.{mac}  ``newsletter doctor``'s challenge (below)

Kept apart from :mod:`newsletter.tracking.server` so the click route stays the short path it
is: the server hands a request here only when none of its own routes matched. Nothing here
records an event. Only what ``send``/``publish`` stored is served; any other name is 404.
The web version (``/v/{slug}``, counted as a view by the server) is sent with
:meth:`PublicRoutes.page`, so every public page carries the same headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from newsletter import db
from newsletter.db import Database
from newsletter.tracking import archive

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from newsletter.tracking.tokens import Signer

_IMAGE_NAME = re.compile(rb"^[0-9a-f]{32}\.(png|jpg|gif)$")
# A year: the name is the content's hash, so a name never means other bytes.
_IMMUTABLE = (b"cache-control", b"public, max-age=31536000, immutable")
_IMAGE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'"),
    (b"referrer-policy", b"no-referrer"),
)
IMAGE_CACHE_BYTES = 64 * 1024 * 1024
# Public pages load only their own styles and images (ours, a CDN's, or an https one the
# issue names); no script, no form, no plugin, nothing framed.
_PAGE_CSP = (b"content-security-policy",
             b"default-src 'none'; img-src 'self' https: data:; style-src 'unsafe-inline'; "
             b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


_CHALLENGE = re.compile(rb"^([0-9a-f]{32})\.([0-9a-f]{32})$")
CHALLENGE_PREFIX = "doctor-challenge:"


# --- doctor's challenge: does the tracker there read this database, with this key? ---------
# doctor writes a random row (nonce -> value) into the database it uses and asks the tracker
# for /healthz/db/{nonce}.{mac}. A tracker with the same signing key accepts the MAC (else
# 403); one reading the same database finds the row (else 404) and answers with a MAC of the
# value, which only a holder of the key who read the row can make. Without the key nobody can
# make the tracker read the database at all.

def challenge_key(signer: Signer) -> bytes:
    """The challenge's key, derived from the current signing key (through the one derived
    key a Signer exposes, so tokens.py needs nothing new)."""
    return hmac.new(signer.ip_hash_key(), b"newsletter doctor challenge v1",
                    hashlib.sha256).digest()


def challenge_mac(key: bytes, nonce: str) -> str:
    """What shows a challenge comes from someone holding the signing key."""
    return hmac.new(key, b"challenge\x00" + nonce.encode(), hashlib.sha256).hexdigest()[:32]


def challenge_answer(key: bytes, nonce: str, value: str) -> str:
    """What only a tracker holding the key and reading the challenge's row can answer."""
    return hmac.new(key, f"answer\x00{nonce}\x00{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Site:
    """What the public pages need from the settings.

    ``public_url`` is the tracker's public base URL (``tracking_url``), used where a page or the
    feed must name itself absolutely; ``search_engines`` lets them be indexed.
    """

    public_url: str = ""
    search_engines: bool = False


@dataclass(frozen=True)
class _Image:
    headers: tuple
    data: bytes
    etag: bytes


class PublicRoutes:
    """Answers the tracker's public, uncounted routes from the database."""

    def __init__(self, database: Database, cache_seconds: float, site: Site | None = None,
                 signer: Signer | None = None) -> None:
        self.database = database
        self._challenge_key = challenge_key(signer) if signer is not None else b""
        self.cache_seconds = cache_seconds
        self.site = site or Site()
        self._page_headers = [
            (b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"),
            _PAGE_CSP,
        ] + ([] if self.site.search_engines else [(b"x-robots-tag", b"noindex")])
        self._images: dict[bytes, _Image] = {}
        self._image_bytes = 0
        self._unknown: dict[bytes, float] = {}
        self._listing: tuple[float, bytes, bytes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, raw: bytes) -> bool:
        """Answer the request when it is ours; False (nothing sent) when it is not."""
        method = scope["method"]
        if raw == b"/" or raw == b"/feed.xml":
            if method not in ("GET", "HEAD"):
                await _plain(send, 405, b"Method not allowed\n", [(b"allow", b"GET, HEAD")])
                return True
            if raw == b"/":
                await self.archive(send, method == "HEAD")
            else:
                await self._feed(send, method == "HEAD")
            return True
        if raw.startswith(b"/healthz/db/"):
            if method != "GET":
                await _plain(send, 405, b"Method not allowed\n", [(b"allow", b"GET")])
                return True
            await self._challenge(send, raw[len(b"/healthz/db/"):])
            return True
        if raw.startswith(b"/a/"):
            if method not in ("GET", "HEAD"):
                await _plain(send, 405, b"Method not allowed\n", [(b"allow", b"GET, HEAD")])
                return True
            await self._image(scope, send, raw[3:], method == "HEAD")
            return True
        return False

    async def page(self, send: Send, status: int, body: bytes, head: bool) -> None:
        """Send a public HTML page (web version, archive) with the public pages' headers."""
        await send({"type": "http.response.start", "status": status, "headers": [
            *self._page_headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if head else body})

    # -- the archive and its feed ---------------------------------------------------------
    async def archive(self, send: Send, head: bool) -> None:
        """The archive page (``/`` and ``/v/``)."""
        page, _feed = await self._archive()
        await self.page(send, 200, page, head)

    async def _feed(self, send: Send, head: bool) -> None:
        _page, feed = await self._archive()
        headers = [(b"content-type", b"application/atom+xml; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff"),
                   (b"content-length", str(len(feed)).encode())]
        if not self.site.search_engines:
            headers.append((b"x-robots-tag", b"noindex"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else feed})

    async def _archive(self) -> tuple[bytes, bytes]:
        cached = self._listing
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        page, feed = await asyncio.to_thread(self._render_archive)
        self._listing = (time.monotonic() + self.cache_seconds, page, feed)
        return page, feed

    def _render_archive(self) -> tuple[bytes, bytes]:
        entries = archive.listed(self.database)
        return (archive.archive_page(entries, public_url=self.site.public_url,
                                     search_engines=self.site.search_engines),
                archive.atom_feed(entries, public_url=self.site.public_url))

    # -- doctor's challenge ----------------------------------------------------------------
    async def _challenge(self, send: Send, token: bytes) -> None:
        found = _CHALLENGE.match(token)
        if found is None or not self._challenge_key:
            await _plain(send, 404, b"Not found\n", [])
            return
        nonce, mac = found.group(1).decode(), found.group(2).decode()
        if not hmac.compare_digest(mac, challenge_mac(self._challenge_key, nonce)):
            await _plain(send, 403, b"not signed with this tracker's key\n", [])
            return
        value = await asyncio.to_thread(self._challenge_value, nonce)
        if value is None:
            await _plain(send, 404, b"no such challenge in this tracker's database\n", [])
            return
        answer = challenge_answer(self._challenge_key, nonce, value).encode() + b"\n"
        await _plain(send, 200, answer, [])

    def _challenge_value(self, nonce: str) -> str | None:
        with self.database.engine.connect() as conn:
            return conn.execute(sa.select(db.meta.c.value)
                                .where(db.meta.c.key == CHALLENGE_PREFIX + nonce)).scalar()

    # -- /a/ ------------------------------------------------------------------------------
    async def _image(self, scope: Scope, send: Send, name: bytes, head: bool) -> None:
        image = await self._find_image(name) if _IMAGE_NAME.match(name) else None
        if image is None:
            await _plain(send, 404, b"Not found\n", [], head)
            return
        for header, value in scope["headers"]:
            if header == b"if-none-match" and image.etag in value:
                await send({"type": "http.response.start", "status": 304,
                            "headers": [_IMMUTABLE, (b"etag", image.etag)]})
                await send({"type": "http.response.body", "body": b""})
                return
        await send({"type": "http.response.start", "status": 200, "headers": image.headers})
        await send({"type": "http.response.body", "body": b"" if head else image.data})

    async def _find_image(self, name: bytes) -> _Image | None:
        known = self._images.get(name)
        if known is not None:
            return known
        if self._unknown.get(name, 0.0) > time.monotonic():
            return None
        image = await asyncio.to_thread(self._load_image, name.decode("ascii"))
        if image is None:
            if len(self._unknown) > 10_000:
                self._unknown.clear()
            self._unknown[name] = time.monotonic() + self.cache_seconds
            return None
        # Published images never change or go away while their issue is there: keep them
        # in memory, up to a bound.
        if self._image_bytes + len(image.data) > IMAGE_CACHE_BYTES:
            self._images.clear()
            self._image_bytes = 0
        self._images[name] = image
        self._image_bytes += len(image.data)
        return image

    def _load_image(self, name: str) -> _Image | None:
        i, ii = db.images, db.issue_images
        with self.database.engine.connect() as conn:
            row = conn.execute(
                sa.select(i.c.content_type, i.c.data)
                .where(i.c.name == name,
                       sa.exists().where(ii.c.name == name))).first()
        if row is None:
            return None
        data = bytes(row.data)
        etag = f'"{name.partition(".")[0]}"'.encode()
        headers = (
            (b"content-type", row.content_type.encode("ascii")),
            (b"content-length", str(len(data)).encode()),
            _IMMUTABLE, (b"etag", etag), *_IMAGE_HEADERS,
        )
        return _Image(headers=headers, data=data, etag=etag)


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                 head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"), (b"content-length", str(len(body)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": b"" if head else body})
