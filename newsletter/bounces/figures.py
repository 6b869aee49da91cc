"""What the report says about bounces: per issue and per list, sent, bounced (hard, soft),
complaints, unsubscribes and delivered (sent minus bounced), and the lists to tidy.

An address counts once per issue: a hard bounce wins over a soft one. Only addresses the
ledger sent the issue to are counted, so delivered is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from newsletter import db

HARD, SOFT, COMPLAINED, UNSUBSCRIBED = ("bounced-hard", "bounced-soft", "complained",
                                        "unsubscribed")


@dataclass
class _Outcome:
    """What happened to one recipient of the issue after sending (only those with events)."""

    bounce: str = ""            # bounced-hard | bounced-soft | ""
    status: str = ""
    detail: str = ""
    complained: bool = False
    unsubscribed: bool = False


_ZERO = {"bounced_hard": 0, "bounced_soft": 0, "complaints": 0, "unsubscribes": 0}


def _add(counts: dict[str, int], outcome: _Outcome) -> None:
    if outcome.bounce == HARD:
        counts["bounced_hard"] += 1
    elif outcome.bounce == SOFT:
        counts["bounced_soft"] += 1
    counts["complaints"] += outcome.complained
    counts["unsubscribes"] += outcome.unsubscribed


@dataclass
class _Sent:
    """Every recipient sent the issue, with their lists: one pass, no object per recipient
    (a report over 100,000 recipients pays only for the few that bounced)."""

    lists_of: dict[str, list[str]] = field(default_factory=dict)
    organisation: dict[str, str] = field(default_factory=dict)
    per_list: dict[str, int] = field(default_factory=dict)


def figures(conn: sa.Connection, slug: str) -> dict[str, Any]:
    """``{"totals": {...}, "lists": {key: {...}}, "tidy": [rows with addresses]}``."""
    sent = _sent(conn, slug)
    outcomes = _outcomes(conn, slug, sent.lists_of)
    totals = {"sent": len(sent.lists_of), **_ZERO}
    per_list = {key: {"sent": n, **_ZERO} for key, n in sent.per_list.items()}
    tidy: list[dict[str, str]] = []
    for address, outcome in sorted(outcomes.items()):
        _add(totals, outcome)
        for key in sent.lists_of[address]:
            _add(per_list[key], outcome)
        reason = outcome.bounce or (COMPLAINED if outcome.complained else "")
        if reason:
            tidy += [{"list": key or "(no list)", "address": address,
                      "organisation": sent.organisation[address], "reason": reason,
                      "status": outcome.status, "detail": outcome.detail[:200]}
                     for key in sorted(sent.lists_of[address])]
    for counts in (totals, *per_list.values()):
        counts["delivered"] = counts["sent"] - counts["bounced_hard"] - counts["bounced_soft"]
    return {"totals": totals, "lists": per_list,
            "tidy": sorted(tidy, key=lambda row: (row["list"], row["address"]))}


def _sent(conn: sa.Connection, slug: str) -> _Sent:
    r, d, dl = db.recipients, db.deliveries, db.delivery_lists
    sent = _Sent()
    for address, org, list_key in conn.execute(
            sa.select(r.c.address, r.c.organisation, dl.c.list_key)
            .join(d, d.c.recipient_id == r.c.id)
            .outerjoin(dl, sa.and_(dl.c.issue == d.c.issue,
                                   dl.c.recipient_id == d.c.recipient_id))
            .where(d.c.issue == slug, d.c.status == "sent")):
        key = list_key or ""
        known = sent.lists_of.get(address)
        if known is None:
            sent.lists_of[address] = [key]
            sent.organisation[address] = org or ""
        else:
            known.append(key)
        sent.per_list[key] = sent.per_list.get(key, 0) + 1
    return sent


def _outcomes(conn: sa.Connection, slug: str,
              lists_of: dict[str, list[str]]) -> dict[str, _Outcome]:
    """What happened after sending to each recipient that has an event or an unsubscribe."""
    outcomes: dict[str, _Outcome] = {}
    e = db.delivery_events
    for address, type_, status, detail in conn.execute(
            sa.select(e.c.address, e.c.type, e.c.status, e.c.detail)
            .where(e.c.issue == slug, e.c.type.in_((HARD, SOFT, COMPLAINED, UNSUBSCRIBED)))
            .order_by(e.c.at)):
        if address not in lists_of:
            continue
        outcome = outcomes.setdefault(address, _Outcome())
        if type_ == COMPLAINED:
            outcome.complained = True
        elif type_ == UNSUBSCRIBED:
            outcome.unsubscribed = True
        elif outcome.bounce != HARD:
            outcome.bounce, outcome.status, outcome.detail = type_, status, detail
    s = db.suppressions
    for address in conn.execute(sa.select(s.c.address).where(
            s.c.issue == slug, s.c.reason == UNSUBSCRIBED)).scalars():
        if address in lists_of:
            outcomes.setdefault(address, _Outcome()).unsubscribed = True
    return outcomes
