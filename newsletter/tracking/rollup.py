"""Counts kept up to date as events are stored: what reports read instead of every event.

A report over a million events used to read every one of them (1.8 s on PostgreSQL); the
counts below are a few hundred rows per issue (a few hundred thousand for individual
tracking's recipients), kept in three tables (migration ``m072``):

``event_counts``   (issue, kind, scanner, day, link_id, outlet, list_key) -> n
``event_reasons``  (issue, reasons) -> n: probable scanners, by the reasons they were given
``event_people``   (issue, kind, scanner, pseudonym, link_id) -> n: hits that name a
                   recipient (individual tracking), for unique clickers and organisations

``day`` is the UTC day number, ``int(at / 86400)``. They change only with the events, in the
same transaction: the event writer adds each batch (:meth:`Deltas.stored`) and moves each
earlier hit whose verdict the classifier changed from its old verdict to its new one
(:meth:`Deltas.changed`); ``purge`` takes away what it deletes. :func:`recount` counts the
same from the events themselves: the tests compare the two after every kind of change, and
``newsletter track recount`` rebuilds the counts from the events (after events were restored
from a backup, or written by anything other than this program).

Rows are upserted in key order, so two trackers on one PostgreSQL lock shared rows in the
same order and never deadlock; a row whose count falls to 0 stays, and readers skip it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa

from newsletter import db

_COUNT_KEY = ("issue", "kind", "scanner", "day", "link_id", "outlet", "list_key")
_REASON_KEY = ("issue", "reasons")
_PEOPLE_KEY = ("issue", "kind", "scanner", "pseudonym", "link_id")
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event_counts", _COUNT_KEY), ("event_reasons", _REASON_KEY),
    ("event_people", _PEOPLE_KEY))


def day_of(at: float) -> int:
    """The UTC day number of ``at``, computed as the SQL of :func:`recount` computes it."""
    return int(at / 86400)


@dataclass
class Deltas:
    """Changes to the counts, by table and key."""

    counts: dict[tuple, int] = field(default_factory=dict)
    reasons: dict[tuple, int] = field(default_factory=dict)
    people: dict[tuple, int] = field(default_factory=dict)

    def add(self, issue: str, kind: str, at: float, link_id: str, outlet: str, list_key: str,
            pseudonym: str, scanner: bool, reasons: str, sign: int) -> None:
        """Count one event (``sign`` 1) or take it away (-1)."""
        key = (issue, kind, scanner, day_of(at), link_id, outlet, list_key)
        self.counts[key] = self.counts.get(key, 0) + sign
        if scanner:
            self.reasons[(issue, reasons)] = self.reasons.get((issue, reasons), 0) + sign
        if pseudonym:
            person = (issue, kind, scanner, pseudonym, link_id)
            self.people[person] = self.people.get(person, 0) + sign

    def stored(self, hit: Any, reasons: str) -> None:
        """A hit stored with ``reasons`` (a probable scanner when there are any)."""
        self.add(hit.issue, hit.kind, hit.at, hit.link_id, hit.outlet, hit.list_key,
                 hit.pseudonym, bool(reasons), reasons, 1)

    def changed(self, hit: Any, before: str, after: str) -> None:
        """A stored hit's reasons changed from ``before`` to ``after``."""
        if before == after:
            return
        self.add(hit.issue, hit.kind, hit.at, hit.link_id, hit.outlet, hit.list_key,
                 hit.pseudonym, bool(before), before, -1)
        self.add(hit.issue, hit.kind, hit.at, hit.link_id, hit.outlet, hit.list_key,
                 hit.pseudonym, bool(after), after, 1)

    def tables(self) -> Iterable[tuple[str, tuple[str, ...], dict[tuple, int]]]:
        yield "event_counts", _COUNT_KEY, self.counts
        yield "event_reasons", _REASON_KEY, self.reasons
        yield "event_people", _PEOPLE_KEY, self.people


def _mark(conn: sa.Connection) -> str:
    return "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"


def apply(conn: sa.Connection, deltas: Deltas) -> None:
    """Add ``deltas`` to the stored counts (in the caller's transaction)."""
    mark = _mark(conn)
    for table, key, changes in deltas.tables():
        rows = sorted(k + (n,) for k, n in changes.items() if n)
        if not rows:
            continue
        columns = ", ".join((*key, "n"))
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join([mark] * (len(key) + 1))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET n = {table}.n + excluded.n", rows)


