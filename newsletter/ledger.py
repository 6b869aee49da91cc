"""The send ledger: one row per (issue, recipient), written before anything is sent.

A row's life is told by its :class:`~newsletter.status.Status` (see ``newsletter/status.py``).

Claiming is one atomic ``UPDATE ... WHERE status IN (...) AND claimed_by = ''`` with a unique
claim token, then reading back the rows carrying that token: two ``send`` processes on one
issue never hold the same row, on SQLite (one writer at a time) or PostgreSQL (the second
UPDATE re-checks the WHERE clause on rows the first changed). A row left in ``sending`` by a
process that died becomes ``unknown`` and is sent again with the same Message-ID: the only
copies that can repeat are those in flight when the process died.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from newsletter import db
from newsletter.db import Database, deliveries, delivery_lists, recipients, suppressions
from newsletter.status import NOT_SENT, RETRYABLE, Status

if TYPE_CHECKING:
    from newsletter.audiences import SendPlan
    from newsletter.build import BuiltIssue

STATUSES = tuple(Status)
# Rows whose in-run retries are used up wait here until the next `send`.
NEXT_RUN = 1e15
DEFAULT_LEASE = 15 * 60.0


@dataclass(frozen=True)
class Claimed:
    """A ledger row held by one sender, with what the message needs."""

    recipient_id: int
    address: str
    name: str
    pseudonym: str
    message_id: str
    attempts: int
    previous_status: Status


@dataclass(frozen=True)
class Result:
    """What happened to one claimed row; ``status`` is what the row becomes."""

    recipient_id: int
    status: Status
    error: str | None = ""       # None: the row keeps its last error (it was not tried)
    provider_id: str = ""
    next_attempt_at: float = 0.0
    counts_as_attempt: bool = True
    # A failure the server or provider said is about the address (bounces.record_refusals).
    recipient_problem: bool = False


def new_pseudonym() -> str:
    """A recipient's random secret (``recipients.pseudonym``), never sent anywhere: each
    issue's pseudonym is derived from it (:meth:`Signer.pseudonym`)."""
    return secrets.token_urlsafe(12)


def message_id_for(slug: str, pseudonym: str, domain: str) -> str:
    """The Message-ID of ``slug`` to one recipient (``pseudonym`` is this issue's): written
    into the ledger with the row, so it is the same on every retry."""
    return f"<{slug}.{pseudonym}@{domain}>"


# --- issues and links --------------------------------------------------------------------


def register_issue(database: Database, built: BuiltIssue) -> None:
    """Store the issue and its links so the tracker can work from the database alone, and
    what it contains (:func:`fixed.record_content`), before its first ledger rows.

    Until the issue is sent (its first ledger row) this brings the stored issue up to date.
    Once it is sent, its subject, web version and links stay as they were sent: only
    ``newsletter amend`` (:func:`fixed.amend`) changes them, and it leaves a record.
    """
    from newsletter import fixed, outlets
    from newsletter.feedback import wording_json

    issue = built.issue
    t = db.now()
    values = {"subject": issue.subject, "tracking": issue.tracking, "opens": bool(issue.opens),
              "web_html": built.web_html, "updated_at": t,
              "feedback": wording_json(getattr(issue, "feedback", None))}
    with database.engine.begin() as conn:
        # Insert-or-ignore, then update: safe when two sends register the issue at once.
        conn.execute(db.insert_ignoring_duplicates(conn, db.issues),
                     [{"slug": issue.slug, "created_at": t, **values}])
        sent = conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(deliveries.c.issue == issue.slug)).scalar_one()
        if not sent:
            conn.execute(db.issues.update().where(db.issues.c.slug == issue.slug)
                         .values(**values))
            add_links(conn, issue.slug, built.links)
        fixed.record_content(conn, built)
        # The tracker counts the views of an outlet's link only once it knows the outlet.
        outlets.register(conn, getattr(built, "outlets", ()))


