"""The report on a sent issue, one step per module::

    contract.py   the JSON contract (Report and its parts, as TypedDicts)
    source.py     which issue (ISSUE as every command reads it) and which database
    figures.py    build(): every figure, aggregated in SQL
    render.py     render(): a table, CSV, JSON or an HTML page with charts
"""

from newsletter.report.contract import FORMAT_VERSION, Report
from newsletter.report.figures import build
from newsletter.report.render import BY, FORMATS, headline, links_by_clicks, render, rows_for
from newsletter.report.source import issue_slug, require_database

__all__ = ["BY", "FORMATS", "FORMAT_VERSION", "Report", "build", "headline", "issue_slug",
           "links_by_clicks", "render", "require_database", "rows_for"]
