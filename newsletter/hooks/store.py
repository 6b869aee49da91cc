"""Store an authenticated webhook request's events: once each, replays refused.

A signed request (Mailgun's token, SendGrid's signature) is accepted once: its key goes into
``webhook_requests`` in the same transaction as its events, so a replay stores nothing and is
refused. Each event is recorded under the provider's id for it (``bounces.record``), which
also makes a provider's retry of an event already stored change nothing; the issue is found
from our Message-ID when the provider gives it back.
"""

from __future__ import annotations

import sqlalchemy as sa

from newsletter import db
from newsletter.bounces.record import Event, Recorded, issue_of, raw_json, record
from newsletter.db import Database
from newsletter.hooks import Parsed, Unauthorized


class Replayed(Unauthorized):
    """This signed request was accepted before."""


def store(database: Database, provider: str, parsed: Parsed, replay_key: str,
          soft_bounce_limit: int) -> list[Recorded]:
    """Record every event of one request, or nothing if it is a replay."""
    with database.engine.begin() as conn:
        if replay_key:
            seen = conn.execute(sa.select(db.webhook_requests.c.request_key).where(
                db.webhook_requests.c.request_key == replay_key[:255])).first()
            if seen is not None:
                raise Replayed("this signed request was accepted before")
            conn.execute(db.webhook_requests.insert().values(request_key=replay_key[:255],
                                                             at=db.now()))
        done = []
        for event in parsed.events:
            done.append(record(conn, Event(
                key=f"webhook:{provider}:{event.event_id}", at=event.at, source="webhook",
                provider=provider, type=event.type, address=event.address,
                issue=issue_of(conn, event.address, event.message_id), status=event.status,
                detail=event.text, raw=raw_json(event.raw)), soft_bounce_limit))
        return done
