"""Send an issue: plan -> ledger -> adapter.

:func:`prepare` does everything that can fail on bad input before anything is written or
sent: it builds the issue, validates the audiences, plans the recipients, opens the database
and checks the adapter's settings. :func:`run` then writes the plan into the ledger (one row
per recipient before anything is sent), registers the issue and its links for the tracker,
and lets the adapter loop work through the rows. Running it again resumes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from newsletter import fixed, ledger, publish, send_journal
from newsletter.adapters.base import Adapter, AdapterSettings, load_adapter
from newsletter.audiences import SendPlan, load_audiences, normalise_address, plan_send
from newsletter.db import Database, open_db, patiently, storage_error
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.ledger import Claimed, LedgerCounts, Result
from newsletter.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.project import Project
from newsletter.reachable import delivers_beyond_this_machine, public_url_problems
from newsletter.send_journal import AnswerJournal
from newsletter.sendloop import LoopOptions, SendLoop, Tally
from newsletter.status import RETRYABLE, Status
from newsletter.tracking.tokens import Signer, signer_for

if TYPE_CHECKING:
    from newsletter.build import BuiltIssue

DEFAULT_ADAPTER = "maildir"
_T = TypeVar("_T")


def _build(path: Path, project: Project) -> BuiltIssue:
    from newsletter.build import build_issue

    return build_issue(path, project, tracked=True)


def adapter_name(option: str | None, env: Mapping[str, str]) -> str:
    """``--adapter``, then ``NEWSLETTER_ADAPTER``, then maildir."""
    return option or env.get("NEWSLETTER_ADAPTER", "").strip() or DEFAULT_ADAPTER


@dataclass
class Prepared:
    """A validated send, nothing written yet."""

    project: Project
    built: BuiltIssue
    list_names: dict[str, str]
    plan: SendPlan | None
    database: Database
    adapter_cls: type[Adapter]
    settings: AdapterSettings
    adapter_description: str
    statuses: tuple[Status, ...] = RETRYABLE
    adapter_notes: list[str] = field(default_factory=list)   # what the adapter could not check

    @property
    def slug(self) -> str:
        return self.built.issue.slug

    def signer(self) -> Signer:
        """The signer for this project's tokens (its key setting, else the database's key)."""
        return signer_for(self.database, self.project.settings.secret_key)

    def close(self) -> None:
        self.database.close()


def prepare(project: Project, issue: str, lists: tuple[str, ...], *,
            adapter: str | None = None, db_url: str | None = None, create_db: bool = False,
            maildir: Path | None = None,
            concurrency: int = 1, resend_failed: bool = False, test: bool = False,
            env: Mapping[str, str] | None = None,
            allow_local_tracking: bool = False) -> Prepared:
    """Validate the whole send (issue, lists, adapter settings) and open the database.

    An adapter that delivers beyond this machine needs a tracking URL (and assets URL)
    recipients can reach; ``allow_local_tracking`` lets a test send through a local one.
    """
    env = project.settings.env if env is None else env
    if concurrency < 1:
        raise NewsletterError("--concurrency must be at least 1")
    built = _build(project.issue_path(issue), project)
    audiences = plan = None
    list_names: dict[str, str] = {}
    if lists or not test:
        audiences = load_audiences(project.audiences_path)
        for key in lists:                 # unknown lists fail here, before the database opens
            audiences.get(key)
        if not test and not any(audiences.lists[key].members for key in lists):
            raise _nobody(lists, "no members")
    name = adapter_name(adapter, env)
    cls = load_adapter(name)
    settings = AdapterSettings(root=project.root, env=env, maildir=maildir,
                               concurrency=concurrency, domain=project.settings.list_id_domain)
    cls.check_settings(settings)
    adapter_ = cls(settings)
    description = adapter_.describe()
    try:
        notes = adapter_.preflight()
    finally:
        adapter_.close()
    local_note: list[str] = []
    if delivers_beyond_this_machine(name):
        if not allow_local_tracking:
            require_public_addresses(project, name)
        elif public_url_problems(project.settings.tracking_url):
            local_note = [f"warning: --allow-local-tracking: links point at "
                          f"{project.settings.tracking_url}, which recipients cannot reach"]
    publish.require_images_online(built)
    database = open_db(project.db_url(db_url, create=create_db),
                       patience=project.settings.db_wait)
    try:
        fixed.check_unchanged(database, built, "nothing sent")
        if audiences is not None:
            plan = plan_send(audiences, lists, ledger.suppressed_addresses(database))
            if not test and not plan.recipients:
                raise _nobody(lists, "only suppressed members (unsubscribed or bounced)")
            list_names = {key: audiences.lists[key].name for key in plan.list_keys}
            audiences = None      # the plan holds what is needed; let the members go
    except BaseException:
        database.close()
        raise
    statuses = RETRYABLE + ((Status.FAILED,) if resend_failed else ())
    return Prepared(project, built, list_names, plan, database, cls, settings, description,
                    statuses, local_note + notes)


def require_public_addresses(project: Project, adapter: str) -> None:
    """Refuse a real send whose links, images or unsubscribe recipients could not reach."""
    settings = project.settings
    checks = [("tracking URL", settings.tracking_url, True,
               "set tracking_url in newsletter.yaml (or NEWSLETTER_TRACKING_URL) to the "
               "tracker's public https:// address, e.g. https://news.example.org "
               "(docs/deploy.md)")]
    if settings.assets_url:
        checks.append(("assets_url", settings.assets_url, True,
                       "set assets_url in newsletter.yaml to the CDN's public https:// folder, "
                       "or remove it to let the tracker serve the images"))
    for what, url, https, fix in checks:
        problems = public_url_problems(url, needs_https=https)
        if problems:
            raise ConfigurationError(
                f"the {what} {url} cannot be used for a real send with the {adapter} adapter: "
                + "; ".join(problems)
                + ". Every link, image and unsubscribe link in the messages would point there",
                hint=fix + "; --allow-local-tracking sends anyway (for tests only)")


def _nobody(lists: tuple[str, ...], why: str) -> NewsletterError:
    named = ", ".join(repr(key) for key in lists)
    return NewsletterError(f"nothing to send: {'list' if len(lists) == 1 else 'lists'} {named} "
                           f"{'has' if len(lists) == 1 else 'have'} {why}",
                           hint="add members in audiences.yaml or its members files, and check "
                           "them with `newsletter audiences check`; nothing was sent")


# Adapters whose bounces never come back to the envelope sender: a local folder, and the
# providers, which report bounces through their webhooks (POST /hooks/...).
_NO_BOUNCE_MAILBOX = ("maildir", "mailgun", "postmark", "sendgrid")


def _bounce_warning(prepared: Prepared) -> list[str]:
    """What is lost when bounce_address is not set, for adapters that send over SMTP."""
    if prepared.project.settings.bounce_address or \
            prepared.adapter_cls.name in _NO_BOUNCE_MAILBOX:
        return []
    sender = prepared.built.issue.sender.email
    return [f"warning: bounce_address is not set: bounces and out-of-office replies go to "
            f"{sender}, and a bounce that comes back later cannot be matched to its issue "
            "and recipient, so dead addresses stay on the lists\n"
            "    hint: set bounce_address in newsletter.yaml to a mailbox of its own (e.g. "
            "bounces@news.example.org) and run `newsletter bounces fetch` after each send"]


def _suppressed_reasons(database: Database, addresses: list[str]) -> str:
    """`` (bounced-hard 2, unsubscribed 1)`` for the suppressed members of the plan."""
    if not addresses:
        return ""
    from collections import Counter

    from newsletter import suppressions

    reasons = Counter(s.reason for s in suppressions.all_suppressions(database,
                                                                      addresses=addresses))
    return " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) + ")"


def summary(prepared: Prepared) -> list[str]:
    """What is about to happen, for the confirmation question."""
    issue = prepared.built.issue
    lines = [f"Issue:    {issue.slug}",
             f"Subject:  {issue.subject}",
             f"From:     {issue.sender.name} <{issue.sender.email}>",
             f"Adapter:  {prepared.adapter_description}"]
    plan = prepared.plan
    if plan is not None:
        lines.append("Lists:")
        for key in plan.list_keys:
            name = prepared.list_names.get(key, key)
            lines.append(f"  {key:<28} {plan.list_sizes[key]:>6}  {name}")
        lines.append(f"Recipients: {len(plan.recipients)} (on more than one list: "
                     f"{plan.duplicates}; suppressed: {len(plan.suppressed)}"
                     f"{_suppressed_reasons(prepared.database, plan.suppressed)})")
    counts = ledger.status_counts(prepared.database, prepared.slug)
    if any(counts.values()):
        lines.append("Already in the ledger: " + ", ".join(
            f"{status} {n}" for status, n in counts.items() if n)
            + " (this send resumes; nobody gets a second copy)")
    lines += prepared.adapter_notes
    lines += _bounce_warning(prepared)
    for warning in prepared.built.warnings:
        lines.append(warning.format())
    images = prepared.built.email_images
    if images:
        where = prepared.built.assets_url or f"{prepared.built.tracking_url}/a/"
        lines.append(f"Images:   {len(images)}, published with the issue at {where}")
    return lines


class LedgerQueue:
    """The ledger as the send loop's work queue."""

    def __init__(self, prepared: Prepared, factory: MessageFactory,
                 list_order: tuple[str, ...], journal: AnswerJournal | None = None) -> None:
        self.database = prepared.database
        self.slug = prepared.slug
        self.journal = journal
        self.patience = prepared.project.settings.db_wait
        self.unrecorded = False         # an answer could not be written to the ledger
        self._journal_trouble = ""
        self.statuses = prepared.statuses
        self.factory = factory
        self.aggregate = factory.tracking == "aggregate"
        self.order = {key: i for i, key in enumerate(list_order)}
        self._first_list: dict[int, str] = {}
        self._addresses: dict[int, str] = {}
        self.soft_bounce_limit = prepared.project.settings.soft_bounce_limit
        self._base = ledger.worker_token()
        self._count = 0
        self._lock = threading.Lock()

    def new_token(self) -> str:
        with self._lock:
            self._count += 1
            return f"{self._base}:{self._count}"

    def claim(self, token: str, limit: int) -> list[Claimed]:
        self._journal(lambda j: j.claimed(token, self.slug))
        rows = self._patiently(lambda: ledger.claim(self.database, self.slug, token, limit,
                                                    self.statuses), "claim rows")
        with self._lock:
            # Kept while a row is in flight, so a refusal can be recorded against its address.
            if len(self._addresses) > 100_000:
                self._addresses.clear()
            self._addresses.update((r.recipient_id, r.address) for r in rows)
        if rows and self.aggregate:
            # Aggregate tracking credits the first list, in --to order, that reached them.
            late = len(self.order)
            for rid, keys in ledger.lists_of(self.database, self.slug,
                                             [r.recipient_id for r in rows]).items():
                self._first_list[rid] = min(keys, key=lambda k: (self.order.get(k, late), k))
        return rows

    def trying(self, token: str, rows: Sequence[Claimed]) -> None:
        self._journal(lambda j: j.trying(token, [r.recipient_id for r in rows]))

    def answered(self, token: str, results: list[Result]) -> None:
        if not self._journal(lambda j: j.answered(token, results)):
            # No journal to keep them: they go to the ledger now, one transaction per batch.
            self._record(token, results)

    def record(self, token: str, results: list[Result]) -> None:
        self._record(token, results)
        refused = [(self._addresses.get(r.recipient_id, ""), r.error or "") for r in results
                   if r.status == Status.FAILED and r.recipient_problem]
        if refused:
            from newsletter.bounces.record import record_refusals

            record_refusals(self.database, self.slug, refused, self.soft_bounce_limit)

    def release(self, token: str, rows: Sequence[Claimed]) -> None:
        """Give back rows never tried, as they were. Called when the run stops with an error:
        failing to give them back is not a second error (the journal says they were not tried,
        and the next `send` gives them back)."""
        if not rows:
            return
        untried = [Result(r.recipient_id, r.previous_status or Status.PENDING, None,
                          counts_as_attempt=False) for r in rows]
        self._journal(lambda j: j.answered(token, untried))
        try:
            self._patiently(lambda: ledger.release(self.database, self.slug, token,
                                                   [r.recipient_id for r in rows]),
                            "give back rows not tried")
        except NewsletterError:
            self.unrecorded = True

    def _record(self, token: str, results: list[Result]) -> None:
        try:
            self._patiently(lambda: ledger.record(self.database, self.slug, token, results),
                            "record answers")
        except NewsletterError:
            self.unrecorded = True
            raise

    def _patiently(self, action: Callable[[], _T], doing: str) -> _T:
        """``action`` against the database, waited out for up to NEWSLETTER_DB_WAIT seconds
        while the database is down, locked or full; then a message saying send resumes."""
        try:
            return patiently(action, patience=self.patience, doing=doing)
        except sa.exc.SQLAlchemyError as exc:
            kept = (f"; the answers not yet recorded are kept in {self.journal.folder} and "
                    "recorded by the next `newsletter send`" if self.journal else "")
            error = storage_error(exc, resumes="newsletter send")
            error.hint += kept
            raise error from exc

    def _journal(self, write: Callable[[AnswerJournal], None]) -> bool:
        """Write to the journal; False (said once on stderr) when it cannot be written."""
        if self.journal is None:
            return False
        try:
            write(self.journal)
        except OSError as exc:
            text = exc.strerror or str(exc)
            if text != self._journal_trouble:
                self._journal_trouble = text
                print(f"send: cannot write the journal in {self.journal.folder} ({text}); "
                      "answers go straight to the ledger instead, more slowly",
                      file=sys.stderr, flush=True)
            return False
        return True

    def next_due(self) -> float | None:
        return ledger.next_due(self.database, self.slug, self.statuses)

    def render(self, row: Claimed) -> OutgoingMessage:
        return self.factory.make(Recipient(row.address, row.name, row.pseudonym, row.message_id,
                                           self._first_list.pop(row.recipient_id, ""),
                                           row.recipient_id))


