"""``newsletter report ISSUE``: clicks, views and downloads of a sent issue."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from newsletter.cli import load_project
from newsletter.cli.options import db_option


@click.command("report")
@click.argument("issue", metavar="ISSUE", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every issue side by side, with totals per strategy year, instead of one.")
@click.option("--from", "since", metavar="DATE", default=None,
              help="With --all: issues first sent on or after this day (YYYY-MM-DD, UTC).")
@click.option("--to", "until", metavar="DATE", default=None,
              help="With --all: issues first sent on or before this day (YYYY-MM-DD, UTC).")
@click.option("--by", "by", type=click.Choice(["link", "list", "organisation", "day", "outlet",
                                               "tidy", "feedback"]),
              default=None,
              help="Which breakdown to show (default: link); tidy: the bounced and "
              "complained addresses per list, to fix the lists; outlet: views, downloads, "
              "clicks and answers per outlet (the email and where partners reshare it); "
              "feedback: readers' comments.")
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
def report(issue: str | None, every: bool, since: str | None, until: str | None,
           by: str | None, fmt: str, include_scanners: bool, min_count: int,
           db: str | None, include_addresses: bool, output: Path | None) -> None:
    """Report clicks, views and downloads of a sent ISSUE (a slug or issues/<slug>.yaml), or
    of every issue with --all.

    Probable security scanners are counted apart and left out of the headline figures.

    Example:

        newsletter report 2026-spring --by list

        newsletter report issues/2026-spring.yaml --format html -o report.html

        newsletter report 2026-spring --by tidy --format csv -o to-tidy.csv

        newsletter report --all --from 2026-04-01 --format csv -o every-issue.csv
    """
    from newsletter import report as reporting
    from newsletter.db import open_db

    _check_choice(issue, every, since, until, by, include_addresses)
    if every:
        _report_all(since, until, fmt, include_scanners, min_count, db, output)
        return
    assert issue is not None
    by = by or "link"
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


def _check_choice(issue: str | None, every: bool, since: str | None, until: str | None,
                  by: str | None, include_addresses: bool) -> None:
    """One issue or --all, with only the options that apply to it."""
    from newsletter.errors import NewsletterError

    if every and issue:
        raise NewsletterError(f"both an issue ({issue}) and --all were given",
                              hint="give an ISSUE for its report, or --all for every issue")
    if not every and not issue:
        raise NewsletterError("no issue given",
                              hint="give an ISSUE (a slug or issues/<slug>.yaml), or --all "
                              "for every issue, e.g. newsletter report 2026-spring")
    if not every and (since or until):
        option = "--from" if since else "--to"
        raise NewsletterError(f"{option} chooses issues for --all, not for one issue",
                              hint=f"add --all (newsletter report --all {option} ...) or "
                              f"leave {option} out")
    if every and (by or include_addresses):
        option = f"--by {by}" if by else "--include-addresses"
        raise NewsletterError(f"{option} is for one issue's report, not --all",
                              hint="--all shows one row per issue and the totals per year; "
                              f"for the breakdown give an ISSUE: newsletter report ISSUE {option}")


def _report_all(since: str | None, until: str | None, fmt: str, include_scanners: bool,
                min_count: int, db: str | None, output: Path | None) -> None:
    from newsletter import reach
    from newsletter import report as reporting
    from newsletter.db import open_db

    first = reach.parse_date(since, "--from") if since else None
    last = reach.parse_date(until, "--to") if until else None
    project = load_project()
    url = project.db_url(db, can_create=False)
    reporting.require_database(url)
    database = open_db(url, writable=False, patience=project.settings.db_wait)
    try:
        data = reach.across(database, since=first, until=last,
                            strategy_start=project.settings.strategy_start,
                            include_scanners=include_scanners, min_count=min_count)
    finally:
        database.close()
    text = reach.render_across(data, fmt)
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
