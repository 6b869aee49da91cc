"""Options several commands share, declared once so they read and behave the same."""

from __future__ import annotations

import click

db_option = click.option(
    "--db", "db", metavar="PATH|URL", default=None, envvar="NEWSLETTER_DB", show_envvar=True,
    help="The database: a SQLite path or a postgresql:// URL (default: newsletter.db in the "
    "project).")

adapter_option = click.option(
    "--adapter", envvar="NEWSLETTER_ADAPTER", show_envvar=True,
    help="maildir (default), smtp, mailgun, postmark, sendgrid or a plug-in.")
