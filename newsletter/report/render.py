"""The report as text: a table to read, CSV for spreadsheets, JSON for dashboards, or a
self-contained HTML page with charts (Chart.js, embedded)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from newsletter.report.contract import COUNT_KEYS, Count, LinkRow, Report, Row, TidyRow

BY = ("link", "list", "organisation", "day", "outlet", "tidy", "feedback")
FORMATS = ("table", "csv", "json", "html")
TEMPLATES = Path(__file__).resolve().parent.parent / "report_templates"

_COLUMNS = {
    "link": [("link_id", "Link"), ("kind", "Kind"), ("clicks", "Clicks"), ("unique", "Unique"),
             ("scanners", "Scanners"), ("text", "Text"), ("section", "Section"), ("url", "URL")],
    "list": [("list", "List"), ("sent", "Sent"), ("bounced_hard", "Hard"),
             ("bounced_soft", "Soft"), ("complaints", "Complaints"),
             ("unsubscribes", "Unsubscribes"), ("delivered", "Delivered"), ("clicks", "Clicks"),
             ("unique", "Unique"), ("click_through_rate", "Click-through")],
    "organisation": [("domain", "Domain"), ("organisation", "Organisation"),
                     ("delivered", "Delivered"), ("clicks", "Clicks"), ("unique", "Unique"),
                     ("click_through_rate", "Click-through")],
    "day": [("day", "Day (UTC)"), ("clicks", "Clicks"), ("downloads", "Downloads"),
            ("views", "Views"), ("scanners", "Scanners")],
    "outlet": [("name", "Outlet"), ("kind", "Kind"), ("views", "Views"),
               ("downloads", "Downloads"), ("clicks", "Clicks"), ("feedback_yes", "Yes"),
               ("feedback_no", "No"), ("scanners", "Scanners"), ("id", "Id")],
    "tidy": [("list", "List"), ("address", "Address"), ("organisation", "Organisation"),
             ("reason", "Reason"), ("status", "Status"), ("detail", "Server said")],
    "feedback": [("day", "Day (UTC)"), ("answer", "Answer"), ("outlet", "Outlet"),
                 ("text", "Comment")],
}


def links_by_clicks(report: Report) -> list[LinkRow]:
    """The links, most clicked first."""
    return sorted(report["links"], key=lambda r: (-(r["clicks"] or 0), r["link_id"]))


def rows_for(report: Report, by: str) -> Sequence[Row]:
    """The breakdown ``by`` one of :data:`BY`; links sorted by clicks, most first."""
    if by == "feedback":
        return report["feedback"]["comments"] if report["feedback"] else []
    if by == "link":
        return links_by_clicks(report)
    if by == "list":
        return report["lists"]
    if by == "organisation":
        return report["organisations"]
    if by == "tidy":
        return report["lists_to_tidy"]
    if by == "outlet":
        return [{**{k: v for k, v in row.items() if k != "feedback"},
                 "feedback_yes": row["feedback"]["yes"], "feedback_no": row["feedback"]["no"]}
                for row in report["outlets"]]
    return report["days"]


def render(report: Report, fmt: str = "table", by: str = "link",
           include_addresses: bool = False) -> str:
    """The report as text in one of :data:`FORMATS`.

    The lists to tidy name addresses in the table, CSV and HTML that the person running the
    report reads; JSON, made for dashboards and other programs, leaves them out unless
    ``include_addresses``.
    """
    if fmt == "json":
        if not include_addresses:
            report = {**report, "lists_to_tidy": [_without_address(row)
                                                  for row in report["lists_to_tidy"]]}
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(report, by)
    if fmt == "html":
        return _html(report, by)
    return _table(report, by)


def _without_address(row: TidyRow) -> TidyRow:
    out = row.copy()
    out.pop("address", None)
    return out


def _cell(value: object, key: str, threshold: int) -> str:
    if value is None:
        if key in COUNT_KEYS and threshold > 1:
            return f"<{threshold}"
        return "-"
    if key == "click_through_rate" and isinstance(value, float | int):
        return f"{value * 100:.1f}%"
    return str(value)


def _csv(report: Report, by: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = _COLUMNS[by]
    writer.writerow([key for key, _ in columns])
    for row in rows_for(report, by):
        writer.writerow(["" if row.get(k) is None else
                         _inert(str(row.get(k))) if by == "feedback" and k == "text"
                         else row.get(k) for k, _ in columns])
    return out.getvalue()


def _inert(text: str) -> str:
    """A reader's comment for a spreadsheet: never read as a formula (OWASP, CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def headline(report: Report) -> list[str]:
    """The summary lines shown above every table and on the HTML page."""
    t = report["min_count"]
    clicks, downloads, views, kpi = (report["clicks"], report["downloads"], report["views"],
                                     report["kpi"])

    def c(value: Count, key: str = "total") -> str:
        return _cell(value, key, t)

    b = report["bounces"]
    lines = [
        f"Issue {report['issue']}: {report['subject']} (tracking: {report['tracking']})",
        f"Sent: {report['sent']} · Bounced: {b['bounced_hard']} hard, {b['bounced_soft']} soft"
        f" · Delivered: {report['delivered']} · Complaints: {b['complaints']} · "
        f"Unsubscribes: {b['unsubscribes']}",
        f"Viewers: {c(kpi['viewers'])} · Downloads: {c(kpi['downloads'])} · "
        f"Clicks: {c(kpi['clicks'])}",
    ]
    if report["tracking"] == "individual":
        lines.append(f"Clicks: {c(clicks['total'])} total, {c(clicks['unique'])} unique "
                     f"clickers, click-through "
                     f"{_cell(clicks['click_through_rate'], 'click_through_rate', t)}")
        lines.append(f"Downloads: {c(downloads['total'])} total, "
                     f"{c(downloads['unique'])} unique")
    else:
        lines.append(f"Clicks: {c(clicks['total'])} total (aggregate tracking: no unique "
                     "clickers or organisations)")
    lines.append(f"Views of the web version: {c(views['total'])}")
    lines += _feedback_line(report)
    lines += _reach_line(report)
    if report["opens"] is not None:
        opens = report["opens"]
        lines.append(f"Opens: {c(opens['total'])}" + (
            f" ({c(opens['unique'])} unique)" if report["tracking"] == "individual" else ""))
    scanner_total = (clicks["scanners"] or 0) + (views["scanners"] or 0)
    reasons = ", ".join(f"{k} {_cell(v, 'total', t)}"
                        for k, v in report["scanner_reasons"].items())
    counted = "included above" if report["include_scanners"] else \
        "not counted above; --include-scanners counts them"
    lines.append(f"Probable scanners: {c(clicks['scanners'], 'scanners')} clicks, "
                 f"{c(views['scanners'], 'scanners')} views ({counted})"
                 + (f"; reasons: {reasons}" if scanner_total or reasons else ""))
    rules = report["classifier"]
    older = [str(v) for v in rules["versions"] if v != rules["version"]]
    lines.append(f"People and scanners told apart by rules version {rules['version']}"
                 + (f" (events stored before an upgrade: version {', '.join(older)})"
                    if older else "") + "; how: docs/tracking.md")
    if t > 1:
        lines.append(f"Counts from 1 to {t - 1} are hidden (--min-count {t}).")
    return lines


