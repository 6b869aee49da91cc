"""Ordered schema migrations. Append new ``mNNN_`` functions; never edit an applied one."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter import db

_applied = sa.Table(
    "migrations", sa.MetaData(),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def m001_initial(conn: Connection) -> None:
    """Ledger, recipients, suppressions, link registry, tracking events, signing keys."""
    db.metadata.create_all(conn)


def m002_report_indexes(conn: Connection) -> None:
    """Covering indexes for the report: per link, per recipient and per day in one index scan."""
    # Plain DDL (same on SQLite and PostgreSQL) so the shared Table object stays as m001 made it.
    for name, columns in (
        ("ix_events_links", "issue, kind, scanner, link_id, pseudonym"),
        ("ix_events_people", "issue, kind, scanner, pseudonym, link_id"),
        ("ix_events_days", "issue, kind, scanner, at, link_id"),
        ("ix_events_reasons", "issue, scanner, reasons"),
    ):
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON events ({columns})"))


MIGRATIONS: list[Callable[[Connection], None]] = [m001_initial, m002_report_indexes]


def migrate(engine: Engine) -> list[str]:
    """Apply every migration not yet applied, in order; return the names applied."""
    done: list[str] = []
    with engine.begin() as conn:
        _lock(conn)
        _applied.create(conn, checkfirst=True)
        have = {row[0] for row in conn.execute(sa.select(_applied.c.name))}
        for step in MIGRATIONS:
            if step.__name__ in have:
                continue
            step(conn)
            conn.execute(_applied.insert().values(name=step.__name__, applied_at=db.now()))
            done.append(step.__name__)
    return done


def _lock(conn: Connection) -> None:
    """Let one process migrate at a time: two first opens at once (two sends, several tracker
    instances) would otherwise both create the same tables."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7346021)")