def _day_sql(conn: sa.Connection) -> str:
    # The same number as day_of(): a float division, then truncation (at is never negative).
    if conn.dialect.name == "postgresql":
        return "CAST(trunc(at / 86400) AS INTEGER)"
    return "CAST(at / 86400 AS INTEGER)"


def _recount_selects(conn: sa.Connection, where: str) -> dict[str, str]:
    day = _day_sql(conn)
    return {
        "event_counts": f"SELECT issue, kind, scanner, {day}, link_id, outlet, list_key, "
                        f"COUNT(*) FROM events{where} "
                        f"GROUP BY issue, kind, scanner, {day}, link_id, outlet, list_key",
        "event_reasons": f"SELECT issue, reasons, COUNT(*) FROM events{where}"
                         f"{' AND' if where else ' WHERE'} scanner = {_true(conn)} "
                         "GROUP BY issue, reasons",
        "event_people": f"SELECT issue, kind, scanner, pseudonym, link_id, COUNT(*) "
                        f"FROM events{where}{' AND' if where else ' WHERE'} pseudonym != '' "
                        "GROUP BY issue, kind, scanner, pseudonym, link_id",
    }


def _true(conn: sa.Connection) -> str:
    return "true" if conn.dialect.name == "postgresql" else "1"


def recount(conn: sa.Connection, issue: str | None = None) -> dict[str, dict[tuple, int]]:
    """The counts as the events say they should be: table -> key -> n."""
    where, params = (f" WHERE issue = {_mark(conn)}", (issue,)) if issue else ("", ())
    found: dict[str, dict[tuple, int]] = {}
    for table, select in _recount_selects(conn, where).items():
        found[table] = {_key(table, row): int(row[-1])
                        for row in conn.exec_driver_sql(select, params)}
    return found


def stored(conn: sa.Connection, issue: str | None = None) -> dict[str, dict[tuple, int]]:
    """The counts as kept (rows of 0 left out): table -> key -> n."""
    found: dict[str, dict[tuple, int]] = {}
    for table, key in TABLES:
        where, params = (f" WHERE issue = {_mark(conn)}", (issue,)) if issue else ("", ())
        found[table] = {_key(table, row): int(row[-1]) for row in conn.exec_driver_sql(
            f"SELECT {', '.join(key)}, n FROM {table}{where}", params) if row[-1]}
    return found


def _key(table: str, row: Any) -> tuple:
    key = tuple(row[:-1])
    if table == "event_reasons":
        return key
    return (*key[:2], bool(key[2]), *key[3:])   # SQLite gives the scanner flag back as 0/1


def differences(conn: sa.Connection, issue: str | None = None) -> int:
    """How many counts (of ``issue``, or all) differ from a recount of the events."""
    kept, right = stored(conn, issue), recount(conn, issue)
    return sum(1 for t, _ in TABLES for key in kept[t].keys() | right[t].keys()
               if kept[t].get(key) != right[t].get(key))


def rebuild(conn: sa.Connection, issue: str | None = None) -> None:
    """Replace the counts (of ``issue``, or all) with a recount of the events."""
    where, params = (f" WHERE issue = {_mark(conn)}", (issue,)) if issue else ("", ())
    for (table, key), select in zip(TABLES, _recount_selects(conn, where).values(),
                                    strict=True):
        conn.exec_driver_sql(f"DELETE FROM {table}{where}", params)
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join((*key, 'n'))}) {select}", params)


def delete_events(conn: sa.Connection, cutoff: float, issue: str | None,
                  limit: int) -> int:
    """Delete up to ``limit`` events from before ``cutoff`` (of ``issue``) and take them off
    the counts, in the caller's transaction; return how many. What is subtracted is what was
    deleted (``DELETE ... RETURNING``), so a verdict a tracker stored meanwhile is never
    subtracted as it was before."""
    e = db.events
    doomed = sa.select(e.c.id).where(e.c.at < cutoff)
    if issue:
        doomed = doomed.where(e.c.issue == issue)
    rows = list(conn.execute(
        e.delete().where(e.c.id.in_(doomed.limit(limit).scalar_subquery()))
        .returning(e.c.issue, e.c.kind, e.c.at, e.c.link_id, e.c.outlet, e.c.list_key,
                   e.c.pseudonym, e.c.scanner, e.c.reasons)))
    deltas = Deltas()
    for row in rows:
        deltas.add(row.issue, row.kind, row.at, row.link_id, row.outlet, row.list_key,
                   row.pseudonym, bool(row.scanner), row.reasons, -1)
    apply(conn, deltas)
    return len(rows)


