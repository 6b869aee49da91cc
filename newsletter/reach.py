"""Reach beyond the inbox: an issue's views, downloads, clicks and feedback per outlet, and
every issue side by side for the strategy's annual review (``report --all``).

Both read the counts kept as events are written (:mod:`newsletter.tracking.rollup`), never the
events themselves, so they stay fast over millions of events. The direct email audience is
one outlet among the others (``email``); everything else (partners' outlets, ``direct``,
``unknown``) is *reshared*.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from newsletter import db, outlets
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.model import FEEDBACK_ANSWERS
from newsletter.tracking import rollup

if TYPE_CHECKING:
    from newsletter.report.contract import (
        AcrossReport,
        IssueLine,
        OutletRow,
        ReachFigures,
        YearLine,
    )


def _blank(outlet: outlets.Outlet) -> OutletRow:
    return {"id": outlet.id, "name": outlet.name, "kind": outlet.kind, "views": 0,
            "downloads": 0, "clicks": 0, "feedback": {"yes": 0, "no": 0}, "scanners": 0}


def _order(known: dict[str, outlets.Outlet]) -> list[outlets.Outlet]:
    """The email first, then the project's outlets by kind and name, then direct and unknown."""
    listed = sorted((o for o in known.values() if not o.built_in),
                    key=lambda o: (outlets.KINDS.index(o.kind) if o.kind in outlets.KINDS
                                   else len(outlets.KINDS), o.name.casefold(), o.id))
    return [known[outlets.EMAIL], *listed, known[outlets.DIRECT], known[outlets.UNKNOWN]]


def outlet_rows(conn: sa.Connection, counts: Iterable[rollup.Count], downloads: set[str],
                include_scanners: bool) -> list[OutletRow]:
    """Views, downloads, clicks, feedback answers and probable scanners per outlet (every
    outlet the database knows, counted or not; an outlet seen only in events is added by its
    id)."""
    known = outlets.registered(conn)
    rows = {o.id: _blank(o) for o in _order(known)}
    for count in counts:
        row = rows.get(count.outlet)
        if row is None:
            row = rows[count.outlet] = _blank(outlets.Outlet(count.outlet, count.outlet,
                                                             "unknown"))
        if count.scanner:
            row["scanners"] = (row["scanners"] or 0) + count.n
            if not include_scanners:
                continue
        _add(row, count, downloads)
    # built-in direct and unknown last, whatever was added
    ordered = [r for k, r in rows.items() if k not in (outlets.DIRECT, outlets.UNKNOWN)]
    return [*ordered, rows[outlets.DIRECT], rows[outlets.UNKNOWN]]


def _add(row: OutletRow | ReachFigures, count: rollup.Count, downloads: set[str]) -> None:
    if count.kind == "view":
        row["views"] = (row["views"] or 0) + count.n
    elif count.kind == "click":
        row["clicks"] = (row["clicks"] or 0) + count.n
        if count.link_id in downloads:
            row["downloads"] = (row["downloads"] or 0) + count.n
    elif count.kind == "feedback" and count.link_id in FEEDBACK_ANSWERS:
        answers = row["feedback"]
        if count.link_id == "yes":
            answers["yes"] = (answers["yes"] or 0) + count.n
        else:
            answers["no"] = (answers["no"] or 0) + count.n


def email_and_reshared(rows: list[OutletRow]) -> dict[str, ReachFigures]:
    """The email outlet's figures, and every other outlet's added up."""
    out: dict[str, ReachFigures] = {}
    for part in ("email", "reshared"):
        chosen = [r for r in rows if (r["id"] == outlets.EMAIL) == (part == "email")]
        out[part] = {
            "views": sum(r["views"] or 0 for r in chosen),
            "downloads": sum(r["downloads"] or 0 for r in chosen),
            "clicks": sum(r["clicks"] or 0 for r in chosen),
            "feedback": {"yes": sum(r["feedback"]["yes"] or 0 for r in chosen),
                         "no": sum(r["feedback"]["no"] or 0 for r in chosen)}}
    return out


