"""``POST /hooks/{provider}`` on the tracker: authenticate, parse, store, answer.

::

    200  {"stored": N, "duplicates": N, "skipped": N}   every event read; stored once each
    401  not from the provider, the provider's settings are not set, or a replay: nothing kept
    400  authenticated, but the body cannot be read: logged, nothing kept
    404  no such provider        405  not a POST        413  body over 1 MiB

Answers carry no detail beyond that (the reason goes to the server log), so a caller learns
nothing about why a forgery failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from starlette.types import Receive, Scope, Send

from newsletter.db import Database
from newsletter.hooks import PROVIDER_NAMES, Malformed, Provider, Unauthorized, provider_for
from newsletter.hooks.store import store

log = logging.getLogger("newsletter.hooks")
MAX_HOOK_BODY = 1024 * 1024
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
         (b"x-content-type-options", b"nosniff")]


class HookRoute:
    """The webhook endpoints of one tracker app."""

    def __init__(self, database: Database, env: Mapping[str, str], soft_bounce_limit: int,
                 **provider_options: object) -> None:
        self.database = database
        self.soft_bounce_limit = soft_bounce_limit
        self.providers: dict[str, Provider] = {}
        for name in PROVIDER_NAMES:
            provider = provider_for(name, env, **provider_options)
            if provider is not None:
                self.providers[name] = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: bytes) -> None:
        provider = self.providers.get(name.decode("ascii", "replace"))
        if scope["method"] != "POST":
            return await _answer(send, 405, {"error": "method not allowed"},
                                 [(b"allow", b"POST")])
        if provider is None:
            return await _answer(send, 404, {"error": "no such webhook"})
        body = await _body(receive)
        if body is None:
            return await _answer(send, 413, {"error": "body too large"})
        if not provider.configured:
            log.warning("%s webhook refused: %s not set", provider.name, provider.missing())
            return await _answer(send, 401, {"error": "unauthorized"})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        try:
            replay_key = provider.authenticate(headers, body)
            parsed = provider.parse(body)
            done = await asyncio.to_thread(store, self.database, provider.name, parsed,
                                           replay_key, self.soft_bounce_limit)
        except Unauthorized as exc:
            log.warning("%s webhook refused: %s", provider.name, exc)
            return await _answer(send, 401, {"error": "unauthorized"})
        except Malformed as exc:
            log.warning("%s webhook skipped, body cannot be read: %s", provider.name, exc)
            return await _answer(send, 400, {"error": "malformed body"})
        except sa.exc.IntegrityError:
            # The same request or event arrived twice at once; the other one stored it.
            log.warning("%s webhook: a concurrent copy of this request was stored",
                        provider.name)
            return await _answer(send, 401, {"error": "unauthorized"})
        for reason in parsed.skipped:
            log.info("%s webhook: skipped %s", provider.name, reason)
        stored = sum(1 for d in done if d.new)
        return await _answer(send, 200, {"stored": stored, "duplicates": len(done) - stored,
                                         "skipped": len(parsed.skipped)})


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_HOOK_BODY:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Send, status: int, document: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, *(headers or []),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
