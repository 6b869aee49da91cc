"""The project's one database: SQLite by default, PostgreSQL by URL.

Every command that stores something (send's ledger, the tracker's events, suppressions, signing
keys) goes through :func:`open_db`, which applies the ordered migrations in ``migrations.py``.
Tables are SQLAlchemy Core objects so the same statements run on both engines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection

from newsletter.errors import StorageError, display_path

DEFAULT_PATIENCE = 60.0   # seconds to wait for the database to come back (NEWSLETTER_DB_WAIT)

# The schema as the migrations in migrations.py leave it; never used to create tables.
metadata = sa.MetaData()

signing_keys = sa.Table(
    "signing_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One row per address ever planned. ``pseudonym`` is the recipient's random secret: it is
# never sent; each issue's pseudonym is derived from it and kept on the delivery row.
recipients = sa.Table(
    "recipients", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(320), nullable=False, unique=True),
    sa.Column("pseudonym", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("organisation", sa.Text, nullable=False, server_default=""),
    sa.Column("domain", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

# An issue registered for sending: what the tracker needs without the project folder.
issues = sa.Table(
    "issues", metadata,
    sa.Column("slug", sa.String(100), primary_key=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("tracking", sa.String(16), nullable=False),
    sa.Column("opens", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("web_html", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # What was sent (newsletter.fixed): a summary of the content, stored at the first send,
    # and its hash. Empty for issues sent before m011 until their next send or build.
    sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""),
    sa.Column("content", sa.Text, nullable=False, server_default=""),
    # The feedback question's wording (JSON), for the tracker's thank-you page; '' for none.
    sa.Column("feedback", sa.Text, nullable=False, server_default=""),
)

# Corrections of sent issues (`newsletter amend`): who, when, why, what changed, and what the
# issue was before, so nothing published is ever lost.
amendments = sa.Table(
    "amendments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue", sa.String(100), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("who", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("old_fingerprint", sa.String(64), nullable=False, server_default=""),
    sa.Column("new_fingerprint", sa.String(64), nullable=False),
    sa.Column("old_subject", sa.Text, nullable=False),
    sa.Column("old_web_html", sa.Text, nullable=False),
    sa.Column("old_content", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_amendments_issue", "issue", "at"),
)

# The link registry: the only source of redirect destinations.
links = sa.Table(
    "links", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("link_id", sa.String(32), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("section", sa.Text, nullable=False, server_default=""),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("tracked", sa.Boolean, nullable=False, server_default=sa.true()),
)

# The send ledger: one row per (issue, recipient), written before anything is sent.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("recipient_id", sa.Integer, sa.ForeignKey("recipients.id"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    # The status a row had when a sender claimed it, restored if the run stops before sending.
    sa.Column("previous_status", sa.String(16), nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("message_id", sa.String(255), nullable=False),
    # The recipient's pseudonym in this issue (tokens, Message-ID, unsubscribe mailto): the
    # only way from a token back to a recipient. Rows from before m010 keep the pseudonym
    # their messages carried (the recipient's one for every issue, then).
    sa.Column("pseudonym", sa.String(64), nullable=False, server_default=""),
    sa.Column("provider_message_id", sa.String(255), nullable=False, server_default=""),
    sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("claimed_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("sent_at", sa.Float, nullable=True),
    # When the recipient's server accepted it, if a provider or a DSN said so (m051): greylisting
    # and queues can make that minutes after sent_at; the tracker's timing rules prefer it.
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Once handed over without an answer (unknown): a later copy may be a second one.
    sa.Column("repeat_possible", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_deliveries_status", "issue", "status"),
    sa.Index("ix_deliveries_pseudonym", "issue", "pseudonym"),
    sa.Index("ix_deliveries_message_id", "message_id"),
)

# Every list through which a recipient was reached for an issue (per-list reports).
delivery_lists = sa.Table(
    "delivery_lists", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("recipient_id", sa.Integer, primary_key=True),
    sa.Column("list_key", sa.String(100), primary_key=True),
)

# Addresses that are never sent to: reason is unsubscribed, bounced-hard, bounced-soft (after
# soft_bounce_limit in a row), complained or manual; source is what found it: send, mailbox,
# webhook, tracker or manual (``newsletter.suppressions``).
suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("issue", sa.String(100), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)

# Every suppression added or removed, and by what: nothing about a suppression is forgotten.
suppression_log = sa.Table(
    "suppression_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),       # added | removed
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False, server_default=""),
    sa.Column("issue", sa.String(100), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_suppression_log_address", "address", "at"),
)

# What became of a message after it left: bounces and complaints from the mailbox, provider
# webhooks and send-time refusals, in one vocabulary (bounces.events.EventType), each once.
delivery_events = sa.Table(
    "delivery_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_key", sa.String(255), nullable=False, unique=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),       # send | mailbox | webhook
    sa.Column("provider", sa.String(32), nullable=False, server_default=""),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("issue", sa.String(100), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("raw", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_delivery_events_address", "address", "at"),
    sa.Index("ix_delivery_events_issue", "issue", "type"),
)

# Messages of the bounce mailbox already processed, by Message-ID: a second run skips them.
mailbox_messages = sa.Table(
    "mailbox_messages", metadata,
    sa.Column("message_key", sa.String(255), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)

# Signed webhook requests already accepted (Mailgun's token, SendGrid's signature): a replay
# of one is refused.
webhook_requests = sa.Table(
    "webhook_requests", metadata,
    sa.Column("request_key", sa.String(255), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)

# Raw tracking hits, kept whole and classified; nothing is ever dropped for being a scanner.
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("issue", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # click | view | open
    sa.Column("link_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("pseudonym", sa.String(64), nullable=False, server_default=""),
    sa.Column("list_key", sa.String(100), nullable=False, server_default=""),
    sa.Column("method", sa.String(8), nullable=False, server_default="GET"),
    sa.Column("user_agent", sa.Text, nullable=False, server_default=""),
    sa.Column("ip_hash", sa.String(64), nullable=False, server_default=""),
    sa.Column("scanner", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reasons", sa.Text, nullable=False, server_default=""),
    # the version of the scanner rules (classify.VERSION) that gave the latest verdict
    sa.Column("classifier", sa.Integer, nullable=False, server_default="1"),
    # Where the hit came through (newsletter.outlets): "email" for the email's own links and
    # its "view in browser" (and every hit stored before outlets), else the outlet whose link
    # or copy of the web version it was, "direct" or "unknown".
    sa.Column("outlet", sa.String(40), nullable=False, server_default="email"),
    sa.Index("ix_events_issue_at", "issue", "at"),
)

# Counts of the events, kept up to date in the same transaction as the events they count
# (m072; newsletter.tracking.rollup): the reports read these instead of every event. ``day``
# is the UTC day number, int(at / 86400).
event_counts = sa.Table(
    "event_counts", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("scanner", sa.Boolean, primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("link_id", sa.String(32), primary_key=True),
    sa.Column("outlet", sa.String(40), primary_key=True),
    sa.Column("list_key", sa.String(100), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)
# Probable scanners' events by the reasons they were given.
event_reasons = sa.Table(
    "event_reasons", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("reasons", sa.Text, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)
# Events that name a recipient (individual tracking), per recipient and link: unique clickers,
# organisations.
event_people = sa.Table(
    "event_people", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("scanner", sa.Boolean, primary_key=True),
    sa.Column("pseudonym", sa.String(64), primary_key=True),
    sa.Column("link_id", sa.String(32), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

# What readers wrote on the feedback thank-you page: nothing that identifies them (no token,
# address, pseudonym, list or IP), the day only, cut to a length; purged with the events.
feedback_comments = sa.Table(
    "feedback_comments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue", sa.String(100), nullable=False),
    sa.Column("answer", sa.String(8), nullable=False),
    sa.Column("outlet", sa.String(40), nullable=False),
    sa.Column("day", sa.Float, nullable=False),    # the UTC day's start: when, to the day
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_feedback_comments_issue", "issue", "day"),
)

# Which versions of the scanner rules classified an issue's events (m052; the writer adds a
# row the first time it stores or reclassifies an event of an issue).
event_classifiers = sa.Table(
    "event_classifiers", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("classifier", sa.Integer, primary_key=True),
)

# How far the database holds each tracker journal segment (and each imported spill file): the
# position is written in the same transaction as the events, so a replay after a crash starts
# exactly where the stored hits end. Rows go when their segment is deleted (m040).
journal_segments = sa.Table(
    "journal_segments", metadata,
    sa.Column("segment", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Small facts about this database itself, e.g. the random id that tracker journal segments
# carry so that one is never stored into another database (m040).
meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Published images, by content ("<hash>.<ext>"): the same bytes are stored once whichever
# issues show them. An image is served while an issue that published it is in issue_images.
images = sa.Table(
    "images", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

issue_images = sa.Table(
    "issue_images", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("src", sa.Text, nullable=False, server_default=""),
    sa.Column("published_at", sa.Float, nullable=False),
    sa.Index("ix_issue_images_name", "name"),
)

# What the public archive (/, /v/) and feed (/feed.xml) show of an issue; an entry is listed
# once the issue has a sent delivery, unless its YAML says `archive: false`.
archive = sa.Table(
    "archive", metadata,
    sa.Column("issue", sa.String(100), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("edition", sa.Text, nullable=False),
    sa.Column("issue_date", sa.String(10), nullable=False),
    sa.Column("preheader", sa.Text, nullable=False, server_default=""),
    sa.Column("author", sa.Text, nullable=False, server_default=""),
    sa.Column("language", sa.String(16), nullable=False, server_default="en-GB"),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("listed", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("published_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# The outlets the newsletter is reshared through (newsletter.outlets), as `share` and `send`
# registered them from newsletter.yaml: the tracker counts a link naming one of these as its.
outlets = sa.Table(
    "outlets", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass
class Database:
    """An open, migrated database."""

    engine: Engine
    url: str

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: object, busy_ms: int = 30000) -> None:
    # WAL lets the tracker write while send and report read; busy_timeout waits out writers
    # instead of failing with "database is locked".
    # busy_timeout comes first so that switching a new file to WAL, which needs a moment of
    # exclusive access, waits for another process doing the same instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str, patience: float = DEFAULT_PATIENCE) -> Engine:
    """An engine for ``url`` with the settings each backend needs.

    A connection that cannot be made (PostgreSQL stopped or restarting) is tried again with
    backoff for up to ``patience`` seconds, saying on stderr what it waits for.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # hide_parameters: a failed statement's message must never carry its values (addresses,
    # IP hashes, user agents, pseudonyms) to a terminal or a log.
    # A lock is waited for a few seconds a try ("database is locked", "lock timeout"), so that
    # a caller waiting patiently (:func:`patiently`) can say what it waits for, and try again
    # until its patience runs out.
    busy = max(0.5, min(5.0, patience / 2))
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": busy}, hide_parameters=True)
        sa.event.listen(engine, "connect",
                        lambda conn, record: _sqlite_pragmas(conn, record, int(busy * 1000)))
    else:
        engine = sa.create_engine(
            url, pool_pre_ping=True, hide_parameters=True,
            connect_args={"options": f"-c lock_timeout={int(busy * 1000)}"})

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect: Dialect, _record: object, cargs: tuple[Any, ...],
                 cparams: dict[str, Any]) -> DBAPIConnection:
        def attempt() -> DBAPIConnection:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error as exc:
                # wrapped as SQLAlchemy would, so the retry sees the usual error classes
                raise sa.exc.DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error,
                                                 hide_parameters=True,
                                                 dialect=dialect) from exc

        return patiently(attempt, patience=patience, doing="connect")

    return engine