def add_links(conn: Connection, slug: str, links: Sequence) -> None:
    """Add ``links`` to the registry of ``slug``, updating those it has; never removing one:
    messages already sent may still point at them."""
    rows = [{"issue": slug, "link_id": link.id, "url": link.url, "text": link.text,
             "section": link.section, "kind": link.kind, "tracked": bool(link.tracked)}
            for link in links]
    if not rows:
        return
    conn.execute(db.insert_ignoring_duplicates(conn, db.links), rows)
    conn.execute(db.links.update()
                 .where(db.links.c.issue == sa.bindparam("b_issue"),
                        db.links.c.link_id == sa.bindparam("b_link"))
                 .values(url=sa.bindparam("b_url"), text=sa.bindparam("b_text"),
                         section=sa.bindparam("b_section"), kind=sa.bindparam("b_kind"),
                         tracked=sa.bindparam("b_tracked")),
                 [{"b_" + ("link" if k == "link_id" else k): v for k, v in r.items()}
                  for r in rows])


# --- the plan into the ledger ------------------------------------------------------------


def suppressed_addresses(database: Database) -> dict[str, str]:
    """Every suppressed address and why (unsubscribed, hard-bounced...)."""
    with database.engine.connect() as conn:
        return {row.address: row.reason for row in conn.execute(
            sa.select(suppressions.c.address, suppressions.c.reason))}


PLAN_CHUNK = 1000


def _known(conn: Connection, addresses: list[str]) -> dict[str, tuple]:
    return {row.address: (row.id, row.pseudonym, row.name, row.organisation)
            for row in conn.execute(
                sa.select(recipients.c.id, recipients.c.address, recipients.c.pseudonym,
                          recipients.c.name, recipients.c.organisation)
                .where(recipients.c.address.in_(addresses)))}


def write_plan(database: Database, slug: str, plan: SendPlan, domain: str,
               pseudonym: Callable[[str, str], str]) -> int:
    """Write one ``pending`` row per planned recipient that has none yet; return how many.

    Each row gets the recipient's pseudonym for this issue, ``pseudonym(slug, secret)``, and
    the Message-ID made from it. Existing rows are left as they are: a second run resumes, it
    never starts over. Work goes in chunks so memory stays flat however long the lists are.
    """
    t = db.now()
    count = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.issue == slug)
    with database.engine.connect() as conn:
        before = conn.execute(count).scalar_one()
    for start in range(0, len(plan.recipients), PLAN_CHUNK):
        chunk = plan.recipients[start:start + PLAN_CHUNK]
        addresses = [r.address for r in chunk]
        with database.engine.begin() as conn:
            known = _known(conn, addresses)
            new = [{"address": r.address, "pseudonym": new_pseudonym(), "name": r.name,
                    "organisation": r.organisation, "domain": r.address.rpartition("@")[2],
                    "created_at": t}
                   for r in chunk if r.address not in known]
            if new:
                conn.execute(db.insert_ignoring_duplicates(conn, recipients), new)
                known = _known(conn, addresses)
            changed = [{"rid": known[r.address][0], "new_name": r.name,
                        "new_org": r.organisation}
                       for r in chunk if known[r.address][2:] != (r.name, r.organisation)]
            if changed:
                conn.execute(recipients.update().where(recipients.c.id == sa.bindparam("rid"))
                             .values(name=sa.bindparam("new_name"),
                                     organisation=sa.bindparam("new_org")), changed)
            rows = []
            for r in chunk:
                rid, secret = known[r.address][:2]
                name = pseudonym(slug, secret)
                rows.append({"issue": slug, "recipient_id": rid, "status": Status.PENDING,
                             "pseudonym": name, "message_id": message_id_for(slug, name, domain),
                             "updated_at": t})
            conn.execute(db.insert_ignoring_duplicates(conn, deliveries), rows)
            conn.execute(db.insert_ignoring_duplicates(conn, delivery_lists), [
                {"issue": slug, "recipient_id": known[r.address][0], "list_key": key}
                for r in chunk for key in r.lists])
    with database.engine.connect() as conn:
        return conn.execute(count).scalar_one() - before


def lists_of(database: Database, slug: str, recipient_ids: Sequence[int]) -> dict[int, list[str]]:
    """The lists through which each of ``recipient_ids`` was reached for ``slug``."""
    found: dict[int, list[str]] = {}
    with database.engine.connect() as conn:
        for rid, key in conn.execute(_LISTS_OF, {"slug": slug, "ids": list(recipient_ids)}):
            found.setdefault(rid, []).append(key)
    return found


# --- claiming and recording --------------------------------------------------------------