# --- across issues ------------------------------------------------------------------------


def parse_date(text: str, option: str) -> dt.date:
    """``--from``/``--to`` as a date, or a located refusal."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise NewsletterError(f"{option} {text!r} is not a date",
                              hint=f"give it as YYYY-MM-DD, e.g. {option} 2026-04-01") from None


def strategy_year(day: dt.date, start: dt.date | None) -> str:
    """The strategy year ``day`` falls in: from ``start`` (its anniversaries begin each year,
    named by the first and last day), else the calendar year."""
    if start is None:
        return str(day.year)
    year = day.year - (1 if (day.month, day.day) < (start.month, start.day) else 0)
    first = _anniversary(start, year)
    last = _anniversary(start, year + 1) - dt.timedelta(days=1)
    return f"{first.isoformat()} to {last.isoformat()}"


def _anniversary(start: dt.date, year: int) -> dt.date:
    try:
        return start.replace(year=year)
    except ValueError:   # 29 February in a year without one
        return start.replace(year=year, day=28)


def across(database: Database, *, since: dt.date | None = None, until: dt.date | None = None,
           strategy_start: dt.date | None = None, include_scanners: bool = False,
           min_count: int = 0) -> AcrossReport:
    """One line per sent issue (by its first send, from ``since`` to ``until`` inclusive), and
    totals per strategy year; counts from 1 to ``min_count`` - 1 hidden (None)."""
    from newsletter.report.contract import FORMAT_VERSION

    if since and until and since > until:
        raise NewsletterError(f"--from {since} is after --to {until}",
                              hint="give the earlier date to --from")
    scanner = (False, True) if include_scanners else (False,)
    with database.engine.connect() as conn:
        lines = _issue_lines(conn, since, until, scanner)
    years = _years(lines, strategy_start)
    for line in [*lines, *years]:
        _hide_small(cast(dict[str, Any], line), min_count)
    return {"format": FORMAT_VERSION,
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "include_scanners": include_scanners, "min_count": min_count,
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "strategy_start": strategy_start.isoformat() if strategy_start else None,
            "issues": lines, "years": years}


# What people do, which small numbers could tell about one of them; delivered, sent, bounces
# and unsubscribes are shown as in each issue's report.
_HIDDEN = ("views", "downloads", "clicks", "unique_clickers", "yes", "no")


def _hide_small(part: dict[str, Any], threshold: int) -> None:
    if threshold <= 1:
        return
    for key in _HIDDEN:
        value = part.get(key)
        if isinstance(value, int) and 0 < value < threshold:
            part[key] = None
    if "feedback" in part:
        _hide_small(part["feedback"], threshold)


def _issue_lines(conn: sa.Connection, since: dt.date | None, until: dt.date | None,
                 scanner: tuple[bool, ...]) -> list[IssueLine]:
    """Every sent issue's line, in the order they were first sent: a few grouped queries over
    the kept counts for all of them at once, and each issue's bounce figures."""
    from newsletter.bounces.figures import figures
    from newsletter.status import Status

    d, c, p, i = db.deliveries, db.event_counts, db.event_people, db.issues
    sent = {row.issue: (row.first, row.n) for row in conn.execute(
        sa.select(d.c.issue, sa.func.min(d.c.sent_at).label("first"), sa.func.count().label("n"))
        .where(d.c.status == Status.SENT, d.c.sent_at.is_not(None)).group_by(d.c.issue))}
    about = {row.slug: row for row in conn.execute(sa.select(i.c.slug, i.c.subject,
                                                             i.c.tracking))}
    downloads = {(row.issue, row.link_id) for row in conn.execute(
        sa.select(db.links.c.issue, db.links.c.link_id).where(db.links.c.kind == "download"))}
    figures_of: dict[str, dict[str, int]] = {}
    for slug, kind, link, n in conn.execute(
            sa.select(c.c.issue, c.c.kind, c.c.link_id, sa.func.sum(c.c.n))
            .where(c.c.scanner.in_(scanner)).group_by(c.c.issue, c.c.kind, c.c.link_id)):
        counted = figures_of.setdefault(slug, dict.fromkeys(
            ("views", "clicks", "downloads", "yes", "no"), 0))
        n = int(n or 0)
        if kind == "view":
            counted["views"] += n
        elif kind == "click":
            counted["clicks"] += n
            counted["downloads"] += n if (slug, link) in downloads else 0
        elif kind == "feedback" and link in FEEDBACK_ANSWERS:
            counted[link] += n
    unique = {slug: int(n) for slug, n in conn.execute(
        sa.select(p.c.issue, sa.func.count(sa.distinct(p.c.pseudonym)))
        .where(p.c.kind == "click", p.c.scanner.in_(scanner), p.c.n > 0).group_by(p.c.issue))}
    lines: list[IssueLine] = []
    for slug, (first, count) in sorted(sent.items(), key=lambda kv: (kv[1][0], kv[0])):
        day = dt.datetime.fromtimestamp(first, dt.UTC).date()
        if (since and day < since) or (until and day > until):
            continue
        row = about.get(slug)
        tracking = row.tracking if row is not None else "aggregate"
        counted = figures_of.get(slug, dict.fromkeys(("views", "clicks", "downloads", "yes",
                                                      "no"), 0))
        totals = figures(conn, slug)["totals"]
        lines.append({
            "issue": slug, "subject": row.subject if row is not None else "",
            "date": day.isoformat(), "tracking": tracking, "sent": count,
            "delivered": totals["delivered"], "views": counted["views"],
            "downloads": counted["downloads"], "clicks": counted["clicks"],
            "unique_clickers": unique.get(slug, 0) if tracking == "individual" else None,
            "feedback": {"yes": counted["yes"], "no": counted["no"]},
            "unsubscribes": totals["unsubscribes"],
            "bounces": totals["bounced_hard"] + totals["bounced_soft"]})
    return lines


