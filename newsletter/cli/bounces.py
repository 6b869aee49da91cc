"""``newsletter bounces fetch``: read the bounce mailbox into suppressions."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli import load_project
from newsletter.cli.options import db_option


@click.group("bounces")
def bounces() -> None:
    """Read bounces and complaints from the bounce mailbox.

    Example:

        newsletter bounces fetch --dry-run
    """


@bounces.command("fetch")
@click.option("--maildir", type=click.Path(path_type=Path), default=None,
              help="Read this local Maildir instead of the IMAP mailbox.")
@click.option("--mbox", type=click.Path(path_type=Path), default=None,
              help="Read this local mbox file instead of the IMAP mailbox.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be recorded and suppressed; change nothing anywhere.")
@db_option
def fetch_command(maildir: Path | None, mbox: Path | None, dry_run: bool,
                  db: str | None) -> None:
    """Record every new bounce and complaint in the bounce mailbox, and suppress addresses.

    Reads the IMAP folder in NEWSLETTER_BOUNCE_IMAP_URL (password in
    NEWSLETTER_BOUNCE_IMAP_PASSWORD), or a local --maildir or --mbox. A hard bounce or a
    complaint suppresses the address at once; soft bounces after soft_bounce_limit issues in a
    row. Auto-replies and messages that name no recipient of ours are left alone. Running it
    again changes nothing.

    Example:

        newsletter bounces fetch --maildir /var/mail/bounces/Maildir
    """
    from newsletter.bounces.fetch import fetch
    from newsletter.bounces.mailbox import open_mailbox
    from newsletter.bounces.verp import codec_for
    from newsletter.db import open_db
    from newsletter.tracking.tokens import signer_for

    project = load_project()
    settings = project.settings
    mailbox = open_mailbox(maildir=maildir, mbox=mbox, imap_url=settings.bounce_imap_url,
                           imap_password=settings.bounce_imap_password,
                           ca_file=settings.bounce_imap_ca_file or None, read_only=dry_run)
    database = open_db(project.db_url(db, can_create=False), patience=settings.db_wait)
    try:
        with mailbox:
            codec = codec_for(signer_for(database, settings.secret_key))
            report = fetch(database, mailbox, codec=codec,
                           bounce_address=settings.bounce_address,
                           soft_bounce_limit=settings.soft_bounce_limit, dry_run=dry_run)
    finally:
        database.close()
    would = "would be " if dry_run else ""
    for line in report.lines:
        who = f" {line.address}" if line.address else ""
        issue = f" ({line.issue})" if line.issue else ""
        tail = f" -> {would}suppressed ({line.suppressed})" if line.suppressed else ""
        click.echo(f"{line.outcome:<18}{who}{issue}: {line.note}{tail}")
    counts = report.counts
    suppressed = sum(1 for line in report.lines if line.suppressed)
    parts = [f"{n} {outcome}" for outcome, n in sorted(counts.items())]
    click.echo(f"{mailbox.describe()}: {len(report.lines)} message(s)"
               + (f": {', '.join(parts)}" if parts else "")
               + f"; {suppressed} address(es) {would}suppressed."
               + (" Dry run: nothing was recorded or marked." if dry_run else ""))


COMMANDS = [bounces]
