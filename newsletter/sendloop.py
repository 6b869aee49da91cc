"""The send loop: everything about a run except how a message leaves.

An adapter (``newsletter.adapters``) only delivers: it opens a connection and answers, per
message, what the server or provider said. This module owns the rest, the same for every
adapter, built-in or plug-in:

- **claiming** rows from the work queue (the ledger, through ``send.LedgerQueue``), a few at a
  time per connection, and **recording** every answer back;
- **concurrency**: one worker thread and one adapter (one connection) per ``--concurrency``;
- **batches**: up to the adapter's ``max_batch`` messages (and ``max_batch_bytes``) per call;
- **pacing**: at most ``--rate`` messages a second over all connections;
- **429 pauses**: a provider's ``Retry-After`` holds every connection, and is not an attempt;
- **the retry schedule**: a deferred or unknown row is tried again after ``--retry-delay``,
  doubling, up to ``tries_per_run`` times, then waits for the next ``send``;
- **failure streaks**: ``--pause-after`` failures in a row stop the run;
- **stopping**: a configuration error (wrong password, revoked key) or Ctrl-C stops every
  worker after the message it is sending; untried rows go back exactly as they were.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from newsletter.adapters.base import (
    DEFAULT_RETRY_AFTER,
    Adapter,
    ConfigurationStop,
    DeliveryError,
    Outcome,
)
from newsletter.errors import NewsletterError
from newsletter.ledger import NEXT_RUN, Claimed, Result
from newsletter.status import Status

if TYPE_CHECKING:
    from newsletter.message import OutgoingMessage


class Control:
    """Shared between the loop's workers: pacing, 429 pauses, failure streaks, stopping."""

    def __init__(self, rate: float | None = None, pause_after: int = 10) -> None:
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
        """True once the run is stopping: no worker starts another message."""
        return self.stop_event.is_set()

    def stop(self, reason: NewsletterError) -> None:
        """Stop every worker; the first reason given is the one the run ends with."""
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

    def answered(self, outcome: Outcome) -> None:
        """Take note of one answer: a 429 pauses everyone; too many failures in a row stop."""
        if outcome.rate_limited:
            self.pause_for(outcome.retry_after or DEFAULT_RETRY_AFTER)
            return
        with self._lock:
            self._streak = 0 if outcome.status == Status.SENT else self._streak + 1
            streak = self._streak
        if self.pause_after and streak >= self.pause_after:
            self.stop(NewsletterError(
                f"paused after {streak} failures in a row (last: {outcome.error})",
                hint="nothing more is sent; fix the cause and run the same `newsletter send` "
                "again: it resumes where it stopped",
            ))


class WorkQueue(Protocol):
    """Where the loop gets work and writes results: the ledger (``send.LedgerQueue``).

    ``trying`` and ``answered`` come around each hand-over, one batch at a time: once
    ``answered`` returns, those answers survive a crash (the send journal), before that
    connection sends anything else. ``record`` then writes a chunk of them to the ledger;
    ``release`` gives back rows that were never tried, exactly as they were.
    """

    def claim(self, token: str, limit: int) -> list[Claimed]: ...
    def trying(self, token: str, rows: Sequence[Claimed]) -> None: ...
    def answered(self, token: str, results: list[Result]) -> None: ...
    def record(self, token: str, results: list[Result]) -> None: ...
    def release(self, token: str, rows: Sequence[Claimed]) -> None: ...
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
    """Counts for the progress bar and the summary: each recipient once, in its latest state."""

    total: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> int:
        return self.sent + self.failed

    def move(self, before: Status | None, after: Status) -> None:
        """One recipient's latest answer changes from ``before`` (None: first) to ``after``."""
        if before is not None:
            setattr(self, before.value, getattr(self, before.value) - 1)
        setattr(self, after.value, getattr(self, after.value) + 1)


# An answer, or None for a message the run stopped before trying.
Answer = Outcome | None