_T = TypeVar("_T")


def transient(exc: BaseException) -> bool:
    """Whether a database error may pass by itself: the server down or restarting, a lock held
    too long, a full disk, a read-only file (someone may fix them while we wait)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if "unable to open database file" in str(exc):
        return False    # SQLite: a path whose folder is missing, a mistake waiting cannot mend
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InternalError,
                            sa.exc.DisconnectionError))


def patiently(action: Callable[[], _T], *, patience: float, doing: str,
              say: Callable[[str], None] | None = None) -> _T:
    """``action()``, tried again with backoff (0.1 s doubling to 5 s) for up to ``patience``
    seconds while it fails with a :func:`transient` database error; then that error.

    What it waits for goes to ``say`` (stderr by default): at once, then every 10 s.
    """
    say = say or _say
    deadline = time.monotonic() + patience
    delay = 0.1
    said_at = -1e9
    while True:
        try:
            return action()
        except sa.exc.SQLAlchemyError as exc:
            left = deadline - time.monotonic()
            if not transient(exc) or left <= 0:
                raise
            if time.monotonic() - said_at >= 10:
                said_at = time.monotonic()
                say(f"waiting for the database to {doing} ({describe_error(exc)}); trying "
                    f"again for up to {left:.0f} s")
            time.sleep(min(delay, max(left, 0.01)))
            delay = min(delay * 2, 5.0)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def storage_error(exc: BaseException, *, resumes: str = "") -> StorageError:
    """A database failure as a message saying what failed and what to do.

    ``resumes`` names the command that picks up where this one stopped (``send``), if any.
    """
    why = describe_error(exc)
    low = why.lower()
    if "full" in low or "no space" in low:
        hint = "free some disk space where the database lives"
    elif "readonly" in low or "read-only" in low:
        hint = "make the database file and its folder writable again"
    elif "locked" in low or "lock timeout" in low:
        hint = "another program held the database too long (a backup, another command?)"
    elif "connect" in low or "refused" in low or "closed" in low or "terminat" in low:
        hint = "check that the database server is running and reachable (--db or NEWSLETTER_DB)"
    else:
        hint = "check the database (--db or NEWSLETTER_DB)"
    if resumes:
        hint += f"; nothing recorded is lost: run the same `{resumes}` again to carry on"
    else:
        hint += ", then run the same command again"
    return StorageError(f"the database failed: {why}", hint=hint)


def shown_url(url: str) -> str:
    """``url`` for messages: any password replaced by ***."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads (a file path, a typo): still hide whatever may be a login.
        scheme, sep, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}" if sep and "@" in rest else url


