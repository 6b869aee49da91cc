"""Ordered schema migrations. Append new ``mNNN_`` functions; never edit one once released.

Each migration spells out its own DDL, so what it does never changes when the SQLAlchemy
tables in ``db.py`` change; ``db.py`` describes the schema as the migrations leave it.
The same statements run on SQLite and PostgreSQL; where the two differ (an auto-increment
key, boolean literals) the :class:`Dialect` helper fills in the difference.

Migrations are applied in list order and recorded by name in the ``migrations`` table.
Several work streams add migrations at once, so numbers are taken from a range per stream
and may leave gaps; the order of this list, not the numbers, is what counts.

``tests/test_migrations.py`` loads a database made by the first release of the schema
(``tests/fixtures/first-release.*.sql``) and checks that migrating it gives exactly the
schema a new database gets, on both engines.

Alembic was weighed and not taken: its autogenerate derives migrations from the models, the
drift that made the old ``m001`` change with ``db.py``; hand-written Alembic revisions would
hold the same DDL as here plus an ``env.py``, a revision graph and a second command for the
team to run, for a schema that changes a few times a year. This list runs inside every
command that opens the database, so no one can forget to upgrade.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

_applied = sa.Table(
    "migrations", sa.MetaData(),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Dialect:
    """The few spellings that differ between SQLite and PostgreSQL DDL."""

    name: str

    @property
    def serial(self) -> str:
        """An auto-incrementing integer primary key column type."""
        return "SERIAL" if self.name == "postgresql" else "INTEGER"

    @property
    def false(self) -> str:
        return "false" if self.name == "postgresql" else "0"

    @property
    def true(self) -> str:
        return "true" if self.name == "postgresql" else "1"


def run(conn: Connection, *statements: str) -> None:
    """Execute DDL statements in order (each one statement; no parameters)."""
    for statement in statements:
        conn.exec_driver_sql(statement)


def m001_initial(conn: Connection) -> None:
    """Ledger, recipients, suppressions, link registry, tracking events, signing keys."""
    d = Dialect(conn.dialect.name)
    run(
        conn,
        """CREATE TABLE signing_keys (
            kid VARCHAR(64) NOT NULL,
            secret VARCHAR(128) NOT NULL,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (kid))""",
        f"""CREATE TABLE recipients (
            id {d.serial} NOT NULL,
            address VARCHAR(320) NOT NULL,
            pseudonym VARCHAR(64) NOT NULL,
            name TEXT DEFAULT '' NOT NULL,
            organisation TEXT DEFAULT '' NOT NULL,
            domain VARCHAR(255) DEFAULT '' NOT NULL,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (id),
            UNIQUE (address),
            UNIQUE (pseudonym))""",
        f"""CREATE TABLE issues (
            slug VARCHAR(100) NOT NULL,
            subject TEXT NOT NULL,
            tracking VARCHAR(16) NOT NULL,
            opens BOOLEAN DEFAULT {d.false} NOT NULL,
            web_html TEXT DEFAULT '' NOT NULL,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (slug))""",
        f"""CREATE TABLE links (
            issue VARCHAR(100) NOT NULL,
            link_id VARCHAR(32) NOT NULL,
            url TEXT NOT NULL,
            text TEXT DEFAULT '' NOT NULL,
            section TEXT DEFAULT '' NOT NULL,
            kind VARCHAR(16) NOT NULL,
            tracked BOOLEAN DEFAULT {d.true} NOT NULL,
            PRIMARY KEY (issue, link_id))""",
        """CREATE TABLE deliveries (
            issue VARCHAR(100) NOT NULL,
            recipient_id INTEGER NOT NULL,
            status VARCHAR(16) DEFAULT 'pending' NOT NULL,
            previous_status VARCHAR(16) DEFAULT '' NOT NULL,
            attempts INTEGER DEFAULT '0' NOT NULL,
            last_error TEXT DEFAULT '' NOT NULL,
            message_id VARCHAR(255) NOT NULL,
            provider_message_id VARCHAR(255) DEFAULT '' NOT NULL,
            next_attempt_at FLOAT DEFAULT '0' NOT NULL,
            claimed_by VARCHAR(64) DEFAULT '' NOT NULL,
            claimed_at FLOAT DEFAULT '0' NOT NULL,
            sent_at FLOAT,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (issue, recipient_id),
            FOREIGN KEY (recipient_id) REFERENCES recipients (id))""",
        "CREATE INDEX ix_deliveries_status ON deliveries (issue, status)",
        """CREATE TABLE delivery_lists (
            issue VARCHAR(100) NOT NULL,
            recipient_id INTEGER NOT NULL,
            list_key VARCHAR(100) NOT NULL,
            PRIMARY KEY (issue, recipient_id, list_key))""",
        """CREATE TABLE suppressions (
            address VARCHAR(320) NOT NULL,
            reason VARCHAR(32) NOT NULL,
            source TEXT DEFAULT '' NOT NULL,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (address))""",
        f"""CREATE TABLE events (
            id {d.serial} NOT NULL,
            at FLOAT NOT NULL,
            issue VARCHAR(100) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            link_id VARCHAR(32) DEFAULT '' NOT NULL,
            pseudonym VARCHAR(64) DEFAULT '' NOT NULL,
            list_key VARCHAR(100) DEFAULT '' NOT NULL,
            method VARCHAR(8) DEFAULT 'GET' NOT NULL,
            user_agent TEXT DEFAULT '' NOT NULL,
            ip_hash VARCHAR(64) DEFAULT '' NOT NULL,
            scanner BOOLEAN DEFAULT {d.false} NOT NULL,
            reasons TEXT DEFAULT '' NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_events_issue_at ON events (issue, at)",
    )