def deliver_batch(adapter: Adapter, batch: Sequence[OutgoingMessage],
                  control: Control) -> list[Answer]:
    """One ``adapter.deliver`` call as a worker makes it: in turn (``--rate``, 429 pauses),
    its answers classified and noted; None for each message not tried (the run stopped)."""
    if control.stopped:
        return [None] * len(batch)
    control.wait_turn(len(batch))
    if control.stopped:
        return [None] * len(batch)
    answers: Sequence[Answer]
    try:
        answers = adapter.deliver(batch)
    except DeliveryError as exc:
        answers = [exc.outcome()] * len(batch)
    except ConfigurationStop as exc:
        # Stopped part-way: what was settled before counts; the rest goes back untried.
        control.stop(exc)
        settled = exc.outcomes[:len(batch)]
        answers = settled + [None] * (len(batch) - len(settled))
    except NewsletterError as exc:
        control.stop(exc)
        return [None] * len(batch)
    if len(answers) != len(batch):
        # The adapter is broken; the batch may or may not have gone: retry it later with the
        # same Message-IDs rather than guess.
        problem = (f"the {adapter.name or type(adapter).__name__} adapter gave "
                   f"{len(answers)} answer(s) for {len(batch)} message(s)")
        control.stop(NewsletterError(problem, hint="report this to whoever maintains the "
                                     "adapter; send resumes where it stopped"))
        answers = [Outcome(Status.UNKNOWN, problem)] * len(batch)
    for answer in answers:
        if answer is not None:
            control.answered(answer)
    return list(answers)