def _check_sqlite_file(url: str, writable: bool) -> None:
    """Refuse, with a message, a SQLite path that is a folder, not a database, or read-only."""
    import os
    from pathlib import Path

    if not url.startswith("sqlite:///") or "?" in url:
        return
    path = Path(url[len("sqlite:///"):])
    shown = display_path(path)
    hint = ("check --db or NEWSLETTER_DB: it names the ledger `newsletter send` made, "
            "e.g. newsletter.db")
    if path.is_dir():
        raise StorageError(f"cannot use database {shown}: it is a folder", hint=hint)
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        head = b""
    except OSError as exc:
        raise StorageError(f"cannot read database {shown}: {exc.strerror}",
                           hint="check the file's permissions") from exc
    if head and head != b"SQLite format 3\x00":
        raise StorageError(f"{shown} is not a database (it is not a SQLite file)", hint=hint)
    if not path.parent.is_dir():
        return      # SQLite says "unable to open database file"; the hint names the path
    folder_writable = os.access(path.parent, os.W_OK)
    if writable and ((head and not os.access(path, os.W_OK)) or not folder_writable):
        what = shown if head and not os.access(path, os.W_OK) else str(path.parent.resolve())
        raise StorageError(
            f"database {shown} cannot be written: {what} is read-only",
            hint=f"this command records what it does there: make {what} writable (e.g. "
            f"chmod u+w {what}), or point --db or NEWSLETTER_DB at a writable copy")