def _reach_line(report: Report) -> list[str]:
    t = report["min_count"]
    email, reshared = report["reach"]["email"], report["reach"]["reshared"]

    def c(value: Count) -> str:
        return _cell(value, "total", t)

    return [f"Reach: email {c(email['views'])} views, {c(email['downloads'])} downloads, "
            f"{c(email['clicks'])} clicks · reshared {c(reshared['views'])} views, "
            f"{c(reshared['downloads'])} downloads, {c(reshared['clicks'])} clicks "
            "(--by outlet)"]


def _feedback_line(report: Report) -> list[str]:
    answers = report.get("feedback")
    if answers is None:
        return []
    t = report["min_count"]
    return [f"Feedback: {answers['question'] or 'the feedback question'} "
            f"{answers['yes_text']} {_cell(answers['yes'], 'yes', t)} · {answers['no_text']} "
            f"{_cell(answers['no'], 'no', t)} · {len(answers['comments'])} comment(s) "
            "(--by feedback)"
            + (f"; probable scanners' answers, not counted: {answers['scanners']}"
               if answers["scanners"] else "")]


def _table(report: Report, by: str) -> str:
    columns = _COLUMNS[by]
    t = report["min_count"]
    body = [[_cell(row.get(k), k, t) for k, _ in columns] for row in rows_for(report, by)]
    if by == "feedback":   # one line per comment here: --format csv, json or html for it whole
        body = [[" ".join(cell.split()) for cell in row] for row in body]
    head = [title for _, title in columns]
    widths = [max(len(head[i]), *(len(r[i]) for r in body)) if body else len(head[i])
              for i in range(len(head))]
    widths = [min(w, 48) for w in widths]

    def line(cells: list[str]) -> str:
        return "  ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [*headline(report), "", f"By {by}:", line(head),
           line(["-" * w for w in widths])]
    out += [line(r) for r in body] or ["(nothing recorded)"]
    return "\n".join(out + _notes(report, by)) + "\n"