class SendLoop:
    """Runs workers (one adapter, so one connection, each) until no due work is left or the
    run stops."""

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
        self._state: dict[int, Status] = {}  # recipient id -> latest answer in this run
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
        threads = [threading.Thread(target=self._worker, args=(finished[i],),
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

    # --- the retry schedule --------------------------------------------------------------

    def result(self, row: Claimed, answer: Answer, now: float | None = None) -> Result:
        """What ``row`` becomes after ``answer``: the retry schedule.

        ``now`` is the time the answers of one batch are recorded at: rows that wait together
        become due together, so they are claimed (and sent) together again."""
        now = time.time() if now is None else now
        rid = row.recipient_id
        if answer is None:
            # Not tried: back exactly as it was, its last error kept, no attempt counted.
            return Result(rid, row.previous_status or Status.PENDING, None,
                          counts_as_attempt=False)
        if answer.rate_limited:
            # Refused for pace: back as it was, due after the wait, no attempt counted.
            return Result(rid, row.previous_status or Status.PENDING, answer.error,
                          next_attempt_at=now + (answer.retry_after or 0),
                          counts_as_attempt=False)
        if answer.status == Status.SENT:
            return Result(rid, Status.SENT, provider_id=answer.provider_id)
        if answer.status == Status.FAILED:
            return Result(rid, Status.FAILED, answer.error,
                          recipient_problem=answer.recipient_problem)
        tries = self._tries.get(rid, 0) + 1
        self._tries[rid] = tries
        if tries >= self.options.tries_per_run:
            due = NEXT_RUN
        else:
            delay = min(self.options.retry_delay * 2 ** (tries - 1), self.options.retry_max_delay)
            due = now + delay
        return Result(rid, answer.status, answer.error, next_attempt_at=due)

    # --- delivering ------------------------------------------------------------------------

    @staticmethod
    def batches(adapter: Adapter,
                messages: Sequence[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
        """``messages`` in the adapter's batches: ``max_batch`` each, under ``max_batch_bytes``."""
        limit = max(1, adapter.max_batch)
        cap = adapter.max_batch_bytes
        batch: list[OutgoingMessage] = []
        size = 0
        for message in messages:
            grows = adapter.size(message) if cap else 0
            if batch and (len(batch) >= limit or (cap and size + grows > cap)):
                yield batch
                batch, size = [], 0
            batch.append(message)
            size += grows
        if batch:
            yield batch

    def _count(self, rows: Sequence[Claimed], answers: Sequence[Answer]) -> None:
        """Count each recipient once, in its latest state: a deferred row sent on a retry
        moves from deferred to sent, and the progress position only grows by new recipients."""
        with self.tally._lock:
            first_seen = 0
            for row, answer in zip(rows, answers, strict=True):
                if answer is None or answer.rate_limited:
                    continue
                before = self._state.get(row.recipient_id)
                first_seen += before is None
                self._state[row.recipient_id] = answer.status
                self.tally.move(before, answer.status)
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

    # --- the workers -----------------------------------------------------------------------

    def _worker(self, finished: threading.Event) -> None:
        try:
            adapter = self._open()
            if adapter is not None:
                try:
                    self._work(adapter)
                finally:
                    adapter.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._errors.append(exc)
            self.control.stop_event.set()
        finally:
            finished.set()

    def _open(self) -> Adapter | None:
        adapter = self.factory()
        adapter.stopping = self.control.stop_event    # its waits end when the run stops
        try:
            adapter.open()
        except BaseException:
            adapter.close()
            raise
        return adapter

    def _claim_size(self, adapter: Adapter) -> int:
        size = max(adapter.max_batch, self.options.claim_size)
        if self.options.rate:
            # At a slow --rate, take only about a minute's work at a time: a claim held much
            # longer than the lease could be taken over by another `send` and sent twice.
            size = max(1, min(size, int(self.options.rate * 60)))
        return size

    def _work(self, adapter: Adapter) -> None:
        claim_size = self._claim_size(adapter)
        while not self.control.stopped:
            token = self.queue.new_token()
            rows = self.queue.claim(token, claim_size)
            if not rows:
                if self._wait_for_due():
                    continue
                return
            settled: set[int] = set()
            try:
                self._send_claim(adapter, token, rows, settled)
            except BaseException:
                # Answered rows are in the journal, and recorded unless the database failed;
                # give back the rest exactly as they were (never an answered row as untried).
                self.queue.release(token, [r for r in rows if r.recipient_id not in settled])
                raise

    def _send_claim(self, adapter: Adapter, token: str, rows: list[Claimed],
                    settled: set[int]) -> None:
        # Each batch's answers go to the journal before the connection sends anything else
        # (WorkQueue.answered), so a crash can repeat only the batch in flight: one message
        # per connection for a one-at-a-time adapter. The ledger is written a chunk at a
        # time (`record_every` answers, or a batch API's batch), cheaper than per answer.
        size = (min(adapter.max_batch, len(rows)) if adapter.max_batch > 1
                else self.options.record_every)
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            messages = [self.queue.render(row) for row in chunk]
            answers: list[Answer] = []
            results: list[Result] = []
            for batch in self.batches(adapter, messages):
                batch_rows = chunk[len(answers):len(answers) + len(batch)]
                if not self.control.stopped:
                    self.queue.trying(token, batch_rows)
                # From here these rows may have reached the server: whatever happens next,
                # they are never given back as untried (at worst they become unknown).
                settled.update(row.recipient_id for row in batch_rows)
                try:
                    got = deliver_batch(adapter, batch, self.control)
                except Exception as exc:
                    # The adapter broke while these were in its hands: they may have gone.
                    self._unknown(token, batch_rows, f"the adapter failed: {exc!r}")
                    raise
                now = time.time()
                done = [self.result(row, answer, now)
                        for row, answer in zip(batch_rows, got, strict=True)]
                self.queue.answered(token, done)
                answers += got
                results += done
            self.queue.record(token, results)
            self._count(chunk, answers)

    def _unknown(self, token: str, rows: Sequence[Claimed], why: str) -> None:
        """Rows whose fate is not known: unknown, to be retried with the same Message-ID."""
        results = [Result(row.recipient_id, Status.UNKNOWN, why, next_attempt_at=NEXT_RUN)
                   for row in rows]
        self.queue.answered(token, results)
        self.queue.record(token, results)
