"""``newsletter bounces fetch``: read the bounce mailbox and record what it says.

For each message not processed before: classify it (``bounces.classify``), find who it is
about (the VERP tag in the address it came back to, else our Message-ID quoted in it), then
record the bounce or complaint and apply the policy (``bounces.record``), in one transaction
with the note that the message was processed. Auto-replies, delay warnings, anything that is
not a bounce and anything we cannot attribute are noted as processed and change nothing.
A second run over the same mailbox changes nothing: processed messages are known by
Message-ID (or, without one, by a hash of the message).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import sqlalchemy as sa

from newsletter import db
from newsletter.bounces.classify import Classification, Kind, classify
from newsletter.bounces.events import EventType
from newsletter.bounces.mailbox import Mailbox
from newsletter.bounces.record import Event, by_message_id, by_recipient_id, known_issues, record
from newsletter.bounces.verp import InvalidTag, VerpCodec, tag_in
from newsletter.db import Database

_LABELS = {EventType.BOUNCED_HARD: "hard bounce", EventType.BOUNCED_SOFT: "soft bounce",
           EventType.COMPLAINED: "complaint"}


@dataclass(frozen=True)
class Line:
    """What happened to one message, for the summary."""

    outcome: str            # hard bounce | soft bounce | complaint | ignored | ...
    note: str
    address: str = ""
    issue: str = ""
    suppressed: str = ""


@dataclass
class FetchReport:
    """Every message's line, and counts by outcome."""

    lines: list[Line] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(line.outcome for line in self.lines)


def message_key(classification: Classification, raw: bytes) -> str:
    """How a processed message is remembered: its Message-ID, else a hash of its bytes."""
    return classification.message_id[:255] or "sha256:" + hashlib.sha256(raw).hexdigest()


def fetch(database: Database, mailbox: Mailbox, *, codec: VerpCodec, bounce_address: str,
          soft_bounce_limit: int, dry_run: bool = False) -> FetchReport:
    """Process every new message in ``mailbox``; with ``dry_run`` write and mark nothing."""
    report = FetchReport()
    with database.engine.connect() as conn:
        issues = known_issues(conn)
    for fetched in mailbox.messages():
        result = classify(fetched.raw)
        key = message_key(result, fetched.raw)
        with database.engine.begin() as conn:
            seen = conn.execute(sa.select(db.mailbox_messages.c.kind).where(
                db.mailbox_messages.c.message_key == key)).first()
            if seen is not None:
                report.lines.append(Line("already processed", result.subject))
            else:
                line = _process(conn, result, fetched.raw, key, codec, bounce_address, issues,
                                soft_bounce_limit)
                report.lines.append(line)
                if not dry_run:
                    conn.execute(db.mailbox_messages.insert().values(
                        message_key=key, at=db.now(), kind=line.outcome, note=line.note[:500]))
            if dry_run:
                conn.rollback()
        if not dry_run:
            mailbox.mark_done(fetched.key)
    return report


def _process(conn: sa.Connection, result: Classification, raw: bytes, key: str,
             codec: VerpCodec,
             bounce_address: str, issues: list[str], soft_bounce_limit: int) -> Line:
    if not result.counts:
        outcome = "malformed" if result.kind == Kind.MALFORMED else "ignored"
        return Line(outcome, f"{result.kind.value}: {result.note}" if result.note
                    else result.kind.value)
    who = _attribute(conn, result, codec, bounce_address, issues)
    if who is None:
        return Line("not attributable", f"{result.note}; no VERP tag or Message-ID of ours in "
                    "it", result.findings[0].address)
    issue, address, how = who
    finding = next((f for f in result.findings if f.address == address), result.findings[0])
    detail = finding.text
    if finding.address and finding.address != address:
        detail = f"reported for {finding.address}: {detail}"
    event = Event(key=f"mailbox:{key}", at=_date(raw), source="mailbox", type=finding.type,
                  address=address, issue=issue, status=finding.status, detail=detail,
                  raw=raw.decode("utf-8", "replace"))
    # In a dry run this is rolled back with the rest: the line says what would happen.
    done = record(conn, event, soft_bounce_limit)
    note = f"{result.note}; found by {how}"
    if finding.type == EventType.BOUNCED_SOFT and not done.suppressed:
        note += f"; {done.streak} of {soft_bounce_limit} in a row"
    return Line(_LABELS[finding.type], note, address, issue, done.suppressed)


def _attribute(conn: sa.Connection, result: Classification, codec: VerpCodec,
               bounce_address: str,
               issues: list[str]) -> tuple[str, str, str] | None:
    """(issue, address, how) of the recipient a bounce is about, or None."""
    if bounce_address:
        for candidate in result.envelope_addresses:
            tag = tag_in(candidate, bounce_address)
            if not tag:
                continue
            try:
                tagged = codec.read(tag, issues)
            except InvalidTag:
                continue
            address = by_recipient_id(conn, tagged.recipient_id)
            if address:
                return tagged.issue, address, "VERP tag"
    found = by_message_id(conn, result.original_message_id)
    if found:
        return found[0], found[1], "Message-ID"
    return None


def _date(raw: bytes) -> float:
    """When the bounce was written (its Date header), else now."""
    from email.parser import BytesHeaderParser

    try:
        value = BytesHeaderParser().parsebytes(raw).get("Date")
        return parsedate_to_datetime(str(value)).timestamp() if value else time.time()
    except (TypeError, ValueError, IndexError):
        return time.time()
