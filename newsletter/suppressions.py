"""The suppression list: addresses never sent to, each with why, what found it, and when.

::

    reason   unsubscribed | bounced-hard | bounced-soft | complained | manual
    source   send | mailbox | webhook | tracker | manual

Every change (added, removed) is also written to ``suppression_log``, so removing an address
never loses what was known about it. The send plan leaves suppressed addresses out
(``ledger.suppressed_addresses``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from newsletter import db
from newsletter.db import Database
from newsletter.errors import NewsletterError, Problem

REASONS = ("unsubscribed", "bounced-hard", "bounced-soft", "complained", "manual")
SOURCES = ("send", "mailbox", "webhook", "tracker", "manual")
CSV_COLUMNS = ("address", "reason", "source", "at", "issue", "detail")


@dataclass(frozen=True)
class Suppression:
    """One suppressed address."""

    address: str
    reason: str
    source: str
    at: float
    issue: str = ""
    detail: str = ""


def add(conn: Connection, address: str, reason: str, source: str, *, issue: str = "",
        detail: str = "", at: float | None = None, note: str = "") -> bool:
    """Suppress ``address``; False (and nothing changed) when it already is."""
    address = address.strip().lower()
    exists = conn.execute(sa.select(db.suppressions.c.address)
                          .where(db.suppressions.c.address == address)).first()
    if exists is not None:
        return False
    when = db.now() if at is None else at
    detail = detail[:2000]
    conn.execute(db.suppressions.insert().values(
        address=address, reason=reason, source=source, created_at=when, issue=issue,
        detail=detail))
    conn.execute(db.suppression_log.insert().values(
        at=db.now(), action="added", address=address, reason=reason, source=source,
        issue=issue, detail=detail, note=note))
    return True


def remove(database: Database, address: str, note: str = "") -> Suppression | None:
    """Lift the suppression of ``address`` (logged); the row it had, or None."""
    address = address.strip().lower()
    with database.engine.begin() as conn:
        row = conn.execute(sa.select(db.suppressions)
                           .where(db.suppressions.c.address == address)).first()
        if row is None:
            return None
        conn.execute(db.suppressions.delete().where(db.suppressions.c.address == address))
        conn.execute(db.suppression_log.insert().values(
            at=db.now(), action="removed", address=address, reason=row.reason,
            source=row.source, issue=row.issue, detail=row.detail, note=note))
    return _suppression(row)


def get(database: Database, address: str) -> Suppression | None:
    """The suppression of ``address``, if there is one."""
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(db.suppressions).where(
            db.suppressions.c.address == address.strip().lower())).first()
    return _suppression(row) if row is not None else None


def all_suppressions(database: Database, *, reason: str | None = None,
                     addresses: Iterable[str] | None = None, since: float | None = None,
                     until: float | None = None) -> list[Suppression]:
    """Every suppression matching the filters, oldest first."""
    table = db.suppressions
    query = sa.select(table).order_by(table.c.created_at, table.c.address)
    if reason:
        query = query.where(table.c.reason == reason)
    if since is not None:
        query = query.where(table.c.created_at >= since)
    if until is not None:
        query = query.where(table.c.created_at < until)
    wanted = {a.lower() for a in addresses} if addresses is not None else None
    with database.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_suppression(r) for r in rows if wanted is None or r.address in wanted]


def _suppression(row: sa.Row[Any]) -> Suppression:
    return Suppression(row.address, row.reason, row.source, row.created_at, row.issue,
                       row.detail)


def to_csv(items: Iterable[Suppression]) -> str:
    """The suppressions as CSV (``at`` as ISO 8601 UTC), the format ``import`` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in items:
        writer.writerow((s.address, s.reason, s.source, iso(s.at), s.issue, s.detail))
    return out.getvalue()


def iso(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the second."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_csv(path: Path) -> tuple[list[Suppression], list[Problem]]:
    """Rows of a CSV file with at least an ``address`` column (``reason`` defaults to manual),
    each checked; every problem located by line."""
    from datetime import datetime

    from newsletter.audiences import normalise_address

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise NewsletterError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise NewsletterError(f"{path}: cannot be read: {exc}",
                              hint="save it as a UTF-8 CSV file") from exc
    name = str(path)
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "address" not in fields and "email" not in fields:
        return [], [Problem(name, 1, 1, "the first line must name the columns, with one "
                            "called address (or email)",
                            hint="e.g. address,reason then one address per line")]
    items: list[Suppression] = []
    problems: list[Problem] = []
    for row in reader:
        line = reader.line_num
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        raw = values.get("address") or values.get("email") or ""
        address, why = normalise_address(raw)
        if not address:
            problems.append(Problem(name, line, 1, f"{raw!r} is not an email address: {why}"))
            continue
        reason = values.get("reason") or "manual"
        if reason not in REASONS:
            problems.append(Problem(name, line, 1, f"unknown reason {reason!r}",
                                    hint="one of: " + ", ".join(REASONS)))
            continue
        source = values.get("source") or "manual"
        if source not in SOURCES:
            problems.append(Problem(name, line, 1, f"unknown source {source!r}",
                                    hint="one of: " + ", ".join(SOURCES)))
            continue
        at = db.now()
        if values.get("at"):
            try:
                at = datetime.fromisoformat(values["at"].replace("Z", "+00:00")).timestamp()
            except ValueError:
                problems.append(Problem(name, line, 1, f"at {values['at']!r} is not a date",
                                        hint="write it as 2026-04-14 or 2026-04-14T09:12:05Z"))
                continue
        items.append(Suppression(address, reason, source, at, values.get("issue", ""),
                                 values.get("detail", "")))
    return items, problems
