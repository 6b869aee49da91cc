"""``newsletter report ISSUE``: clicks, views and downloads of a sent issue."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from newsletter.cli import load_project
from newsletter.cli.options import db_option


@click.command("report")
@click.argument("issue", metavar="ISSUE")
@click.option("--by", "by", type=click.Choice(["link", "list", "organisation", "day", "tidy",
                                               "feedback"]),
              default="link", show_default=True,
              help="Which breakdown to show; tidy: the bounced and complained addresses per "
              "list, to fix the lists; feedback: readers' comments.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]),
              default="table", show_default=True,
              help="table for reading, csv for spreadsheets, json for dashboards, html for a "
              "page with charts.")
@click.option("--include-scanners", is_flag=True,
              help="Count probable security scanners in the headline figures too.")
@click.option("--min-count", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="Hide counts below N (small numbers can identify people).")
@db_option
@click.option("--include-addresses", is_flag=True,
              help="Put the addresses of the lists to tidy into JSON output too (table, CSV "
              "and HTML always show them: they are read by the person running the report).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def report(issue: str, by: str, fmt: str, include_scanners: bool, min_count: int,
           db: str | None, include_addresses: bool, output: Path | None) -> None:
    """Report clicks, views and downloads of a sent ISSUE (a slug or issues/<slug>.yaml).

    Probable security scanners are counted apart and left out of the headline figures.

    Example:

        newsletter report 2026-spring --by list

        newsletter report issues/2026-spring.yaml --format html -o report.html

        newsletter report 2026-spring --by tidy --format csv -o to-tidy.csv
    """
    from newsletter import report as reporting
    from newsletter.db import open_db

    project = load_project(issue)
    slug = reporting.issue_slug(project, issue)
    url = project.db_url(db, can_create=False)
    reporting.require_database(url)
    database = open_db(url, writable=False, patience=project.settings.db_wait)
    try:
        data = reporting.build(database, slug, include_scanners=include_scanners,
                               min_count=min_count)
    finally:
        database.close()
    text = reporting.render(data, fmt, by, include_addresses=include_addresses)
    if output is None:
        click.echo(text, nl=False)
    else:
        _write(output, text)
        click.echo(f"Wrote {output}", err=True)


def _write(output: Path, text: str) -> None:
    """Write the report whole or not at all: a failed write leaves no half file behind."""
    from newsletter.errors import NewsletterError

    partial = output.with_name(f".{output.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise NewsletterError(f"cannot write {output}: {exc.strerror}",
                              hint="check that the folder exists and can be written, or "
                              "choose another file with -o") from exc


COMMANDS = [report]
