"""Record what became of a message, and apply the suppression policy.

Every bounce, complaint, delivery and provider unsubscribe, whichever way it came (``send``,
``mailbox``, ``webhook``), is stored once in ``delivery_events`` under a key that names it
(the mailbox message's Message-ID, the provider's event id), so seeing it again changes
nothing. Then the policy:

* a hard bounce, a complaint or an unsubscribe suppresses the address at once;
* a soft bounce suppresses it once the last ``soft_bounce_limit`` issues sent to it (default 3)
  all bounced: "in a row across issues". An issue sent to it without a bounce breaks the run.

Attribution (which issue and recipient an event is about) is by the VERP tag or by our
Message-ID, never by guessing from a bounce's text (see ``bounces.fetch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from newsletter import db, ledger, suppressions
from newsletter.bounces.events import EventType, bounce_type

MAX_RAW = 64 * 1024     # characters of the raw message or payload kept with an event

_REASON = {EventType.BOUNCED_HARD: "bounced-hard", EventType.COMPLAINED: "complained",
           EventType.UNSUBSCRIBED: "unsubscribed"}
_BOUNCES = (EventType.BOUNCED_HARD.value, EventType.BOUNCED_SOFT.value)


@dataclass(frozen=True)
class Event:
    """One attributed event, ready to store."""

    key: str
    at: float
    source: str             # send | mailbox | webhook
    type: EventType
    address: str
    issue: str = ""
    provider: str = ""
    status: str = ""
    detail: str = ""
    raw: str = ""


@dataclass(frozen=True)
class Recorded:
    """What recording one event did."""

    new: bool               # False: seen before, nothing changed
    suppressed: str = ""    # the reason, when this event suppressed the address
    streak: int = 0         # soft bounces in a row, for a soft bounce


def record(conn: Connection, event: Event, soft_bounce_limit: int) -> Recorded:
    """Store ``event`` (once) and suppress its address if the policy says so."""
    exists = conn.execute(sa.select(db.delivery_events.c.id).where(
        db.delivery_events.c.event_key == event.key[:255])).first()
    if exists is not None:
        return Recorded(new=False)
    conn.execute(db.delivery_events.insert().values(
        event_key=event.key[:255], at=event.at, recorded_at=db.now(), source=event.source,
        provider=event.provider, type=event.type.value, address=event.address,
        issue=event.issue, status=event.status[:16], detail=event.detail[:2000],
        raw=event.raw[:MAX_RAW]))
    detail = " ".join(part for part in (event.status, event.detail) if part)
    if event.type == EventType.DELIVERED and event.issue:
        # the ledger keeps when the message really arrived, for the tracker's timing rules
        ledger.mark_delivered(conn, event.issue, event.address, event.at)
    if event.type in _REASON:
        reason = _REASON[event.type]
        done = suppressions.add(conn, event.address, reason, event.source, issue=event.issue,
                                detail=detail, at=event.at)
        return Recorded(new=True, suppressed=reason if done else "")
    if event.type == EventType.BOUNCED_SOFT:
        streak = soft_streak(conn, event.address, event.issue, event.at)
        if streak >= soft_bounce_limit:
            done = suppressions.add(
                conn, event.address, "bounced-soft", event.source, issue=event.issue,
                detail=f"{streak} soft bounces in a row; last: {detail}", at=event.at)
            return Recorded(new=True, suppressed="bounced-soft" if done else "", streak=streak)
        return Recorded(new=True, streak=streak)
    return Recorded(new=True)


def soft_streak(conn: Connection, address: str, issue: str, at: float) -> int:
    """Issues in a row, up to and including ``issue``, in which ``address`` bounced.

    The issues are those the ledger sent to the address, newest first; a bounce with no issue
    of ours counts as one issue of its own, at its time.
    """
    when: dict[str, float] = {}
    d, r = db.deliveries, db.recipients
    for slug, sent_at in conn.execute(
            sa.select(d.c.issue, d.c.sent_at).join(r, r.c.id == d.c.recipient_id)
            .where(r.c.address == address, d.c.status == "sent")):
        when[slug] = sent_at or 0.0
    bounced: set[str] = set()
    e = db.delivery_events
    for key, slug, event_at in conn.execute(
            sa.select(e.c.event_key, e.c.issue, e.c.at)
            .where(e.c.address == address, e.c.type.in_(_BOUNCES))):
        occasion = slug or f"\x00{key}"
        bounced.add(occasion)
        when.setdefault(occasion, event_at)
    current = issue or None
    limit = when.get(current, at) if current else at
    streak = 0
    for occasion, _ in sorted(when.items(), key=lambda item: item[1], reverse=True):
        if when[occasion] > limit:
            continue        # sent after the issue this bounce is about: not judged yet
        if occasion not in bounced:
            break
        streak += 1
    return streak


def record_refusals(database: db.Database, issue: str, refused: list[tuple[str, str]],
                    soft_bounce_limit: int) -> list[Recorded]:
    """Bounces at send time: each (address, server's words) a server refused at RCPT TO, or a
    provider refused as an address, is a bounce of ``issue``: hard (suppressed at once) for
    5.1.x, 5.2.1 and 5.7.1 and a provider's refusal without an SMTP code, soft otherwise."""
    from newsletter.bounces.events import basic_code_in, status_in

    done = []
    with database.engine.begin() as conn:
        for address, text in refused:
            if not address:
                continue
            status = status_in(text)
            code = basic_code_in(_reply(text))
            # A provider that refuses an address says so in words, with no SMTP code.
            type_ = bounce_type(status, code) if status or code is not None else \
                EventType.BOUNCED_HARD
            done.append(record(conn, Event(
                key=f"send:{issue}:{address}", at=db.now(), source="send", type=type_,
                address=address, issue=issue, status=status, detail=text), soft_bounce_limit))
    return done


def _reply(text: str) -> str:
    """The server's reply in an error like ``RCPT TO x@example.org: 550 5.1.1 ...``."""
    return text.split(": ", 1)[1] if ": " in text else text


def raw_json(value: object) -> str:
    """A provider's record as stored beside the event."""
    return json.dumps(value, sort_keys=True, default=str)[:MAX_RAW]


# --- attribution ---------------------------------------------------------------------------------


def by_message_id(conn: Connection, message_id: str) -> tuple[str, str] | None:
    """(issue, address) of the ledger row that sent ``message_id``, if it is ours."""
    if not message_id:
        return None
    d, r = db.deliveries, db.recipients
    row = conn.execute(sa.select(d.c.issue, r.c.address).join(r, r.c.id == d.c.recipient_id)
                       .where(d.c.message_id == message_id)).first()
    return (row.issue, row.address) if row else None


def by_recipient_id(conn: Connection, recipient_id: int) -> str | None:
    """The address of recipient ``recipient_id``."""
    return conn.execute(sa.select(db.recipients.c.address)
                        .where(db.recipients.c.id == recipient_id)).scalar()


def issue_of(conn: Connection, address: str, message_id: str = "") -> str:
    """The issue a provider's event is about: by our Message-ID, else ``""``."""
    found = by_message_id(conn, message_id)
    return found[0] if found and found[1] == address else ""


def known_issues(conn: Connection) -> list[str]:
    """Every issue registered for sending, newest first (VERP tags are read against these)."""
    return list(conn.execute(sa.select(db.issues.c.slug)
                             .order_by(db.issues.c.created_at.desc())).scalars())