@dataclass
class RunResult:
    """How a run ended, from the ledger's point of view."""

    counts: LedgerCounts
    tally: Tally
    stopped_by: NewsletterError | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    possible_repeats: int = 0        # sent after an unanswered attempt: may have two copies
    # Addresses a server refused during this run and that are now suppressed: (address,
    # reason, the server's words).
    bounced: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every planned recipient is sent."""
        return self.counts.unfinished == 0


def run(prepared: Prepared, options: LoopOptions, *,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[Tally, int], None] | None = None,
        on_waiting: Callable[[int], None] | None = None,
        on_replayed: Callable[[send_journal.Replayed], None] | None = None,
        lease: float = ledger.DEFAULT_LEASE) -> RunResult:
    """Write the plan into the ledger, then send every due row; resumable."""
    started = time.time()
    db = prepared.database
    slug = prepared.slug
    ledger.register_issue(db, prepared.built)
    signer = prepared.signer()
    publish.publish_issue(db, prepared.built)
    list_order: tuple[str, ...] = ()
    if prepared.plan is not None:
        list_order = prepared.plan.list_keys
        ledger.write_plan(db, slug, prepared.plan, prepared.project.list_id_domain,
                          signer.pseudonym)
        # From here the ledger is the truth; let the plan's memory go before sending.
        prepared.plan = None
    # A `send` that died left its answers in its journal: into the ledger first, so only the
    # messages it was handing over when it died are sent again (and just those, this run).
    folder = journal_folder(prepared.project)
    replayed = send_journal.replay(db, folder)
    if replayed and on_replayed:
        on_replayed(replayed)
    ledger.recover_stale(db, slug, lease)
    ledger.make_due(db, slug, prepared.statuses)
    counts = ledger.status_counts(db, slug)
    todo = counts.of(prepared.statuses)
    if on_start:
        on_start(todo)
    factory = MessageFactory(prepared.built, prepared.project, signer)
    _small_sqlite_cache(db)
    _fewer_malloc_arenas(prepared.project.settings.malloc_arena_max_set)
    answers = AnswerJournal(folder, db)
    journal: AnswerJournal | None = answers
    try:
        answers.open()
    except OSError as exc:
        # Not a reason to refuse to send: each answer then goes straight to the ledger.
        print(f"send: cannot write the journal in {folder} ({exc.strerror or exc}); answers go "
              "straight to the ledger instead, more slowly", file=sys.stderr, flush=True)
        journal = None
    queue = LedgerQueue(prepared, factory, list_order, journal)
    loop = SendLoop(queue, lambda: prepared.adapter_cls(prepared.settings), options,
                    total=todo, on_progress=on_progress)
    stopped: NewsletterError | None = None
    try:
        tally = loop.run()
    except NewsletterError as exc:
        stopped = exc
        tally = loop.tally
    finally:
        if journal is not None:
            journal.close(everything_recorded=not queue.unrecorded)
    if queue.unrecorded and stopped is not None:
        raise stopped       # the database failed: the message says what, and that send resumes
    counts = ledger.status_counts(db, slug)
    if stopped is None and counts[Status.SENDING]:
        # Another `send` on this issue still holds rows: wait for its answers (or for it to
        # die, when its rows become unknown) so the summary and exit code tell the truth.
        if on_waiting:
            on_waiting(counts[Status.SENDING])
        while counts[Status.SENDING]:
            time.sleep(0.2)
            ledger.recover_stale(db, slug, lease)
            counts = ledger.status_counts(db, slug)
    return RunResult(counts, tally, stopped, ledger.failures(db, slug),
                     ledger.possible_repeats(db, slug),
                     bounced=_bounced_during(db, slug, started))


def journal_folder(project: Project) -> Path:
    """Where `send` keeps its journal of answers: ``send-journal/`` in the project."""
    return project.root / "send-journal"


def _bounced_during(database: Database, slug: str, since: float) -> list[tuple[str, str, str]]:
    """Addresses suppressed by refusals at send time during this run."""
    from newsletter import suppressions

    return [(s.address, s.reason, s.detail) for s in suppressions.all_suppressions(
        database, since=since) if s.source == "send" and s.issue == slug]


def _small_sqlite_cache(database: Database) -> None:
    """Give the send loop's SQLite connections a 1 MB page cache instead of 2 MB each.

    Each worker reads every row once, so a bigger cache buys nothing; with four connections
    it was a tenth of the peak memory of a 100,000-recipient send.
    """
    if not database.is_sqlite:
        return
    import sqlalchemy as sa

    def small_cache(connection: Any, _record: object) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA cache_size=-1024")
        cursor.close()

    sa.event.listen(database.engine, "connect", small_cache)
    database.engine.dispose()   # pooled connections reopen with the small cache


def _fewer_malloc_arenas(chosen_by_user: bool) -> None:
    """Let the sending threads share two glibc malloc arenas instead of one each.

    Every message is a 50 KB buffer made and freed by a worker thread; with an arena per
    thread the freed space sat fragmented in four arenas (about 8 MB at 100,000 recipients).
    Same as MALLOC_ARENA_MAX=2; a no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    if chosen_by_user:
        return      # the person running it chose
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, 2)     # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class SingleCopyQueue:
    """One test copy as the send loop's work queue: nothing goes into the ledger.

    It is tried once, through the same loop (pacing, classification, stopping) as a real send.
    """

    def __init__(self, factory: MessageFactory, row: Claimed, list_key: str) -> None:
        self.factory = factory
        self.row = row
        self.list_key = list_key
        self.results: list[Result] = []
        self._given = False

    def new_token(self) -> str:
        return "test"

    def claim(self, token: str, limit: int) -> list[Claimed]:
        if self._given:
            return []
        self._given = True
        return [self.row]

    def trying(self, token: str, rows: Sequence[Claimed]) -> None:
        """A test copy is in no ledger: nothing to keep."""

    def answered(self, token: str, results: list[Result]) -> None:
        """Kept by :meth:`record`."""

    def record(self, token: str, results: list[Result]) -> None:
        self.results += results

    def release(self, token: str, rows: Sequence[Claimed]) -> None:
        """Nothing to give back: the test copy is in no ledger."""

    def next_due(self) -> float | None:
        return None

    def render(self, row: Claimed) -> OutgoingMessage:
        return self.factory.make(Recipient(row.address, row.name, row.pseudonym,
                                           row.message_id, self.list_key))


