"""What every mail adapter shares: the send loop, error classes, pacing, and the registry.

An adapter only says how to hand one message (or one batch) to its server or provider, and
what each answer means. The loop here owns everything else: claiming ledger rows, rendering
messages, pacing (``--rate``), parallel connections (``--concurrency``), backoff after
temporary failures, pausing the run after too many failures in a row, and stopping the whole
run on a configuration error (wrong password, revoked key) without marking anybody failed.

Every failure is one of::

    TransientError   try later                                     -> deferred, backoff
    PermanentError   this recipient can never get it               -> failed
    OutcomeUnknown   handed over, but no answer came back          -> unknown, retried with
                                                                      the same Message-ID
    RateLimited      slow down; not counted as an attempt          -> retried after the wait
    ConfigurationError (newsletter.errors): a setting is wrong (key, sender, domain, stream):
                     the run stops, nobody is marked failed, rows go back as they were

What counts as which is the adapter's to say, from what its server documents: over SMTP a
4xx reply is temporary and a 5xx permanent (RFC 5321); HTTP providers answer with their own
status codes and error codes, read in ``http.py`` and each provider's module.

Third-party adapters register a subclass of :class:`Adapter` under the entry-point group
``newsletter.adapters``, e.g. in their pyproject.toml::

    [project.entry-points."newsletter.adapters"]
    ses = "newsletter_ses:SesAdapter"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from newsletter.errors import ConfigurationError, NewsletterError

if TYPE_CHECKING:
    from newsletter.ledger import Claimed, Result
    from newsletter.message import OutgoingMessage

ENTRY_POINT_GROUP = "newsletter.adapters"
BUILTINS = {
    "maildir": "newsletter.adapters.maildir:MaildirAdapter",
    "smtp": "newsletter.adapters.smtp:SmtpAdapter",
    "mailgun": "newsletter.adapters.mailgun:MailgunAdapter",
    "postmark": "newsletter.adapters.postmark:PostmarkAdapter",
    "sendgrid": "newsletter.adapters.sendgrid:SendgridAdapter",
}


# --- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one message: sent, deferred, failed, unknown, retry (429) or untried."""

    status: str
    error: str = ""
    provider_id: str = ""
    retry_after: float | None = None
    # A "failed" the provider said is about the recipient (an address it refuses, one that
    # bounced or complained before): the kind of failure that belongs on the suppression list.
    recipient_problem: bool = False


class DeliveryError(Exception):
    """A message was not (or may not have been) accepted."""

    status = "deferred"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def outcome(self) -> Outcome:
        return Outcome(self.status, str(self), retry_after=self.retry_after)


class TransientError(DeliveryError):
    """Try again later: SMTP 4xx (and 552), a dropped connection, an HTTP provider's 5xx."""

    status = "deferred"


class PermanentError(DeliveryError):
    """Do not try again: SMTP 5xx, or an address an HTTP provider refuses for good."""

    status = "failed"

    def __init__(self, message: str, retry_after: float | None = None,
                 recipient_problem: bool = False) -> None:
        super().__init__(message, retry_after)
        self.recipient_problem = recipient_problem

    def outcome(self) -> Outcome:
        return Outcome(self.status, str(self), recipient_problem=self.recipient_problem)


class OutcomeUnknown(DeliveryError):
    """The message was handed over but no answer came: it may have been delivered."""

    status = "unknown"


class RateLimited(DeliveryError):
    """The provider asked us to slow down; the message goes back without counting a try."""

    status = "retry"


# --- settings and the adapter class ------------------------------------------------------


@dataclass
class AdapterSettings:
    """What an adapter may read: the project folder, CLI choices, and the environment."""

    root: Path
    env: Mapping[str, str]
    maildir: Path | None = None
    timeout: float = 30.0
    concurrency: int = 1
    # The newsletter's own domain (list_id_domain): a name an adapter may call itself by.
    domain: str = ""

    def require(self, variable: str, what: str, example: str) -> str:
        """The value of environment variable ``variable``, or an error saying where to set it."""
        value = self.env.get(variable, "").strip()
        if not value:
            raise ConfigurationError(
                f"{what} is not set: set the environment variable {variable}",
                hint=f"e.g. `export {variable}={example}` in the shell, or in the environment "
                "of the service that runs `newsletter send`; secrets are never read from "
                "newsletter.yaml or audiences.yaml",
            )
        return value


