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
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from newsletter import db, reach
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
    Reach,
    Report,
    Row,
)
from newsletter.status import Status
from newsletter.tracking import rollup


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

    def build(self) -> Report:
        slug = self.slug
        # Every figure comes from the counts kept as events are written (tracking.rollup):
        # a few hundred rows per issue, however many events.
        self.counts = rollup.counts_of(self.conn, slug)
        counted, scanners, reasons = self._counts()
        unique_links, unique_opens = self._uniques(self.conn)
        people = self._people(self.conn)
        days = self._days()
        click_total = sum(n for (k, _), n in counted.items() if k == "click")
        download_total = sum(counted.get(("click", d), 0) for d in self.downloads)
        unique = len(people) if self.individual else None
        unique_dl = sum(1 for _, dl in people.values() if dl) if self.individual else None
        views = counted.get(("view", ""), 0)
        opens_on = bool(self.issue.opens) if self.issue is not None else False

        totals = self.bounce_figures["totals"]
        outlets = reach.outlet_rows(self.conn, self.counts, set(self.downloads), self.include)
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
            "outlets": outlets,
            "reach": cast(Reach, reach.email_and_reshared(outlets)),
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

    def _counts(self) -> tuple[_Pairs, _Pairs, dict[str, int]]:
        """Events per (kind, link): counted ones and probable scanners; scanner reasons."""
        counted: dict[tuple[str, str], int] = {}
        scanners: dict[tuple[str, str], int] = {}
        for c in self.counts:
            key = (c.kind, c.link_id)
            if c.scanner:
                scanners[key] = scanners.get(key, 0) + c.n
            if not c.scanner or self.include:
                counted[key] = counted.get(key, 0) + c.n
        return counted, scanners, rollup.reasons_of(self.conn, self.slug)

    def _uniques(self, conn: sa.Connection) -> tuple[dict[str, int], int | None]:
        """Distinct recipients per link, and distinct openers (individual tracking only)."""
        if not self.individual:
            return {}, None
        values = self._scanner_values()
        return (rollup.unique_per_link(conn, self.slug, "click", values),
                rollup.unique_per_link(conn, self.slug, "open", values).get("", 0))

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
        return rollup.clicks_per_person(conn, self.slug, self.downloads,
                                        self._scanner_values())

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
            # the list named in the email's tokens; a reshared copy's clicks have none
            for c in self.counts:
                if c.kind == "click" and c.list_key and c.scanner in self._scanner_values():
                    clicks[c.list_key] = clicks.get(c.list_key, 0) + c.n
                    members.setdefault(c.list_key, set())
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

    def _days(self) -> list[DayRow]:
        """Clicks, downloads, views and probable scanners per UTC day."""
        days: dict[int, dict[str, Any]] = {}
        downloads = set(self.downloads)
        for c in rollup.days_of(self.conn, self.slug):
            entry = days.setdefault(c.day, {
                "day": (dt.date(1970, 1, 1) + dt.timedelta(days=c.day)).isoformat(),
                "clicks": 0, "downloads": 0, "views": 0, "scanners": 0})
            if c.scanner and c.kind == "click":
                entry["scanners"] += c.n
            if not c.scanner or self.include:
                if c.kind == "click":
                    entry["clicks"] += c.n
                    entry["downloads"] += c.n if c.link_id in downloads else 0
                else:
                    entry["views"] += c.n
        return [cast(DayRow, days[k]) for k in sorted(days)]


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
    for outlet in report["outlets"]:
        hide(outlet)
        hide(outlet["feedback"])
    for part_ in (report["reach"]["email"], report["reach"]["reshared"]):
        hide(part_)
        hide(part_["feedback"])
    report["scanner_reasons"] = {
        k: (None if v is not None and 0 < v < threshold else v)
        for k, v in report["scanner_reasons"].items()}
    return report