def m002_report_indexes(conn: Connection) -> None:
    """Covering indexes for the report: per link, per recipient and per day in one index scan."""
    # Released with IF NOT EXISTS (m001 used to create every table of db.py): kept as it was.
    for name, columns in (
        ("ix_events_links", "issue, kind, scanner, link_id, pseudonym"),
        ("ix_events_people", "issue, kind, scanner, pseudonym, link_id"),
        ("ix_events_days", "issue, kind, scanner, at, link_id"),
        ("ix_events_reasons", "issue, scanner, reasons"),
    ):
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON events ({columns})"))


def m010_delivery_pseudonyms(conn: Connection) -> None:
    """Each delivery carries the recipient's pseudonym for that issue.

    Rows already written keep the pseudonym their messages carried, the recipient's single
    one, so tokens and unsubscribe links of issues already sent still resolve.
    """
    conn.execute(sa.text("ALTER TABLE deliveries ADD COLUMN pseudonym VARCHAR(64) "
                         "DEFAULT '' NOT NULL"))
    conn.execute(sa.text("UPDATE deliveries SET pseudonym = (SELECT recipients.pseudonym "
                         "FROM recipients WHERE recipients.id = deliveries.recipient_id)"))
    conn.execute(sa.text("CREATE INDEX ix_deliveries_pseudonym ON deliveries (issue, pseudonym)"))


