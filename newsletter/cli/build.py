"""Commands for authoring: ``new``, ``check`` and ``build``."""

from __future__ import annotations

import datetime as dt
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.build import BuiltIssue, build_issue, write_build
from newsletter.cli import load_project
from newsletter.cli.options import db_option
from newsletter.errors import InvalidIssue, NewsletterError, Problem, display_path
from newsletter.fixed import check_against_ledger
from newsletter.project import Project
from newsletter.scaffold import scaffold_issue

_Command = TypeVar("_Command", bound=Callable[..., Any])


def issue_argument(function: _Command) -> _Command:
    """The ISSUE argument shared by commands: a path such as issues/2026-spring.yaml."""
    return click.argument("issue", type=click.Path(path_type=Path))(function)


def echo_problems(problems: list[Problem]) -> None:
    """Print located problems, errors and warnings, to stderr."""
    for problem in sorted(problems):
        click.echo(problem.format(), err=True)


def _checked_build(issue: Path, advice: str, db_url: str | None = None,
                   outcome: str | None = "not built") -> tuple[Project, Path, BuiltIssue]:
    """Build ISSUE in memory, printing its warnings; on errors print them all and stop.

    An issue already sent must still be what was sent (newsletter.fixed), unless ``outcome``
    is None (``amend``, which compares it itself)."""
    project = load_project(issue)
    path = project.issue_path(issue)
    try:
        built = build_issue(path, project)
    except InvalidIssue as exc:
        echo_problems(exc.problems)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        warnings = len(exc.problems) - errors
        raise NewsletterError(f"{display_path(path)}: {errors} error(s), {warnings} warning(s); "
                              f"{advice}") from exc
    echo_problems(built.warnings)
    if outcome is not None:
        check_against_ledger(project, built, db_url, outcome)
    return project, path, built




@click.command()
@click.option("--slug", help="File name for the issue (default: next edition, e.g. 2027-spring).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Issue date, YYYY-MM-DD (default: the next edition's date).")
def new(slug: str | None, day: dt.datetime | None) -> None:
    """Create issues/<slug>.yaml from a commented skeleton for the next edition.

    Example:

        newsletter new
    """
    project = load_project()
    path = scaffold_issue(project, slug=slug, day=day.date() if day else None,
                          today=dt.date.today())
    click.echo(f"Created {path}")
    click.echo(f"Edit it, then run: newsletter check {path}")


@click.command()
@issue_argument
@db_option
def check(issue: Path, db: str | None) -> None:
    """Validate ISSUE and report every problem at once (exit 1 if any is an error).

    An issue already sent must be what was sent: check says what differs.

    Example:

        newsletter check issues/2026-spring.yaml
    """
    project, path, built = _checked_build(issue, "fix the errors above and run check again",
                                          db, "check fails")
    click.echo(f"{display_path(path)}: OK ({len(built.warnings)} warning(s), "
               f"{len(built.links)} links)")


@click.command()
@issue_argument
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: build/). Files go to OUT/<slug>/.")
@click.option("--open", "open_browser", is_flag=True, help="Open the built email in a browser.")
@db_option
def build(issue: Path, out: Path | None, open_browser: bool, db: str | None) -> None:
    """Check ISSUE, then write email.html, email.txt, web.html, email.mjml and links.json.

    Example:

        newsletter build issues/2026-spring.yaml --out build
    """
    project, path, built = _checked_build(issue, "not built; fix the errors above", db,
                                          "not built")
    target = write_build(built, out or project.build_dir)
    email = target / "email.html"
    click.echo(f"Built {built.issue.slug} ({len(built.links)} links) in {target}/")
    click.echo("  email.html  email.txt  web.html  email.mjml  links.json  images/  assets/")
    click.echo(f"Open it: {email.resolve().as_uri()}")
    if built.email_images:
        click.echo("  (its images load from where they are published: `newsletter publish "
                   f"{built.issue.slug}`; `newsletter preview` shows them from the project)")
    if open_browser:
        webbrowser.open(email.resolve().as_uri())


COMMANDS = [new, check, build]