def _notes(report: Report, by: str) -> list[str]:
    """What a breakdown's table says below it."""
    out: list[str] = []
    if by == "list" and report["lists_to_tidy"]:
        out += ["", "Lists to tidy (bounced or complained; fix or remove them in the list's "
                "file, see also `newsletter audiences check`):"]
        out += [f"  {row['list']}  {row['address']}  {row['organisation']}  {row['reason']}"
                + (f" {row['status']}" if row["status"] else "") for row in
                report["lists_to_tidy"]]
    if by == "feedback" and report.get("feedback") is None:
        out.append("This issue did not ask for feedback.")
    if by == "organisation" and report["tracking"] != "individual":
        out.append("Organisations need individual tracking; this issue was sent with "
                   f"{report['tracking']} tracking.")
    return out


def _html(report: Report, by: str) -> str:
    import jinja2

    folder = TEMPLATES
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    chart_js = (folder / "chart.umd.min.js").read_text(encoding="utf-8")
    t = report["min_count"]
    days = report["days"]
    links = links_by_clicks(report)
    charts = {
        "days": [d["day"] for d in days],
        "day_clicks": [d["clicks"] for d in days],
        "day_views": [d["views"] for d in days],
        "day_scanners": [d["scanners"] for d in days],
        "links": [f"{r['text'] or r['url']} ({r['kind']})"[:60] for r in links],
        "link_clicks": [r["clicks"] for r in links],
        "link_scanners": [r["scanners"] for r in links],
        "outlets": [r["name"][:60] for r in report["outlets"]],
        "outlet_views": [r["views"] for r in report["outlets"]],
        "outlet_downloads": [r["downloads"] for r in report["outlets"]],
        "outlet_clicks": [r["clicks"] for r in report["outlets"]],
    }
    tables = []
    for name in ("link", *(b for b in BY if b != "link")):
        columns = _COLUMNS[name]
        tables.append({
            "name": name, "title": {"tidy": "Lists to tidy",
                                    "feedback": "Feedback comments"}.get(name, f"By {name}"),
            "head": [title for _, title in columns],
            "rows": [[_cell(row.get(k), k, t) for k, _ in columns]
                     for row in rows_for(report, name)],
        })
    return env.get_template("report.html.j2").render(
        report=report, headline=headline(report), tables=tables,
        chart_js=chart_js, charts=charts)
