"""``newsletter suppressions list|add|remove|import|export``: the addresses never sent to."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli import load_project
from newsletter.cli.options import db_option
from newsletter.errors import NewsletterError
from newsletter.suppressions import REASONS, Suppression, iso

if TYPE_CHECKING:
    from newsletter.db import Database
    from newsletter.project import Project

FORMATS = ("table", "csv", "json")


def _date(value: str | None, option: str) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NewsletterError(f"{option} {value!r} is not a date",
                              hint=f"write it as 2026-04-14, e.g. {option} 2026-04-14") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _open(db: str | None, create: bool = False,
          can_create: bool = False) -> tuple[Project, Database]:
    from newsletter.db import open_db

    project = load_project()
    return project, open_db(project.db_url(db, create=create, can_create=can_create),
                            patience=project.settings.db_wait)


def _document(s: Suppression) -> dict[str, str]:
    return {"address": s.address, "reason": s.reason, "source": s.source, "at": iso(s.at),
            "issue": s.issue, "detail": s.detail}


@click.group("suppressions")
def suppressions_group() -> None:
    """See and change the addresses that are never sent to, and why.

    Example:

        newsletter suppressions list --reason bounced-hard
    """


@suppressions_group.command("list")
@click.option("--reason", type=click.Choice(REASONS), default=None,
              help="Only suppressions for this reason.")
@click.option("--list", "list_key", metavar="LIST", default=None,
              help="Only members of this list in audiences.yaml.")
@click.option("--since", metavar="DATE", default=None, help="Only those from this date (UTC).")
@click.option("--until", metavar="DATE", default=None, help="Only those before this date (UTC).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table for people; csv and json (a list of objects) for other programs.")
@db_option
def list_command(reason: str | None, list_key: str | None, since: str | None,
                 until: str | None, fmt: str, db: str | None) -> None:
    """List suppressed addresses with reason, source (send, mailbox, webhook, tracker, manual),
    date, issue and the server's words.

    Example:

        newsletter suppressions list --list kscmp --since 2026-04-01 --format csv
    """
    from newsletter import suppressions
    from newsletter.audiences import load_audiences

    start, end = _date(since, "--since"), _date(until, "--until")
    project, database = _open(db)
    try:
        members = None
        if list_key:
            members = [m.address for m in
                       load_audiences(project.audiences_path).get(list_key).members]
        items = suppressions.all_suppressions(database, reason=reason, addresses=members,
                                              since=start, until=end)
    finally:
        database.close()
    if fmt == "json":
        click.echo(json.dumps([_document(s) for s in items], indent=2))
    elif fmt == "csv":
        click.echo(suppressions.to_csv(items), nl=False)
    else:
        _table(items)


def _table(items: list[Suppression]) -> None:
    if not items:
        click.echo("No suppressed addresses.")
        return
    width = max(len(s.address) for s in items)
    click.echo(f"{'address':<{width}}  {'reason':<12}  {'source':<7}  {'date':<10}  "
               f"{'issue':<12}  detail")
    for s in items:
        click.echo(f"{s.address:<{width}}  {s.reason:<12}  {s.source:<7}  {iso(s.at)[:10]}  "
                   f"{s.issue or '-':<12}  {s.detail[:80]}")
    click.echo(f"{len(items)} suppressed address(es)")


@suppressions_group.command("add")
@click.argument("address")
@click.option("--reason", type=click.Choice(REASONS), default="manual", show_default=True,
              help="Why the address is suppressed.")
@click.option("--note", default="", help="A note kept in the suppression log.")
@db_option
def add_command(address: str, reason: str, note: str, db: str | None) -> None:
    """Suppress ADDRESS by hand: no issue is sent to it until it is removed.

    Example:

        newsletter suppressions add old-dsl@school.example.org --reason manual
    """
    from newsletter import suppressions
    from newsletter.audiences import normalise_address

    normalised, why = normalise_address(address.strip())
    if not normalised:
        raise NewsletterError(f"{address!r} is not an email address: {why}")
    _, database = _open(db)
    try:
        with database.engine.begin() as conn:
            done = suppressions.add(conn, normalised, reason, "manual", note=note,
                                    detail=note)
    finally:
        database.close()
    if not done:
        click.echo(f"{normalised} was already suppressed; nothing changed.")
    else:
        click.echo(f"Suppressed {normalised} ({reason}).")


@suppressions_group.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--note", default="", help="Why, kept in the suppression log.")
@db_option
def remove_command(address: str, yes: bool, note: str, db: str | None) -> None:
    """Lift the suppression of ADDRESS, so the next issue goes to it again (asks first).

    The suppression and its removal stay in the suppression log.

    Example:

        newsletter suppressions remove dsl@academy.example.org --note "mailbox fixed"
    """
    from newsletter import suppressions

    _, database = _open(db)
    try:
        found = suppressions.get(database, address)
        if found is None:
            raise NewsletterError(f"{address.strip().lower()} is not suppressed",
                                  hint="see them all with `newsletter suppressions list`")
        what = (f"{found.address}: {found.reason} ({found.source}, {iso(found.at)[:10]}"
                + (f", {found.issue}" if found.issue else "") + ")"
                + (f"\n  {found.detail}" if found.detail else ""))
        click.echo(what)
        if not yes and not click.confirm("Send to this address again?", default=False):
            raise NewsletterError("nothing changed", hint="add --yes to remove without asking")
        suppressions.remove(database, found.address, note=note or "removed by hand")
    finally:
        database.close()
    click.echo(f"Removed the suppression of {found.address}; the removal is logged.")


@suppressions_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@click.option("--create-db", is_flag=True,
              help="Start a new, empty database at --db on purpose (e.g. for a new project).")
def import_command(file: Path, db: str | None, create_db: bool) -> None:
    """Suppress every address in a CSV file (columns: address, and optionally reason, source,
    at, issue, detail, as `export` writes them). Nothing is imported if any line is wrong.

    Example:

        newsletter suppressions import old-unsubscribes.csv
    """
    from newsletter import suppressions

    items, problems = suppressions.read_csv(file)
    if problems:
        raise NewsletterError("\n".join(p.format() for p in problems)
                              + f"\n{len(problems)} error(s); nothing was imported")
    _, database = _open(db, create=create_db, can_create=True)
    added = 0
    try:
        with database.engine.begin() as conn:
            for s in items:
                added += suppressions.add(conn, s.address, s.reason, s.source, issue=s.issue,
                                          detail=s.detail, at=s.at, note=f"imported from {file}")
    finally:
        database.close()
    click.echo(f"Imported {added} suppression(s) from {file}; "
               f"{len(items) - added} were already suppressed.")


@suppressions_group.command("export")
@click.option("--format", "fmt", type=click.Choice(("csv", "json")), default="csv",
              show_default=True, help="csv (what `import` reads) or json.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write to this file instead of the screen.")
@db_option
def export_command(fmt: str, output: Path | None, db: str | None) -> None:
    """Write every suppression, to keep a copy or to move it to another database.

    Example:

        newsletter suppressions export -o suppressions.csv
    """
    from newsletter import suppressions

    _, database = _open(db)
    try:
        items = suppressions.all_suppressions(database)
    finally:
        database.close()
    text = suppressions.to_csv(items) if fmt == "csv" else \
        json.dumps([_document(s) for s in items], indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NewsletterError(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"Wrote {len(items)} suppression(s) to {output}.")


suppressions_group.name = "suppressions"
COMMANDS = [suppressions_group]