def _years(lines: list[IssueLine], start: dt.date | None) -> list[YearLine]:
    years: dict[str, YearLine] = {}
    for line in lines:
        name = strategy_year(dt.date.fromisoformat(line["date"]), start)
        year = years.setdefault(name, {
            "year": name, "issues": 0, "sent": 0, "delivered": 0, "views": 0, "downloads": 0,
            "clicks": 0, "feedback": {"yes": 0, "no": 0}, "unsubscribes": 0, "bounces": 0})
        year["issues"] += 1
        # Counts are hidden (None) only after the years are added up: `or 0` is for mypy.
        year["sent"] += line["sent"]
        year["delivered"] += line["delivered"]
        year["views"] = (year["views"] or 0) + (line["views"] or 0)
        year["downloads"] = (year["downloads"] or 0) + (line["downloads"] or 0)
        year["clicks"] = (year["clicks"] or 0) + (line["clicks"] or 0)
        year["unsubscribes"] += line["unsubscribes"]
        year["bounces"] += line["bounces"]
        for answer in ("yes", "no"):
            year["feedback"][answer] = ((year["feedback"][answer] or 0)
                                        + (line["feedback"][answer] or 0))
    return list(years.values())


# --- output of report --all ---------------------------------------------------------------

ISSUE_COLUMNS = [("issue", "Issue"), ("date", "Sent (UTC)"), ("delivered", "Delivered"),
                 ("views", "Views"), ("downloads", "Downloads"), ("clicks", "Clicks"),
                 ("unique_clickers", "Unique clickers"), ("feedback_yes", "Yes"),
                 ("feedback_no", "No"), ("unsubscribes", "Unsubscribes"),
                 ("bounces", "Bounces"), ("subject", "Subject")]
