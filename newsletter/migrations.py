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


MIGRATIONS: list[Callable[[Connection], None]] = [m001_initial]


def migrate(engine: Engine) -> list[str]:
    """Apply every migration not yet applied, in order; return the names applied."""
    done: list[str] = []
    with engine.begin() as conn:
        _applied.create(conn, checkfirst=True)
        have = {row[0] for row in conn.execute(sa.select(_applied.c.name))}
        for step in MIGRATIONS:
            if step.__name__ in have:
                continue
            step(conn)
            conn.execute(_applied.insert().values(name=step.__name__, applied_at=db.now()))
            done.append(step.__name__)
    return done