# --- reading: what the reports ask --------------------------------------------------------


class Count(NamedTuple):
    """``n`` events of an issue alike but for their day (summed over the days)."""

    kind: str
    scanner: bool       # 0 or 1 from SQLite: compare by truth, never by identity
    link_id: str
    outlet: str
    list_key: str
    n: int


class DayCount(NamedTuple):
    """``n`` clicks or views of an issue on one UTC day (``day``: days since 1970-01-01)."""

    day: int
    kind: str
    scanner: bool
    link_id: str
    n: int


def counts_of(conn: sa.Connection, issue: str) -> list[Count]:
    """The counts of ``issue``, added up over the days in SQL (an issue has tens of thousands
    of rows per day; a report needs the days only for :func:`days_of`)."""
    c = db.event_counts
    n = sa.cast(sa.func.sum(c.c.n), sa.BigInteger)   # PostgreSQL's SUM of BIGINT is NUMERIC
    return [Count(*row) for row in conn.execute(
        sa.select(c.c.kind, c.c.scanner, c.c.link_id, c.c.outlet, c.c.list_key, n)
        .where(c.c.issue == issue)
        .group_by(c.c.kind, c.c.scanner, c.c.link_id, c.c.outlet, c.c.list_key)
        .having(n > 0))]


def days_of(conn: sa.Connection, issue: str) -> list[DayCount]:
    """The clicks and views of ``issue`` per UTC day, kind, verdict and link."""
    c = db.event_counts
    n = sa.cast(sa.func.sum(c.c.n), sa.BigInteger)   # PostgreSQL's SUM of BIGINT is NUMERIC
    return [DayCount(*row) for row in conn.execute(
        sa.select(c.c.day, c.c.kind, c.c.scanner, c.c.link_id, n)
        .where(c.c.issue == issue, c.c.kind.in_(("click", "view")))
        .group_by(c.c.day, c.c.kind, c.c.scanner, c.c.link_id)
        .having(n > 0))]


def reasons_of(conn: sa.Connection, issue: str) -> dict[str, int]:
    """Probable scanners' events of ``issue`` by reason (an event with two counts under
    both; one stored without a reason under ``unknown``)."""
    r = db.event_reasons
    found: dict[str, int] = {}
    for text, n in conn.execute(sa.select(r.c.reasons, r.c.n)
                                .where(r.c.issue == issue, r.c.n > 0)):
        for reason in (text or "unknown").split(","):
            found[reason] = found.get(reason, 0) + int(n)
    return found


def unique_per_link(conn: sa.Connection, issue: str, kind: str,
                    scanner: tuple[bool, ...]) -> dict[str, int]:
    """Distinct recipients per link with events of ``kind`` (individual tracking)."""
    p = db.event_people
    where = (p.c.issue == issue, p.c.kind == kind, p.c.scanner.in_(scanner), p.c.n > 0)
    if len(scanner) == 1:   # one row per recipient and link already (the table's key)
        query = sa.select(p.c.link_id, sa.func.count()).where(*where).group_by(p.c.link_id)
    else:
        pairs = sa.select(p.c.link_id, p.c.pseudonym).distinct().where(*where).subquery()
        query = sa.select(pairs.c.link_id, sa.func.count()).group_by(pairs.c.link_id)
    return {link: int(n) for link, n in conn.execute(query)}


def clicks_per_person(conn: sa.Connection, issue: str, downloads: list[str],
                      scanner: tuple[bool, ...]) -> dict[str, tuple[int, int]]:
    """(clicks, downloads) per recipient pseudonym with at least one click."""
    p = db.event_people
    on_download = sa.func.sum(sa.case((p.c.link_id.in_(downloads), p.c.n), else_=0))
    return {person: (int(n), int(dl or 0)) for person, n, dl in conn.execute(
        sa.select(p.c.pseudonym, sa.func.sum(p.c.n), on_download)
        .where(p.c.issue == issue, p.c.kind == "click", p.c.scanner.in_(scanner), p.c.n > 0)
        .group_by(p.c.pseudonym))}