YEAR_COLUMNS = [("year", "Year"), ("issues", "Issues"), ("delivered", "Delivered"),
                ("views", "Views"), ("downloads", "Downloads"), ("clicks", "Clicks"),
                ("feedback_yes", "Yes"), ("feedback_no", "No"),
                ("unsubscribes", "Unsubscribes"), ("bounces", "Bounces")]


def _flat(row: IssueLine | YearLine) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in row.items() if k != "feedback"}
    out["feedback_yes"], out["feedback_no"] = row["feedback"]["yes"], row["feedback"]["no"]
    return out


_SMALL = {"views", "downloads", "clicks", "unique_clickers", "feedback_yes", "feedback_no"}


def _cells(row: dict[str, Any], columns: list[tuple[str, str]], threshold: int) -> list[str]:
    """A row's cells: a count hidden by --min-count as "<N", one that does not exist as "-"."""
    return [str(row[k]) if row.get(k) is not None else
            f"<{threshold}" if k in _SMALL and threshold > 1 and
            not (k == "unique_clickers" and row.get("tracking") != "individual") else "-"
            for k, _ in columns]


def _summary(data: AcrossReport) -> str:
    period = (f"from {data['from'] or 'the first issue'} to {data['to'] or 'today'}"
              if data["from"] or data["to"] else "every issue sent")
    years = (f"strategy years from {data['strategy_start']}" if data["strategy_start"]
             else "calendar years (set strategy_start in newsletter.yaml for strategy years)")
    return f"{len(data['issues'])} issue(s), {period}; totals per {years}"


def render_across(data: AcrossReport, fmt: str) -> str:
    """``report --all`` as a table, CSV (one row per issue, then one per year, told apart by
    the ``row`` column), JSON or an HTML page with the trend chart."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    issues = [_flat(line) for line in data["issues"]]
    years = [_flat(line) for line in data["years"]]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        keys = list(dict.fromkeys(k for k, _ in [*ISSUE_COLUMNS, *YEAR_COLUMNS]))
        writer.writerow(["row", *keys])
        for kind, rows in (("issue", issues), ("year", years)):
            for row in rows:
                writer.writerow([kind, *("" if row.get(k) is None else row.get(k)
                                         for k in keys)])
        return out.getvalue()
    if fmt == "html":
        return _across_html(data, issues, years)
    lines = [f"Every issue: {_summary(data)}", ""]
    for title, columns, rows in (("By issue:", ISSUE_COLUMNS, issues),
                                 ("By year:", YEAR_COLUMNS, years)):
        body = [_cells(r, columns, data["min_count"]) for r in rows]
        head = [t for _, t in columns]
        widths = [min(48, max(len(head[i]), *(len(r[i]) for r in body)) if body
                      else len(head[i])) for i in range(len(head))]
        lines += [title, _line(head, widths), _line(["-" * w for w in widths], widths)]
        lines += [_line(r, widths) for r in body] or ["(no issue sent in this period)"]
        lines.append("")
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _across_html(data: AcrossReport, issues: list[dict[str, Any]],
                 years: list[dict[str, Any]]) -> str:
    from pathlib import Path

    import jinja2

    folder = Path(__file__).parent / "report_templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    charts = {"issues": [f"{r['issue']} ({r['date']})" for r in issues],
              **{key: [r[key] for r in issues]
                 for key in ("delivered", "views", "downloads", "clicks")}}
    tables = [{"name": "by-issue", "title": "By issue", "head": [t for _, t in ISSUE_COLUMNS],
               "rows": [_cells(r, ISSUE_COLUMNS, data["min_count"]) for r in issues]},
              {"name": "by-year", "title": "By year", "head": [t for _, t in YEAR_COLUMNS],
               "rows": [_cells(r, YEAR_COLUMNS, data["min_count"]) for r in years]}]
    return env.get_template("across.html.j2").render(
        report=data, summary=_summary(data), tables=tables, charts=charts,
        chart_js=(folder / "chart.umd.min.js").read_text(encoding="utf-8"))