def open_db(url: str, *, writable: bool = True,
            patience: float = DEFAULT_PATIENCE) -> Database:
    """Open (creating if needed) and migrate the database at ``url``.

    ``writable=False`` (reports) skips the up-front check that a SQLite file and its folder
    can be written; everything else records something and must be able to. A server that
    does not answer is waited for, up to ``patience`` seconds (see :func:`create_db_engine`).
    """
    from newsletter.migrations import migrate

    scheme = url.split("://", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg"):
        raise StorageError(
            f"cannot use database {shown_url(url)!r}: only SQLite and PostgreSQL are supported",
            hint="use a file path, sqlite:///PATH or postgresql://user@host/dbname "
            "(--db or NEWSLETTER_DB)")
    _check_sqlite_file(url, writable)
    try:
        engine = create_db_engine(url, patience)
        for attempt in range(5):
            try:
                migrate(engine)
                break
            except sa.exc.OperationalError as exc:
                # Two processes creating one new SQLite file: switching it to WAL can report
                # "locked" without waiting for the busy timeout. The next try finds it done.
                if "locked" not in str(exc.orig) or attempt == 4:
                    raise
                engine.dispose()
                time.sleep(0.05 * (attempt + 1))
    except sa.exc.ArgumentError as exc:
        raise StorageError(
            f"cannot use database {shown_url(url)!r}: {exc}",
            hint="use a file path, sqlite:///PATH or postgresql://user@host/dbname "
            "(--db or NEWSLETTER_DB)",
        ) from exc
    except sa.exc.DBAPIError as exc:   # not a database, read-only, unreachable...
        why = describe_error(exc)
        raise StorageError(
            f"cannot open database {shown_url(url)!r}: {why}",
            hint="make the database file and its folder writable" if "readonly" in why
            else "check the path or server is reachable (--db or NEWSLETTER_DB)",
        ) from exc
    return Database(engine=engine, url=url)


def database_id(database: Database) -> str:
    """A random id made once per database, to recognise it whatever URL names it."""
    import secrets

    with database.engine.begin() as conn:
        found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "database_id")).scalar()
        if found is None:
            conn.execute(insert_ignoring_duplicates(conn, meta),
                         [{"key": "database_id", "value": secrets.token_hex(16)}])
            found = conn.execute(sa.select(meta.c.value)
                                 .where(meta.c.key == "database_id")).scalar_one()
    return found


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect: two processes may
    create the same row at once, and the second must not fail."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def describe_error(exc: BaseException) -> str:
    """What went wrong with the database, in one line, without the statement or its values.

    For a driver error that is the driver's own first line ("database or disk is full",
    "connection refused"); PostgreSQL's DETAIL lines, which can quote a row's values, are left
    out.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, sa.exc.SQLAlchemyError):
        text = type(exc).__name__
    else:
        text = str(exc) or type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def now() -> float:
    """Seconds since the epoch: every timestamp in the database is this."""
    return time.time()