def worker_token() -> str:
    """A claim token naming this host and process, so a dead claimant can be recognised."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"


def _not_suppressed() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(recipients.c.id == deliveries.c.recipient_id,
                              suppressions.c.address == recipients.c.address)


# The statements a send runs per batch are built once: building SQLAlchemy statements per
# call cost more CPU than running them.
_d = deliveries
_CLAIM_CANDIDATES = (
    sa.select(_d.c.recipient_id, recipients.c.address, recipients.c.name, _d.c.pseudonym)
    .join(recipients, recipients.c.id == _d.c.recipient_id)
    .where(_d.c.issue == sa.bindparam("slug"),
           _d.c.status.in_(sa.bindparam("statuses", expanding=True)),
           _d.c.claimed_by == "", _d.c.next_attempt_at <= sa.bindparam("now"),
           ~sa.exists().where(recipients.c.id == _d.c.recipient_id,
                              suppressions.c.address == recipients.c.address))
    .limit(sa.bindparam("limit"))
    # PostgreSQL: two senders' UPDATEs of overlapping candidates could lock rows in opposite
    # orders and deadlock; each now locks its candidates here and skips the other's
    # (SQLite ignores this: a write transaction there is already exclusive).
    .with_for_update(of=_d, skip_locked=True))
# "status NOT IN (the others)" says the same as "status IN (statuses)" over the closed set of
# statuses, but keeps SQLite on the primary key instead of scanning every pending row through
# the status index (which made each claim cost O(rows)).
_CLAIM_TAKE = (
    _d.update()
    .where(_d.c.issue == sa.bindparam("slug"),
           _d.c.recipient_id.in_(sa.bindparam("ids", expanding=True)),
           _d.c.status.not_in(sa.bindparam("others", expanding=True)), _d.c.claimed_by == "")
    .values(previous_status=_d.c.status, status=Status.SENDING, claimed_by=sa.bindparam("token"),
            claimed_at=sa.bindparam("now"), updated_at=sa.bindparam("now"))
    .returning(_d.c.recipient_id, _d.c.message_id, _d.c.attempts, _d.c.previous_status))
_RECORD = (
    _d.update()
    .where(_d.c.issue == sa.bindparam("slug"), _d.c.recipient_id == sa.bindparam("rid"),
           _d.c.claimed_by == sa.bindparam("token"))
    .values(status=sa.bindparam("new_status"), attempts=_d.c.attempts + sa.bindparam("inc"),
            # An untried row (error None) keeps the error of its last real attempt.
            last_error=sa.case((sa.bindparam("keep", type_=sa.Boolean), _d.c.last_error),
                               else_=sa.bindparam("error")),
            provider_message_id=sa.bindparam("pid"),
            next_attempt_at=sa.bindparam("due"), sent_at=sa.bindparam("sent"),
            repeat_possible=sa.or_(_d.c.repeat_possible,
                                   sa.bindparam("unanswered", type_=sa.Boolean)),
            claimed_by="", claimed_at=0, updated_at=sa.bindparam("now")))
_LISTS_OF = (
    sa.select(delivery_lists.c.recipient_id, delivery_lists.c.list_key)
    .where(delivery_lists.c.issue == sa.bindparam("slug"),
           delivery_lists.c.recipient_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(delivery_lists.c.list_key))


def claim(database: Database, slug: str, token: str, limit: int,
          statuses: Sequence[str] = RETRYABLE) -> list[Claimed]:
    """Atomically take up to ``limit`` due rows in ``statuses`` for the claim ``token``.

    Candidates are read first, then taken by one conditional ``UPDATE ... RETURNING``; a row
    another sender took in between no longer matches and is simply not returned. Both steps
    use the primary key, so a claim costs the same at row 100 and at row 100,000.
    """
    t = db.now()
    with database.engine.begin() as conn:
        candidates = {row.recipient_id: row for row in conn.execute(
            _CLAIM_CANDIDATES, {"slug": slug, "statuses": list(statuses), "now": t,
                                "limit": limit})}
        if not candidates:
            return []
        won = conn.execute(_CLAIM_TAKE, {
            "slug": slug, "ids": list(candidates), "token": token, "now": t,
            "others": [status for status in STATUSES if status not in statuses]}).all()
    claimed = []
    for r in sorted(won, key=lambda row: row.recipient_id):
        who = candidates[r.recipient_id]
        claimed.append(Claimed(r.recipient_id, who.address, who.name, who.pseudonym,
                               r.message_id, r.attempts, Status(r.previous_status)))
    return claimed


def record(database: Database, slug: str, token: str, results: Iterable[Result]) -> None:
    """Write what happened to claimed rows, and let go of them."""
    t = db.now()
    params = [{"slug": slug, "token": token, "now": t, "rid": r.recipient_id,
               "new_status": r.status, "error": (r.error or "")[:2000],
               "keep": r.error is None, "pid": r.provider_id[:255],
               "due": r.next_attempt_at, "inc": 1 if r.counts_as_attempt else 0,
               "sent": t if r.status == Status.SENT else None,
               "unanswered": r.status == Status.UNKNOWN} for r in results]
    if not params:
        return
    with database.engine.begin() as conn:
        conn.execute(_RECORD, params)


def release(database: Database, slug: str, token: str,
            recipient_ids: Iterable[int] | None = None) -> int:
    """Give back rows claimed with ``token`` but never tried (all of them, or just
    ``recipient_ids``), restoring their status."""
    d = deliveries
    only = [] if recipient_ids is None else [d.c.recipient_id.in_(list(recipient_ids))]
    with database.engine.begin() as conn:
        result = conn.execute(d.update()
                              .where(d.c.issue == slug, d.c.claimed_by == token,
                                     d.c.status == Status.SENDING, *only)
                              .values(status=d.c.previous_status, claimed_by="", claimed_at=0,
                                      updated_at=db.now()))
    return result.rowcount


def claimed_by(database: Database, slug: str, token: str) -> set[int]:
    """The rows of ``slug`` still claimed with ``token``."""
    d = deliveries
    with database.engine.connect() as conn:
        return set(conn.execute(sa.select(d.c.recipient_id)
                                .where(d.c.issue == slug, d.c.claimed_by == token,
                                       d.c.status == Status.SENDING)).scalars())


def mark_in_flight(database: Database, slug: str, token: str, recipient_ids: Iterable[int]) -> None:
    """Rows whose message was handed over when the sender died, before an answer came: they
    become ``unknown``, to be sent again with the same Message-ID (the only possible repeats)."""
    ids = list(recipient_ids)
    if not ids:
        return
    d = deliveries
    with database.engine.begin() as conn:
        conn.execute(d.update()
                     .where(d.c.issue == slug, d.c.claimed_by == token,
                            d.c.status == Status.SENDING, d.c.recipient_id.in_(ids))
                     .values(status=Status.UNKNOWN, attempts=d.c.attempts + 1,
                             repeat_possible=True,
                             last_error="the sender stopped after handing this message over, "
                             "before the answer was recorded; it may have been delivered",
                             claimed_by="", claimed_at=0, next_attempt_at=0,
                             updated_at=db.now()))


def _claimant_is_dead(token: str) -> bool:
    host, _, rest = token.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:30] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_stale(database: Database, slug: str, lease: float = DEFAULT_LEASE) -> int:
    """Rows left in ``sending`` by a dead process (or past the lease) become ``unknown``.

    Their message may or may not have reached the server, so they are sent again with the
    same Message-ID; receiving systems and people can recognise the repeat.
    """
    d = deliveries
    t = db.now()
    with database.engine.begin() as conn:
        tokens = [row[0] for row in conn.execute(
            sa.select(d.c.claimed_by).where(d.c.issue == slug, d.c.status == Status.SENDING)
            .distinct())]
        dead = [tok for tok in tokens if _claimant_is_dead(tok)]
        stale = sa.or_(d.c.claimed_at < t - lease, d.c.claimed_by.in_(dead))
        result = conn.execute(d.update()
                              .where(d.c.issue == slug, d.c.status == Status.SENDING, stale)
                              .values(status=Status.UNKNOWN, attempts=d.c.attempts + 1,
                                      repeat_possible=True,
                                      last_error="the sender stopped before recording the "
                                      "server's answer; it may have been delivered",
                                      claimed_by="", claimed_at=0, next_attempt_at=0,
                                      updated_at=t))
    return result.rowcount


def make_due(database: Database, slug: str, statuses: Sequence[str]) -> None:
    """At the start of a run, rows waiting for a retry may be tried at once."""
    d = deliveries
    with database.engine.begin() as conn:
        conn.execute(d.update().where(d.c.issue == slug, d.c.status.in_(statuses),
                                      d.c.next_attempt_at > 0)
                     .values(next_attempt_at=0))


def next_due(database: Database, slug: str, statuses: Sequence[str]) -> float | None:
    """When the next row waiting for a retry in this run becomes due, or None."""
    d = deliveries
    with database.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.min(d.c.next_attempt_at))
                            .where(d.c.issue == slug, d.c.status.in_(statuses),
                                   d.c.claimed_by == "", d.c.next_attempt_at < NEXT_RUN,
                                   _not_suppressed())).scalar_one_or_none()


SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class LedgerCounts(Mapping[str, int]):
    """An issue's rows per :class:`Status`, and ``suppressed`` apart.

    A row whose address has been suppressed (unsubscribed, bounced) since it was planned will
    not be sent, whatever its status says: unless it is already sent, it is counted under
    ``suppressed`` only. Read as a mapping, the keys are the statuses then ``"suppressed"``.
    """

    statuses: Mapping[Status, int] = field(default_factory=dict)
    suppressed: int = 0

    def __getitem__(self, key: str) -> int:
        if key == SUPPRESSED:
            return self.suppressed
        return self.statuses.get(Status(key), 0)

    def __iter__(self) -> Iterator[str]:
        yield from Status
        yield SUPPRESSED

    def __len__(self) -> int:
        return len(Status) + 1

    def of(self, statuses: Iterable[Status]) -> int:
        """How many rows are in any of ``statuses``."""
        return sum(self[status] for status in statuses)

    @property
    def unfinished(self) -> int:
        """Rows that are not sent (and not suppressed): a send has work left."""
        return self.of(s for s in Status if s != Status.SENT)


def status_counts(database: Database, slug: str) -> LedgerCounts:
    """Rows of ``slug`` per status; unsent rows of suppressed addresses count as suppressed."""
    d = deliveries
    with database.engine.connect() as conn:
        statuses = {Status(status): n for status, n in conn.execute(
            sa.select(d.c.status, sa.func.count())
            .where(d.c.issue == slug, _not_suppressed()).group_by(d.c.status))}
        suppressed = conn.execute(
            sa.select(sa.func.count()).select_from(d)
            .where(d.c.issue == slug, d.c.status != Status.SENT, ~_not_suppressed())).scalar_one()
    return LedgerCounts(statuses, suppressed)


def possible_repeats(database: Database, slug: str) -> int:
    """Recipients sent after an earlier attempt went unanswered: they may have two copies
    (both with the same Message-ID, so mail systems and people can recognise the second)."""
    d = deliveries
    with database.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(d).where(
            d.c.issue == slug, d.c.status == Status.SENT, d.c.repeat_possible)).scalar_one()


def failures(database: Database, slug: str, limit: int = 20) -> list[tuple[str, str, str]]:
    """Up to ``limit`` (address, status, last error) of rows not sent, for the final summary."""
    d = deliveries
    with database.engine.connect() as conn:
        return [(r.address, r.status, r.last_error) for r in conn.execute(
            sa.select(recipients.c.address, d.c.status, d.c.last_error)
            .join(recipients, recipients.c.id == d.c.recipient_id)
            .where(d.c.issue == slug, d.c.status.in_(NOT_SENT),
                   _not_suppressed())
            .order_by(recipients.c.address).limit(limit))]


def mark_delivered(conn: Connection, issue: str, address: str, at: float) -> bool:
    """Note that ``issue``'s message reached ``address``'s server at ``at`` (a provider's
    "delivered" event, a DSN). Keeps the earliest time reported; returns whether the row
    changed. The tracker's timing rules measure from this rather than from ``sent_at``."""
    d = deliveries
    recipient = sa.select(recipients.c.id).where(recipients.c.address == address)
    done = conn.execute(d.update()
                        .where(d.c.issue == issue, d.c.recipient_id == recipient.scalar_subquery(),
                               sa.or_(d.c.delivered_at.is_(None), d.c.delivered_at > at))
                        .values(delivered_at=at))
    return bool(done.rowcount)
