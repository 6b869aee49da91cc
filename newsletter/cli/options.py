"""Options several commands share, declared once so they read and behave the same."""

from __future__ import annotations

import click

db_option = click.option(
    "--db", "db", metavar="PATH|URL", default=None,
    help="The database: a SQLite path or a postgresql:// URL (default: NEWSLETTER_DB, then "
    "newsletter.db in the project).")