class Control:
    """Shared between the loop's workers: pacing, 429 pauses, failure streaks, stopping."""

    def __init__(self, rate: float | None = None, pause_after: int = 10,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.rate = rate
        self.pause_after = pause_after
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._resume_at = 0.0
        self._streak = 0
        self.stop_event = threading.Event()
        self.stop_reason: NewsletterError | None = None

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def stop(self, reason: NewsletterError) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.stop_event.set()

    def _sleep_until(self, when: float) -> None:
        while not self.stop_event.is_set():
            delay = when - time.monotonic()
            if delay <= 0:
                return
            self.stop_event.wait(min(delay, 1.0))

    def wait_turn(self, count: int = 1) -> None:
        """Block until ``count`` messages may go: after any 429 pause, at the ``--rate`` pace."""
        with self._lock:
            resume = self._resume_at
        self._sleep_until(resume)
        if not self.rate:
            return
        with self._lock:
            start = max(time.monotonic(), self._next_slot)
            self._next_slot = start + count / self.rate
        self._sleep_until(start)

    def pause_for(self, seconds: float) -> float:
        """Every worker waits ``seconds`` (a provider's Retry-After); returns the wall time."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)
        return time.time() + seconds

    def note(self, outcome: Outcome) -> None:
        """Count failure streaks; too many in a row pause the whole run."""
        if outcome.status in ("retry", "untried"):
            return
        with self._lock:
            self._streak = 0 if outcome.status == "sent" else self._streak + 1
            streak = self._streak
        if self.pause_after and streak >= self.pause_after:
            self.stop(NewsletterError(
                f"paused after {streak} failures in a row (last: {outcome.error})",
                hint="nothing more is sent; fix the cause and run the same `newsletter send` "
                "again: it resumes where it stopped",
            ))


class Adapter:
    """Hands messages to one kind of mail system. Subclasses fill in :meth:`send`.

    Set ``max_batch`` above 1 and override :meth:`send_batch` for providers with a batch
    endpoint. Adapters that need the whole MIME message use ``message.mime``; HTTP APIs that
    take parts use ``message.html``, ``message.text`` and ``message.headers``.
    """

    name: ClassVar[str] = ""
    max_batch: ClassVar[int] = 1
    supports_concurrency: ClassVar[bool] = True

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.control = Control()

    @classmethod
    def check_settings(cls, settings: AdapterSettings) -> None:
        """Raise ConfigurationError now if a setting is missing, before anything is sent."""
        if settings.concurrency > 1 and not cls.supports_concurrency:
            from newsletter.errors import NotSupported

            raise NotSupported(cls.name or cls.__name__, "--concurrency")

    def describe(self) -> str:
        """Where messages go, for the summary (never includes a secret)."""
        return self.name

    def preflight(self) -> list[str]:
        """Check the server's or provider's own settings before anything is sent.

        Raise ConfigurationError when sending would go wrong (a provider that would add its
        own unsubscribe or rewrite our links); return warnings for what cannot be checked.
        """
        return []

    def open(self) -> None:
        """Prepare (e.g. create an HTTP session). Connections may also open lazily in send."""

    def close(self) -> None:
        """Release connections; called once, even after errors."""

    def send(self, message: OutgoingMessage) -> str:
        """Hand over one message; return the provider's id for it, or raise DeliveryError."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement send() or send_batch()")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        """One outcome per message, in order. Stops early (rest 'untried') when the run stops."""
        outcomes: list[Outcome] = []
        for message in messages:
            if self.control.stopped:
                outcomes.append(Outcome("untried"))
                continue
            self.control.wait_turn()
            if self.control.stopped:
                outcomes.append(Outcome("untried"))
                continue
            outcome = self.attempt(message)
            outcomes.append(outcome)
        return outcomes

    def attempt(self, message: OutgoingMessage) -> Outcome:
        """:meth:`send` one message and classify what happened."""
        try:
            provider_id = self.send(message)
        except DeliveryError as exc:
            outcome = exc.outcome()
        except NewsletterError as exc:
            self.control.stop(exc)
            return Outcome("untried")
        else:
            outcome = Outcome("sent", provider_id=provider_id or "")
        if outcome.status == "retry":
            self.control.pause_for(outcome.retry_after or 60.0)
        self.control.note(outcome)
        return outcome


# --- registry ----------------------------------------------------------------------------


def _third_party() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def adapter_names() -> list[str]:
    """Every adapter that can be chosen: the built-ins, then installed plug-ins."""
    return sorted(set(BUILTINS) | set(_third_party()))


def load_adapter(name: str) -> type[Adapter]:
    """The adapter class called ``name``, or an error listing the ones there are."""
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        return getattr(import_module(module), attr)
    plugin = _third_party().get(name)
    if plugin is None:
        raise ConfigurationError(
            f"there is no mail adapter called {name!r}; choose one of: "
            + ", ".join(adapter_names()),
            hint="choose with --adapter NAME or the environment variable NEWSLETTER_ADAPTER; "
            f"plug-ins register under the entry-point group {ENTRY_POINT_GROUP!r}",
        )
    try:
        cls = plugin.load()  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigurationError(f"the mail adapter {name!r} cannot be loaded: {exc}",
                                 hint="reinstall the package that provides it") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ConfigurationError(f"the mail adapter {name!r} is not a newsletter Adapter class")
    return cls


# --- the loop ----------------------------------------------------------------------------


class WorkQueue(Protocol):
    """Where the loop gets work and writes results: the ledger, in ``send.py``."""

    def claim(self, token: str, limit: int) -> list[Claimed]: ...
    def record(self, token: str, results: list[Result]) -> None: ...
    def release(self, token: str) -> None: ...
    def next_due(self) -> float | None: ...
    def render(self, row: Claimed) -> OutgoingMessage: ...
    def new_token(self) -> str: ...


@dataclass
class LoopOptions:
    """How the loop paces and retries."""

    concurrency: int = 1
    rate: float | None = None
    claim_size: int = 50            # rows a worker takes from the ledger at once
    record_every: int = 20          # answers written back at once: the most that can repeat
    pause_after: int = 10           # failures in a row that pause the run
    retry_delay: float = 30.0       # first backoff; doubles each try
    retry_max_delay: float = 900.0
    tries_per_run: int = 4          # then the row waits for the next `send`
    max_wait: float = 1800.0        # longest the run waits for a deferred row to become due


@dataclass
class Tally:
    """Counts for the progress bar and the summary."""

    total: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> int:
        return self.sent + self.failed


class SendLoop:
    """Runs workers (one connection each) until no due work is left or the run stops."""

    def __init__(self, queue: WorkQueue, adapter_factory: Callable[[], Adapter],
                 options: LoopOptions, total: int = 0,
                 on_progress: Callable[[Tally, int], None] | None = None) -> None:
        self.queue = queue
        self.factory = adapter_factory
        self.options = options
        self.control = Control(options.rate, options.pause_after)
        self.tally = Tally(total=total)
        self.on_progress = on_progress
        self._tries: dict[int, int] = {}
        self._state: dict[int, str] = {}  # recipient id -> latest status in this run
        self._errors: list[BaseException] = []

    def run(self) -> Tally:
        """Send until done; raise the error that stopped the run, if one did."""
        count = max(1, self.options.concurrency)
        # Workers always run in threads, so Ctrl-C reaches this thread: it stops the workers
        # after the message each is sending, their answers are recorded, then it re-raises.
        # Waiting is on events each worker sets when it has finished, not on Thread.join: a
        # KeyboardInterrupt landing inside join() can leave it returning before the thread
        # is done, and the process would then exit with rows still claimed.
        finished = [threading.Event() for _ in range(count)]
        threads = [threading.Thread(target=self._worker, args=(i, finished[i]),
                                    name=f"send-{i}") for i in range(count)]
        try:
            for thread in threads:
                thread.start()
            for event in finished:
                while not event.wait(0.5):
                    pass
        except KeyboardInterrupt:
            self.control.stop(NewsletterError("interrupted"))
            for thread, event in zip(threads, finished, strict=True):
                while thread.ident is not None and not event.is_set():
                    event.wait(0.5)
            raise
        for thread in threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        if self.control.stop_reason is not None:
            raise self.control.stop_reason
        return self.tally

    def _result(self, row: Claimed, outcome: Outcome) -> Result:
        from newsletter.ledger import NEXT_RUN, Result

        if outcome.status == "sent":
            return Result(row.recipient_id, "sent", provider_id=outcome.provider_id)
        if outcome.status == "failed":
            return Result(row.recipient_id, "failed", outcome.error,
                          recipient_problem=outcome.recipient_problem)
        if outcome.status in ("retry", "untried"):
            # Not tried (or refused for pace): back as it was, no attempt counted.
            due = time.time() + (outcome.retry_after or 0) if outcome.status == "retry" else 0
            return Result(row.recipient_id, row.previous_status or "pending", outcome.error,
                          next_attempt_at=due, counts_as_attempt=False)
        tries = self._tries.get(row.recipient_id, 0) + 1
        self._tries[row.recipient_id] = tries
        if tries >= self.options.tries_per_run:
            due = NEXT_RUN
        else:
            delay = min(self.options.retry_delay * 2 ** (tries - 1), self.options.retry_max_delay)
            due = time.time() + delay
        return Result(row.recipient_id, outcome.status, outcome.error, next_attempt_at=due)

    def _count(self, rows: list, outcomes: list[Outcome]) -> None:
        """Count each recipient once, in its latest state: a deferred row sent on a retry
        moves from deferred to sent, and the progress position only grows by new recipients."""
        with self.tally._lock:
            first_seen = 0
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome.status not in ("sent", "failed", "deferred", "unknown"):
                    continue
                before = self._state.get(row.recipient_id)
                if before is None:
                    first_seen += 1
                else:
                    setattr(self.tally, before, getattr(self.tally, before) - 1)
                self._state[row.recipient_id] = outcome.status
                setattr(self.tally, outcome.status, getattr(self.tally, outcome.status) + 1)
            if self.on_progress:
                self.on_progress(self.tally, first_seen)

    def _wait_for_due(self) -> bool:
        """True when a deferred row will be due soon enough to wait for it."""
        due = self.queue.next_due()
        if due is None:
            return False
        delay = due - time.time()
        if delay > self.options.max_wait:
            return False
        if delay > 0:
            self.control.stop_event.wait(min(delay, 1.0))
        return not self.control.stopped

    def _worker(self, index: int, finished: threading.Event) -> None:
        try:
            self._work(index)
        finally:
            finished.set()

    def _work(self, index: int) -> None:
        try:
            adapter = self.factory()
            adapter.control = self.control
            adapter.open()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._errors.append(exc)
            self.control.stop_event.set()
            return
        claim_size = max(adapter.max_batch, self.options.claim_size)
        if self.options.rate:
            # At a slow --rate, take only about a minute's work at a time: a claim held much
            # longer than the lease could be taken over by another `send` and sent twice.
            claim_size = max(1, min(claim_size, int(self.options.rate * 60)))
        try:
            while not self.control.stopped:
                token = self.queue.new_token()
                rows = self.queue.claim(token, claim_size)
                if not rows:
                    if self._wait_for_due():
                        continue
                    break
                # A one-at-a-time adapter gets chunks of `record_every`; a batch API gets its
                # batches. Each chunk is recorded as soon as it is answered: messages accepted
                # but not yet recorded (one chunk per worker) are the only ones a crash can
                # repeat. Rows claimed but not yet tried come back as unknown, sent once.
                size = (min(adapter.max_batch, len(rows)) if adapter.max_batch > 1
                        else self.options.record_every)
                try:
                    for start in range(0, len(rows), size):
                        chunk = rows[start:start + size]
                        messages = [self.queue.render(row) for row in chunk]
                        if self.control.stopped:
                            outcomes = [Outcome("untried")] * len(chunk)
                        else:
                            outcomes = adapter.send_batch(messages)
                        self.queue.record(token, [self._result(row, outcome)
                                                  for row, outcome in zip(chunk, outcomes,
                                                                          strict=True)])
                        self._count(chunk, outcomes)
                except BaseException:
                    # Every answered row is recorded; give back the rest exactly as they were.
                    self.queue.release(token)
                    raise
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._errors.append(exc)
            self.control.stop_event.set()
        finally:
            adapter.close()