def m011_sent_content(conn: Connection) -> None:
    """What each sent issue contained (fingerprint and summary), and the amendments table."""
    d = Dialect(conn.dialect.name)
    run(
        conn,
        "ALTER TABLE issues ADD COLUMN fingerprint VARCHAR(64) DEFAULT '' NOT NULL",
        "ALTER TABLE issues ADD COLUMN content TEXT DEFAULT '' NOT NULL",
        f"""CREATE TABLE amendments (
            id {d.serial} NOT NULL,
            issue VARCHAR(100) NOT NULL,
            at FLOAT NOT NULL,
            who VARCHAR(200) NOT NULL,
            reason TEXT NOT NULL,
            changes TEXT NOT NULL,
            old_fingerprint VARCHAR(64) DEFAULT '' NOT NULL,
            new_fingerprint VARCHAR(64) NOT NULL,
            old_subject TEXT NOT NULL,
            old_web_html TEXT NOT NULL,
            old_content TEXT DEFAULT '' NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_amendments_issue ON amendments (issue, at)",
    )


def m040_tracker_journal(conn: Connection) -> None:
    """Where the tracker's journal segments are stored up to, and the database's own id."""
    conn.execute(sa.text(
        "CREATE TABLE IF NOT EXISTS journal_segments ("
        "segment VARCHAR(200) NOT NULL PRIMARY KEY, "
        "position BIGINT NOT NULL, "
        "updated_at DOUBLE PRECISION NOT NULL)"))
    conn.execute(sa.text(
        "CREATE TABLE IF NOT EXISTS meta ("
        "key VARCHAR(64) NOT NULL PRIMARY KEY, "
        "value TEXT NOT NULL)"))


def m060_repeat_possible(conn: Connection) -> None:
    """deliveries.repeat_possible: once a row was handed over without an answer (unknown),
    a later copy may be the recipient's second; the ledger keeps saying so after it is sent."""
    d = Dialect(conn.dialect.name)
    run(conn, f"ALTER TABLE deliveries ADD COLUMN repeat_possible BOOLEAN DEFAULT {d.false} "
              "NOT NULL")
    # Rows unknown when this arrives were handed over without an answer already.
    run(conn, f"UPDATE deliveries SET repeat_possible = {d.true} WHERE status = 'unknown'")


def m030_bounces(conn: Connection) -> None:
    """Bounce, complaint and delivery events; richer suppressions with a log of changes; the
    bounce mailbox's processed messages; webhook requests already accepted."""
    d = Dialect(conn.dialect.name)
    run(
        conn,
        # Every suppression says why (reason), what found it (source), about which issue,
        # and in the server's words (detail). A first-release row came from the tracker's
        # unsubscribe page, its source written as "tracker:/u (ISSUE)".
        "ALTER TABLE suppressions ADD COLUMN issue VARCHAR(100) DEFAULT '' NOT NULL",
        "ALTER TABLE suppressions ADD COLUMN detail TEXT DEFAULT '' NOT NULL",
        """UPDATE suppressions SET issue = substr(source, 13, length(source) - 13),
            source = 'tracker' WHERE substr(source, 1, 12) = 'tracker:/u ('""",
        "UPDATE suppressions SET source = 'manual' WHERE source = ''",
        f"""CREATE TABLE suppression_log (
            id {d.serial} NOT NULL,
            at FLOAT NOT NULL,
            action VARCHAR(16) NOT NULL,
            address VARCHAR(320) NOT NULL,
            reason VARCHAR(32) DEFAULT '' NOT NULL,
            source VARCHAR(16) DEFAULT '' NOT NULL,
            issue VARCHAR(100) DEFAULT '' NOT NULL,
            detail TEXT DEFAULT '' NOT NULL,
            note TEXT DEFAULT '' NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_suppression_log_address ON suppression_log (address, at)",
        f"""CREATE TABLE delivery_events (
            id {d.serial} NOT NULL,
            event_key VARCHAR(255) NOT NULL,
            at FLOAT NOT NULL,
            recorded_at FLOAT NOT NULL,
            source VARCHAR(16) NOT NULL,
            provider VARCHAR(32) DEFAULT '' NOT NULL,
            type VARCHAR(16) NOT NULL,
            address VARCHAR(320) NOT NULL,
            issue VARCHAR(100) DEFAULT '' NOT NULL,
            status VARCHAR(16) DEFAULT '' NOT NULL,
            detail TEXT DEFAULT '' NOT NULL,
            raw TEXT DEFAULT '' NOT NULL,
            PRIMARY KEY (id),
            UNIQUE (event_key))""",
        "CREATE INDEX ix_delivery_events_address ON delivery_events (address, at)",
        "CREATE INDEX ix_delivery_events_issue ON delivery_events (issue, type)",
        """CREATE TABLE mailbox_messages (
            message_key VARCHAR(255) NOT NULL,
            at FLOAT NOT NULL,
            kind VARCHAR(32) NOT NULL,
            note TEXT DEFAULT '' NOT NULL,
            PRIMARY KEY (message_key))""",
        """CREATE TABLE webhook_requests (
            request_key VARCHAR(255) NOT NULL,
            at FLOAT NOT NULL,
            PRIMARY KEY (request_key))""",
        # A bounce quoting our Message-ID is matched to its ledger row.
        "CREATE INDEX ix_deliveries_message_id ON deliveries (message_id)",
    )


def m050_events_classifier(conn: Connection) -> None:
    """Which version of the scanner rules classified each event (the report states it).

    Events stored before this migration were classified by the first release's rules: 1.
    """
    run(conn, "ALTER TABLE events ADD COLUMN classifier INTEGER DEFAULT 1 NOT NULL")


def m020_published_images(conn: Connection) -> None:
    """Images published with an issue, stored by content so the tracker can serve them."""
    blob = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
    run(
        conn,
        f"""CREATE TABLE images (
            name VARCHAR(64) NOT NULL,
            content_type VARCHAR(32) NOT NULL,
            data {blob} NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (name))""",
        """CREATE TABLE issue_images (
            issue VARCHAR(100) NOT NULL,
            name VARCHAR(64) NOT NULL,
            src TEXT DEFAULT '' NOT NULL,
            published_at FLOAT NOT NULL,
            PRIMARY KEY (issue, name))""",
        "CREATE INDEX ix_issue_images_name ON issue_images (name)",
    )


def m021_archive(conn: Connection) -> None:
    """What the public archive and feed show of each issue sent."""
    d = Dialect(conn.dialect.name)
    run(
        conn,
        f"""CREATE TABLE archive (
            issue VARCHAR(100) NOT NULL,
            title TEXT NOT NULL,
            edition TEXT NOT NULL,
            issue_date VARCHAR(10) NOT NULL,
            preheader TEXT DEFAULT '' NOT NULL,
            author TEXT DEFAULT '' NOT NULL,
            language VARCHAR(16) DEFAULT 'en-GB' NOT NULL,
            url TEXT NOT NULL,
            listed BOOLEAN DEFAULT {d.true} NOT NULL,
            published_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (issue))""",
    )


def m051_delivered_at(conn: Connection) -> None:
    """deliveries.delivered_at: when the message reached the recipient's server, as a provider
    (or a DSN) reports it; the tracker's timing rules prefer it to sent_at.

    Filled from the delivery events already recorded (the earliest per message).
    """
    run(conn,
        "ALTER TABLE deliveries ADD COLUMN delivered_at FLOAT",
        """UPDATE deliveries SET delivered_at = (
            SELECT MIN(e.at) FROM delivery_events e JOIN recipients r ON r.address = e.address
            WHERE e.type = 'delivered' AND e.issue = deliveries.issue
              AND r.id = deliveries.recipient_id)""")


def m052_event_classifiers(conn: Connection) -> None:
    """Which versions of the scanner rules classified each issue's events: the report states
    them without reading every event. Filled from the events already stored."""
    run(conn,
        """CREATE TABLE event_classifiers (
            issue VARCHAR(100) NOT NULL,
            classifier INTEGER NOT NULL,
            PRIMARY KEY (issue, classifier))""",
        "INSERT INTO event_classifiers (issue, classifier) "
        "SELECT DISTINCT issue, classifier FROM events")


def m070_outlets(conn: Connection) -> None:
    """The outlets the newsletter is reshared through, as registered by `share` and `send`."""
    run(conn, """CREATE TABLE outlets (
            id VARCHAR(40) NOT NULL,
            name TEXT NOT NULL,
            kind VARCHAR(32) NOT NULL,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (id))""")


def m071_feedback_and_outlet_events(conn: Connection) -> None:
    """Tracking hits say which outlet they came through; the feedback question's wording for
    the tracker; readers' comments on the thank-you page, with nothing to identify them."""
    d = Dialect(conn.dialect.name)
    run(conn,
        # Every hit stored before outlets came from the email (its links, "view in browser").
        "ALTER TABLE events ADD COLUMN outlet VARCHAR(40) DEFAULT 'email' NOT NULL",
        "ALTER TABLE issues ADD COLUMN feedback TEXT DEFAULT '' NOT NULL",
        f"""CREATE TABLE feedback_comments (
            id {d.serial} NOT NULL,
            issue VARCHAR(100) NOT NULL,
            answer VARCHAR(8) NOT NULL,
            outlet VARCHAR(40) NOT NULL,
            day FLOAT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_feedback_comments_issue ON feedback_comments (issue, day)")


def m072_event_counts(conn: Connection) -> None:
    """Counts of the events kept up to date as they are written (newsletter.tracking.rollup):
    what the reports read instead of every event. Filled from the events already stored."""
    d = Dialect(conn.dialect.name)
    day = ("CAST(trunc(at / 86400) AS INTEGER)" if d.name == "postgresql"
           else "CAST(at / 86400 AS INTEGER)")
    run(conn,
        """CREATE TABLE event_counts (
            issue VARCHAR(100) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            scanner BOOLEAN NOT NULL,
            day INTEGER NOT NULL,
            link_id VARCHAR(32) NOT NULL,
            outlet VARCHAR(40) NOT NULL,
            list_key VARCHAR(100) NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (issue, kind, scanner, day, link_id, outlet, list_key))""",
        """CREATE TABLE event_reasons (
            issue VARCHAR(100) NOT NULL,
            reasons TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (issue, reasons))""",
        """CREATE TABLE event_people (
            issue VARCHAR(100) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            scanner BOOLEAN NOT NULL,
            pseudonym VARCHAR(64) NOT NULL,
            link_id VARCHAR(32) NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (issue, kind, scanner, pseudonym, link_id))""",
        f"""INSERT INTO event_counts (issue, kind, scanner, day, link_id, outlet, list_key, n)
            SELECT issue, kind, scanner, {day}, link_id, outlet, list_key, COUNT(*)
            FROM events GROUP BY issue, kind, scanner, {day}, link_id, outlet, list_key""",
        f"""INSERT INTO event_reasons (issue, reasons, n)
            SELECT issue, reasons, COUNT(*) FROM events WHERE scanner = {d.true}
            GROUP BY issue, reasons""",
        """INSERT INTO event_people (issue, kind, scanner, pseudonym, link_id, n)
            SELECT issue, kind, scanner, pseudonym, link_id, COUNT(*) FROM events
            WHERE pseudonym != '' GROUP BY issue, kind, scanner, pseudonym, link_id""")


# One a line, in the order they apply (several streams append here at once).
MIGRATIONS: list[Callable[[Connection], None]] = [
    m001_initial,
    m002_report_indexes,
    m010_delivery_pseudonyms,
    m011_sent_content,
    m040_tracker_journal,
    m060_repeat_possible,
    m030_bounces,
    m050_events_classifier,
    m020_published_images,
    m021_archive,
    m051_delivered_at,
    m052_event_classifiers,
    m070_outlets,
    m071_feedback_and_outlet_events,
    m072_event_counts,
]


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
            conn.execute(_applied.insert().values(name=step.__name__, applied_at=time.time()))
            done.append(step.__name__)
    return done


def pending(engine: Engine) -> list[str]:
    """Names of the migrations not yet applied to the database behind ``engine``."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(_applied.name):
            return [step.__name__ for step in MIGRATIONS]
        have = {row[0] for row in conn.execute(sa.select(_applied.c.name))}
    return [step.__name__ for step in MIGRATIONS if step.__name__ not in have]


def _lock(conn: Connection) -> None:
    """Let one process migrate at a time: two first opens at once (two sends, several tracker
    instances) would otherwise both create the same tables."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7346021)")