def send_test(prepared: Prepared, address: str) -> tuple[str, str]:
    """Send one copy marked as a test to ``address``; record no delivery. Returns (id, where)."""
    normalised, why = normalise_address(address)
    if not normalised:
        raise NewsletterError(f"--test {address!r} is not a valid email address: {why}")
    ledger.register_issue(prepared.database, prepared.built)
    publish.publish_issue(prepared.database, prepared.built)
    factory = MessageFactory(prepared.built, prepared.project, prepared.signer(),
                             test=True)
    slug = prepared.slug
    first = prepared.plan.list_keys[0] if prepared.plan else "test"
    # A pseudonym no delivery has: the test copy's links work, its unsubscribe link does not.
    pseudonym = "test-" + _nonce()
    message_id = ledger.message_id_for(slug, pseudonym, prepared.project.list_id_domain)
    row = Claimed(0, normalised, "", pseudonym, message_id, 0, Status.PENDING)
    queue = SingleCopyQueue(factory, row, first)
    # One try: a test copy that is deferred is reported, not retried in the background.
    options = LoopOptions(concurrency=1, tries_per_run=1, pause_after=0)
    SendLoop(queue, lambda: prepared.adapter_cls(prepared.settings), options).run()
    (result,) = queue.results
    if result.status != Status.SENT:
        raise NewsletterError(f"the test message to {normalised} was not sent "
                              f"({_what_happened(result)}): {result.error}")
    return result.provider_id, prepared.adapter_description


def _what_happened(result: Result) -> str:
    return str(result.status) if result.counts_as_attempt else "rate limited"


def _nonce() -> str:
    import secrets

    return secrets.token_hex(4)


def dry_run(prepared: Prepared) -> int:
    """Make every planned recipient's message (with stand-in pseudonyms) and check it.

    Nothing is written to the ledger and nothing is sent.
    """
    from newsletter.message import PLACEHOLDER_RE

    factory = MessageFactory(prepared.built, prepared.project, prepared.signer())
    plan = prepared.plan
    count = 0
    for index, r in enumerate(plan.recipients if plan else []):
        pseudonym = f"dry-run-{index}"
        message = factory.make(Recipient(r.address, r.name, pseudonym,
                                         ledger.message_id_for(prepared.slug, pseudonym,
                                                               prepared.project.list_id_domain),
                                         r.lists[0]))
        data = message.mime
        if PLACEHOLDER_RE.search(message.html) or PLACEHOLDER_RE.search(message.text):
            raise NewsletterError(f"a placeholder was left unfilled in the message to {r.address}")
        if not data:
            raise NewsletterError(f"the message to {r.address} is empty")
        count += 1
    return count
