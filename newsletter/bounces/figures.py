"""What the report says about bounces: per issue and per list, sent, bounced (hard, soft),
complaints, unsubscribes and delivered (sent minus bounced), and the lists to tidy.

An address counts once per issue: a hard bounce wins over a soft one. Only addresses the
ledger sent the issue to are counted, so delivered is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from newsletter import db

HARD, SOFT, COMPLAINED, UNSUBSCRIBED = ("bounced-hard", "bounced-soft", "complained",
                                        "unsubscribed")


@dataclass
class _Person:
    organisation: str
    lists: set[str] = field(default_factory=set)
    bounce: str = ""            # bounced-hard | bounced-soft | ""
    status: str = ""
    detail: str = ""
    complained: bool = False
    unsubscribed: bool = False


def _count(people: list[_Person]) -> dict[str, int]:
    sent = len(people)
    hard = sum(1 for p in people if p.bounce == HARD)
    soft = sum(1 for p in people if p.bounce == SOFT)
    return {"sent": sent, "bounced_hard": hard, "bounced_soft": soft,
            "complaints": sum(1 for p in people if p.complained),
            "unsubscribes": sum(1 for p in people if p.unsubscribed),
            "delivered": sent - hard - soft}


def figures(conn: sa.Connection, slug: str) -> dict:
    """``{"totals": {...}, "lists": {key: {...}}, "tidy": [rows with addresses]}``."""
    r, d, dl = db.recipients, db.deliveries, db.delivery_lists
    people: dict[str, _Person] = {}
    for address, organisation, list_key in conn.execute(
            sa.select(r.c.address, r.c.organisation, dl.c.list_key)
            .join(d, d.c.recipient_id == r.c.id)
            .outerjoin(dl, sa.and_(dl.c.issue == d.c.issue,
                                   dl.c.recipient_id == d.c.recipient_id))
            .where(d.c.issue == slug, d.c.status == "sent")):
        person = people.setdefault(address, _Person(organisation or ""))
        person.lists.add(list_key or "")
    e = db.delivery_events
    for address, type_, status, detail in conn.execute(
            sa.select(e.c.address, e.c.type, e.c.status, e.c.detail)
            .where(e.c.issue == slug, e.c.type.in_((HARD, SOFT, COMPLAINED, UNSUBSCRIBED)))
            .order_by(e.c.at)):
        person = people.get(address)
        if person is None:
            continue
        if type_ == COMPLAINED:
            person.complained = True
        elif type_ == UNSUBSCRIBED:
            person.unsubscribed = True
        elif person.bounce != HARD:
            person.bounce, person.status, person.detail = type_, status, detail
    s = db.suppressions
    for address in conn.execute(sa.select(s.c.address).where(
            s.c.issue == slug, s.c.reason == UNSUBSCRIBED)).scalars():
        if address in people:
            people[address].unsubscribed = True
    by_list: dict[str, list[_Person]] = {}
    for person in people.values():
        for key in person.lists:
            by_list.setdefault(key, []).append(person)
    tidy = []
    for address, person in sorted(people.items()):
        reason = person.bounce or (COMPLAINED if person.complained else "")
        if not reason:
            continue
        for key in sorted(person.lists):
            tidy.append({"list": key or "(no list)", "address": address,
                         "organisation": person.organisation, "reason": reason,
                         "status": person.status, "detail": person.detail[:200]})
    return {"totals": _count(list(people.values())),
            "lists": {key: _count(members) for key, members in by_list.items()},
            "tidy": sorted(tidy, key=lambda row: (row["list"], row["address"]))}
