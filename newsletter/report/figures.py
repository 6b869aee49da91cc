"""The report's figures: the ledger and the tracking events of one issue, counted honestly.

:func:`build` aggregates in SQL (covering indexes from migration ``m002``) and returns a
:class:`~newsletter.report.contract.Report`. Headline figures count people, not security
scanners: events classified as probable scanners (with reasons, see
:mod:`newsletter.tracking.classify`) are counted apart and left out unless
``include_scanners`` is set. Unique clickers, click-through and organisations exist only for
issues sent with individual tracking; aggregate issues report totals per link and per list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from newsletter import db
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.report.contract import (
    COUNT_KEYS,
    FORMAT_VERSION,
    Classifier,
    CommentRow,
    DayRow,
    FeedbackFigures,
    LinkRow,
    ListRow,
    OrganisationRow,
    Report,
    Row,
)
from newsletter.status import Status

E = db.events

def build(database: Database, slug: str, *, include_scanners: bool = False,
          min_count: int = 0) -> Report:
    """Every figure of the report for issue ``slug``, as the JSON contract."""
    with database.engine.connect() as conn:
        issue = conn.execute(sa.select(db.issues).where(db.issues.c.slug == slug)).first()
        status: dict[str, int] = {row[0]: row[1] for row in conn.execute(
            sa.select(db.deliveries.c.status, sa.func.count())
            .where(db.deliveries.c.issue == slug).group_by(db.deliveries.c.status))}
        if issue is None and not status:
            known = [r[0] for r in conn.execute(
                sa.select(db.deliveries.c.issue).distinct().order_by(db.deliveries.c.issue))]
            raise NewsletterError(
                f"issue {slug!r} was never sent: the database has no record of it",
                hint=("issues sent: " + ", ".join(known)) if known else
                "nothing has been sent from this database; check --db or NEWSLETTER_DB")
        if not status.get(Status.SENT):
            found = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
            raise NewsletterError(
                f"issue {slug!r} was never sent: " + (
                    f"none of its messages was accepted ({found})" if found
                    else "the ledger has no messages for it"),
                hint=f"send it first: newsletter send {slug}")
        return _Builder(database, conn, slug, issue, status, include_scanners,
                        min_count).build()


_T = TypeVar("_T")
_Pairs = dict[tuple[str, str], int]     # (event kind, link id) -> events


class _Builder:
    def __init__(self, database: Database, conn: sa.Connection, slug: str,
                 issue: sa.Row[Any] | None, status: Mapping[str, int],
                 include_scanners: bool, min_count: int) -> None:
        self.database = database
        self.conn = conn
        self.slug = slug
        self.issue = issue
        self.tracking = issue.tracking if issue is not None else "aggregate"
        self.individual = self.tracking == "individual"
        from newsletter.bounces.figures import figures

        self.sent = int(status.get(Status.SENT, 0))
        self.bounce_figures = figures(conn, slug)
        # Delivered is sent minus bounced (hard or soft); click-through is out of delivered.
        self.delivered = self.bounce_figures["totals"]["delivered"]
        self.include = include_scanners
        self.min_count = min_count
        self.links = list(conn.execute(
            sa.select(db.links).where(db.links.c.issue == slug).order_by(db.links.c.link_id)))
        self.downloads = [r.link_id for r in self.links if r.kind == "download"]
        self._recipient_rows: list[sa.Row[Any]] | None = None

    def _classifier(self) -> Classifier:
        """The version of the scanner rules in force, and every version that classified this
        issue's events (older ones for events stored before an upgrade)."""
        from newsletter.tracking.classify import VERSION

        t = db.event_classifiers
        found = sorted(self.conn.execute(sa.select(t.c.classifier)
                                         .where(t.c.issue == self.slug)).scalars())
        return {"version": VERSION, "versions": found}

    def _scanner_values(self) -> tuple[bool, ...]:
        return (False, True) if self.include else (False,)

    def _on_own_connection(self, work: Callable[[sa.Connection], _T]) -> Callable[[], _T]:
        def run() -> _T:
            with self.database.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    # room to hash a million (link, recipient) pairs without spilling to disk;
                    # the rollback when the connection goes back to the pool undoes it
                    conn.exec_driver_sql("SET work_mem = '64MB'")
                return work(conn)
        return run

    def build(self) -> Report:
        slug = self.slug
        # Every query reads one covering index in its order (migration m002), so SQLite streams
        # through it without sorting; the four scans are independent and run side by side, each
        # on its own connection (the database releases the GIL while it works).
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="report") as pool:
            counts = pool.submit(self._on_own_connection(self._counts))
            uniques = pool.submit(self._on_own_connection(self._uniques))
            people_f = pool.submit(self._on_own_connection(self._people))
            days_f = pool.submit(self._on_own_connection(self._days))
            counted, scanners, reasons = counts.result()
            unique_links, unique_opens = uniques.result()
            people = people_f.result()
            days = days_f.result()
        click_total = sum(n for (k, _), n in counted.items() if k == "click")
        download_total = sum(counted.get(("click", d), 0) for d in self.downloads)
        unique = len(people) if self.individual else None
        unique_dl = sum(1 for _, dl in people.values() if dl) if self.individual else None
        views = counted.get(("view", ""), 0)
        opens_on = bool(self.issue.opens) if self.issue is not None else False

        totals = self.bounce_figures["totals"]
        report: Report = {
            "format": FORMAT_VERSION,
            "issue": slug,
            "subject": self.issue.subject if self.issue is not None else "",
            "tracking": self.tracking,
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "include_scanners": self.include,
            "min_count": self.min_count,
            "sent": self.sent,
            "delivered": self.delivered,
            "bounces": {"bounced_hard": totals["bounced_hard"],
                        "bounced_soft": totals["bounced_soft"],
                        "complaints": totals["complaints"],
                        "unsubscribes": totals["unsubscribes"]},
            "kpi": {"viewers": views, "downloads": download_total, "clicks": click_total},
            "clicks": {
                "total": click_total,
                "unique": unique,
                "scanners": sum(n for (k, _), n in scanners.items() if k == "click"),
                "click_through_rate": _rate(unique, self.delivered),
            },
            "downloads": {
                "total": download_total,
                "unique": unique_dl,
                "scanners": sum(scanners.get(("click", d), 0) for d in self.downloads),
            },
            "views": {"total": views, "scanners": scanners.get(("view", ""), 0)},
            "opens": ({"total": counted.get(("open", ""), 0), "unique": unique_opens,
                       "scanners": scanners.get(("open", ""), 0)} if opens_on else None),
            "scanner_reasons": dict(sorted(reasons.items())),
            "classifier": self._classifier(),
            "links": self._links(counted, scanners, unique_links),
            "lists": self._lists(people),
            "organisations": self._organisations(people),
            "days": days,
            "lists_to_tidy": self.bounce_figures["tidy"],
            "feedback": self._feedback(counted, scanners),
        }
        return _hide_small(report, self.min_count)

    def _feedback(self, counted: _Pairs, scanners: _Pairs) -> FeedbackFigures | None:
        """Answers to the feedback question (people's; scanners apart) and readers' comments;
        None when the issue asked nothing and nobody answered."""
        from newsletter.feedback import comments, wording

        asked = wording(self.issue.feedback) if self.issue is not None else None
        answers = {a: counted.get(("feedback", a), 0) for a in ("yes", "no")}
        scanned = scanners.get(("feedback", "yes"), 0) + scanners.get(("feedback", "no"), 0)
        said = comments(self.conn, self.slug)
        if asked is None and not any(answers.values()) and not scanned and not said:
            return None
        return {"question": asked.question if asked else "",
                "yes_text": asked.yes if asked else "Yes",
                "no_text": asked.no if asked else "No",
                "yes": answers["yes"], "no": answers["no"], "scanners": scanned,
                "comments": cast(list[CommentRow], said)}

    def _counts(self, conn: sa.Connection) -> tuple[_Pairs, _Pairs, dict[str, int]]:
        """Events per (kind, link): counted ones and probable scanners; scanner reasons."""
        counted: dict[tuple[str, str], int] = {}
        scanners: dict[tuple[str, str], int] = {}
        for kind, scanner, link_id, n in conn.execute(
                sa.select(E.c.kind, E.c.scanner, E.c.link_id, sa.func.count())
                .where(E.c.issue == self.slug).group_by(E.c.kind, E.c.scanner, E.c.link_id)):
            if scanner:
                scanners[(kind, link_id)] = scanners.get((kind, link_id), 0) + n
            if not scanner or self.include:
                counted[(kind, link_id)] = counted.get((kind, link_id), 0) + n
        reasons: dict[str, int] = {}
        for text, n in conn.execute(
                sa.select(E.c.reasons, sa.func.count())
                .where(E.c.issue == self.slug, E.c.scanner == sa.true())
                .group_by(E.c.reasons)):
            for reason in (text or "unknown").split(","):
                reasons[reason] = reasons.get(reason, 0) + n
        return counted, scanners, reasons

    def _uniques(self, conn: sa.Connection) -> tuple[dict[str, int], int | None]:
        """Distinct recipients per link, and distinct openers (individual tracking only)."""
        if not self.individual:
            return {}, None
        return (self._unique_per_link(conn, "click"),
                self._unique_per_link(conn, "open").get("", 0))

    def _unique_per_link(self, conn: sa.Connection, kind: str) -> dict[str, int]:
        pairs = (sa.select(E.c.link_id, E.c.pseudonym).distinct()
                 .where(E.c.issue == self.slug, E.c.kind == kind, E.c.pseudonym != "",
                        E.c.scanner.in_(self._scanner_values()))
                 .subquery())
        return dict(conn.execute(
            sa.select(pairs.c.link_id, sa.func.count()).group_by(pairs.c.link_id)).all())

    def _links(self, counted: _Pairs, scanners: _Pairs,
               unique: dict[str, int]) -> list[LinkRow]:
        out: list[LinkRow] = []
        registered = {r.link_id for r in self.links}
        rows: list[Any] = list(self.links)
        # Clicks on a link id the registry does not list cannot come from the tracker (it answers
        # 404), but events imported from elsewhere might: show them rather than lose them.
        for kind, link_id in sorted(set(counted) | set(scanners)):
            if kind == "click" and link_id not in registered:
                registered.add(link_id)
                rows.append(_Missing(link_id))
        for row in rows:
            out.append({
                "link_id": row.link_id, "kind": row.kind, "text": row.text,
                "section": row.section, "url": row.url,
                "clicks": counted.get(("click", row.link_id), 0),
                "unique": unique.get(row.link_id, 0) if self.individual else None,
                "scanners": scanners.get(("click", row.link_id), 0),
            })
        return out

    def _people(self, conn: sa.Connection) -> dict[str, tuple[int, int]]:
        """(clicks, downloads) per recipient pseudonym with at least one click."""
        if not self.individual:
            return {}
        downloads = sa.func.sum(sa.case((E.c.link_id.in_(self.downloads), 1), else_=0))
        people: dict[str, tuple[int, int]] = {}
        for scanner in self._scanner_values():
            for p, n, dl in conn.execute(
                    sa.select(E.c.pseudonym, sa.func.count(), downloads)
                    .where(E.c.issue == self.slug, E.c.kind == "click",
                           E.c.scanner == scanner, E.c.pseudonym != "")
                    .group_by(E.c.pseudonym)):
                before = people.get(p, (0, 0))
                people[p] = (before[0] + n, before[1] + int(dl or 0))
        return people

    def _recipients(self) -> list[sa.Row[Any]]:
        if self._recipient_rows is None:
            self._recipient_rows = self._load_recipients()
        return self._recipient_rows

    def _load_recipients(self) -> list[sa.Row[Any]]:
        r, d, dl = db.recipients, db.deliveries, db.delivery_lists
        return list(self.conn.execute(
            sa.select(d.c.pseudonym, r.c.domain, r.c.organisation, d.c.status, dl.c.list_key)
            .join(d, d.c.recipient_id == r.c.id)
            .outerjoin(dl, sa.and_(dl.c.issue == d.c.issue, dl.c.recipient_id == d.c.recipient_id))
            .where(d.c.issue == self.slug)))

    def _lists(self, people: dict[str, tuple[int, int]]) -> list[ListRow]:
        delivered: dict[str, set[str]] = {}
        members: dict[str, set[str]] = {}
        for row in self._recipients():
            key = row.list_key or ""
            members.setdefault(key, set()).add(row.pseudonym)
            if row.status == Status.SENT:
                delivered.setdefault(key, set()).add(row.pseudonym)
        clicks: dict[str, int] = {}
        unique: dict[str, int | None] = {}
        if self.individual:
            per_person = {p: n for p, (n, _dl) in people.items()}
            for key, names in members.items():
                clicked = [per_person[p] for p in names if p in per_person]
                clicks[key], unique[key] = sum(clicked), len(clicked)
        else:
            for key, n in self.conn.execute(
                    sa.select(E.c.list_key, sa.func.count())
                    .where(E.c.issue == self.slug, E.c.kind == "click",
                           E.c.scanner.in_(self._scanner_values()))
                    .group_by(E.c.list_key)):
                clicks[key or ""] = n
                members.setdefault(key or "", set())
        out: list[ListRow] = []
        bounced = self.bounce_figures["lists"]
        for key in sorted(members):
            if not key and not clicks.get(key) and not delivered.get(key):
                continue
            sent = len(delivered.get(key, ()))
            figures = bounced.get(key, {"sent": sent, "bounced_hard": 0, "bounced_soft": 0,
                                        "complaints": 0, "unsubscribes": 0, "delivered": sent})
            u = unique.get(key) if self.individual else None
            out.append({"list": key or "(no list)", "sent": figures["sent"],
                        "bounced_hard": figures["bounced_hard"],
                        "bounced_soft": figures["bounced_soft"],
                        "complaints": figures["complaints"],
                        "unsubscribes": figures["unsubscribes"],
                        "delivered": figures["delivered"],
                        "clicks": clicks.get(key, 0), "unique": u,
                        "click_through_rate": _rate(u, figures["delivered"])})
        return out

    def _organisations(self, people: dict[str, tuple[int, int]]) -> list[OrganisationRow]:
        if not self.individual:
            return []
        orgs: dict[str, OrganisationRow] = {}
        per_person = {p: n for p, (n, _dl) in people.items()}
        seen: set[str] = set()
        for row in self._recipients():
            if row.pseudonym in seen:
                continue  # one row per list membership: count each recipient once
            seen.add(row.pseudonym)
            domain = row.domain or "(unknown)"
            org = orgs.setdefault(domain, {"domain": domain, "organisation": row.organisation,
                                           "delivered": 0, "clicks": 0, "unique": 0,
                                           "click_through_rate": None})
            org["organisation"] = org["organisation"] or row.organisation
            if row.status == Status.SENT:
                org["delivered"] += 1
            if row.pseudonym in per_person:
                org["clicks"] = (org["clicks"] or 0) + per_person[row.pseudonym]
                org["unique"] = (org["unique"] or 0) + 1
        out: list[OrganisationRow] = []
        for domain in sorted(orgs):
            org = orgs[domain]
            org["click_through_rate"] = _rate(org["unique"], org["delivered"])
            out.append(org)
        return out

    def _days(self, conn: sa.Connection) -> list[DayRow]:
        """Clicks, downloads, views and probable scanners per UTC day."""
        counts = self._day_counts_sqlite(conn) if self.database.is_sqlite \
            else self._day_counts_grouped(conn)
        days: dict[int, dict[str, Any]] = {}
        for number, kind, flag, n, dl in counts:
            if not n:
                continue
            entry = days.setdefault(number, {
                "day": (dt.date(1970, 1, 1) + dt.timedelta(days=number)).isoformat(),
                "clicks": 0, "downloads": 0, "views": 0, "scanners": 0})
            if flag and kind == "click":
                entry["scanners"] += n
            if not flag or self.include:
                if kind == "click":
                    entry["clicks"] += n
                    entry["downloads"] += int(dl or 0)
                else:
                    entry["views"] += n
        return [cast(DayRow, days[k]) for k in sorted(days)]

    def _day_counts_sqlite(self, conn: sa.Connection) -> list[tuple[Any, ...]]:
        """One index range count per day, kind and scanner flag.

        SQLite would sort every event for a GROUP BY on a day computed from ``at``; counting each
        day's range of ``ix_events_days`` reads the index once, in order.
        """
        # ORDER BY ... LIMIT 1 (not min/max) reads one end of ix_events_issue_at.
        first, last = [conn.execute(sa.select(E.c.at).where(E.c.issue == self.slug)
                                    .order_by(order).limit(1)).scalar()
                       for order in (E.c.at.asc(), E.c.at.desc())]
        if first is None or last is None:
            return []
        query = (sa.select(sa.func.count(),
                           sa.func.sum(sa.case((E.c.link_id.in_(self.downloads), 1), else_=0)))
                 .where(E.c.issue == self.slug, E.c.kind == sa.bindparam("kind"),
                        E.c.scanner == sa.bindparam("scanner"),
                        E.c.at >= sa.bindparam("lo"), E.c.at < sa.bindparam("hi")))
        out = []
        for number in range(int(first // 86400), int(last // 86400) + 1):
            bounds = {"lo": number * 86400.0, "hi": (number + 1) * 86400.0}
            for kind in ("click", "view"):
                for flag in (False, True):
                    n, dl = conn.execute(query, {**bounds, "kind": kind, "scanner": flag}).one()
                    out.append((number, kind, flag, n, dl))
        return out

    def _day_counts_grouped(self, conn: sa.Connection) -> list[tuple[Any, ...]]:
        """PostgreSQL: one hashed GROUP BY (parallel) beats a hundred small range scans."""
        day = sa.cast(sa.func.floor(E.c.at / 86400), sa.Integer).label("day")
        downloads = sa.func.sum(sa.case((E.c.link_id.in_(self.downloads), 1), else_=0))
        return [tuple(row) for row in conn.execute(
            sa.select(day, E.c.kind, E.c.scanner, sa.func.count(), downloads)
            .where(E.c.issue == self.slug, E.c.kind.in_(("click", "view")))
            .group_by(day, E.c.kind, E.c.scanner))]


class _Missing:
    """A link id seen in events but not in the registry."""

    def __init__(self, link_id: str) -> None:
        self.link_id, self.kind, self.text, self.section, self.url = link_id, "", "", "", ""


def _rate(unique: int | None, delivered: int) -> float | None:
    if unique is None or not delivered:
        return None
    return round(unique / delivered, 4)


def _hide_small(report: Report, threshold: int) -> Report:
    """Replace counts from 1 to threshold-1 with None: small numbers can identify people."""
    if threshold <= 1:
        return report

    def hide(part: object) -> None:
        # Every part is a dict of the contract; counts are found by their key names.
        obj = cast(dict[str, Any], part)
        for key, value in list(obj.items()):
            if key in COUNT_KEYS and isinstance(value, int) and 0 < value < threshold:
                obj[key] = None
                if key == "unique" and "click_through_rate" in obj:
                    obj["click_through_rate"] = None

    for figures in (report["kpi"], report["clicks"], report["downloads"], report["views"],
                    report["opens"], report["feedback"]):
        if figures is not None:
            hide(figures)
    rows: list[Sequence[Row]] = [report["links"], report["lists"], report["organisations"],
                                 report["days"]]
    for part in rows:
        for row in part:
            hide(row)
    report["scanner_reasons"] = {
        k: (None if v is not None and 0 < v < threshold else v)
        for k, v in report["scanner_reasons"].items()}
    return report
