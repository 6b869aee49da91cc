"""The send loop's policy, the same for every adapter: batches, pacing, 429 pauses, the retry
schedule, failure streaks and stopping.

Most tests run the real loop over an in-memory work queue (the ledger's contract without the
database) and small adapters that only answer; the ledger itself is tested in test_ledger.py
and the whole path, ledger and real servers included, in test_send*.py and test_adapters_*.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    ConfigurationStop,
    Outcome,
    PermanentError,
    RateLimited,
    Status,
    TransientError,
)
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.ledger import NEXT_RUN, Claimed, Result
from newsletter.sendloop import Control, LoopOptions, SendLoop


@dataclass(frozen=True)
class Note:
    """What the loop hands an adapter here instead of a real message."""

    to: str
    mime: bytes = b""


class MemoryQueue:
    """The work queue contract in memory: rows are claimable while due and not sent/failed."""

    def __init__(self, addresses: list[str]) -> None:
        self.rows = {i: Claimed(i, a, "", f"p{i}", f"<m{i}@x>", 0, Status.PENDING)
                     for i, a in enumerate(addresses)}
        self.status = {i: Status.PENDING for i in self.rows}
        self.due = dict.fromkeys(self.rows, 0.0)
        self.held: dict[int, str] = {}
        self.recorded: list[Result] = []
        self.claims: list[int] = []
        self.tokens = 0
        self.handed_over: list[int] = []
        self.journaled: list[Result] = []
        self.released: list[int] = []
        self.events: list[tuple[str, list[int]]] = []
        self.failing_records = 0

    def new_token(self) -> str:
        self.tokens += 1
        return f"t{self.tokens}"

    def claim(self, token: str, limit: int) -> list[Claimed]:
        import time

        self.claims.append(limit)
        ready = [i for i in self.rows if i not in self.held
                 and self.status[i] in (Status.PENDING, Status.DEFERRED, Status.UNKNOWN)
                 and self.due[i] <= time.time()][:limit]
        for i in ready:
            self.held[i] = token
        return [Claimed(i, self.rows[i].address, "", f"p{i}", f"<m{i}@x>", 0, self.status[i])
                for i in ready]

    def record(self, token: str, results: list[Result]) -> None:
        self.events.append(("record", [r.recipient_id for r in results]))
        if self.failing_records:
            self.failing_records -= 1
            raise NewsletterError("the database failed: database is locked")
        for r in results:
            assert self.held.pop(r.recipient_id) == token
            self.status[r.recipient_id] = r.status
            self.due[r.recipient_id] = r.next_attempt_at
        self.recorded += results

    def trying(self, token: str, rows: list[Claimed]) -> None:
        self.events.append(("trying", [r.recipient_id for r in rows]))
        self.handed_over += [r.recipient_id for r in rows]

    def answered(self, token: str, results: list[Result]) -> None:
        self.events.append(("answered", [r.recipient_id for r in results]))
        self.journaled += results

    def release(self, token: str, rows: list[Claimed]) -> None:
        for row in rows:
            assert self.held.pop(row.recipient_id) == token
        self.released += [r.recipient_id for r in rows]

    def next_due(self) -> float | None:
        waiting = [self.due[i] for i in self.rows
                   if self.status[i] in (Status.DEFERRED, Status.UNKNOWN)
                   and self.due[i] < NEXT_RUN and i not in self.held]
        return min(waiting, default=None)

    def render(self, row: Claimed) -> Note:
        return Note(row.address, b"x" * 10)


SETTINGS = AdapterSettings(root=Path("."), env={})


def run(queue: MemoryQueue, adapter: Adapter, **options) -> SendLoop:  # type: ignore[no-untyped-def]
    loop = SendLoop(queue, lambda: adapter, LoopOptions(**options))  # type: ignore[arg-type]
    loop.run()
    return loop


class Recording(Adapter):
    """Sends by remembering; answers from ``script[address]`` (one per try), else sent."""

    name = "recording"

    def __init__(self, script: dict[str, list[Exception]] | None = None) -> None:
        super().__init__(SETTINGS)
        self.script = script or {}
        self.sent: list[str] = []
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def send(self, message):  # type: ignore[no-untyped-def]
        answers = self.script.get(message.to)
        if answers:
            raise answers.pop(0)
        self.sent.append(message.to)
        return f"id-{message.to}"


class Batching(Recording):
    """A batch API: remembers the batches it was given."""

    name = "batching"
    max_batch = 3
    max_batch_bytes = 25

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def size(self, message) -> int:  # type: ignore[no-untyped-def]
        return len(message.mime)

    def deliver(self, batch):  # type: ignore[no-untyped-def]
        self.batches.append([m.to for m in batch])
        return [Outcome.sent(f"b-{m.to}") for m in batch]


# --- batches and recording ---------------------------------------------------------------


def test_every_answer_is_recorded_and_the_connection_closed() -> None:
    queue = MemoryQueue(["a@x", "b@x", "c@x"])
    adapter = Recording({"b@x": [PermanentError("550 no")]})
    loop = run(queue, adapter)
    assert queue.status == {0: Status.SENT, 1: Status.FAILED, 2: Status.SENT}
    assert [(r.status, r.provider_id, r.error) for r in queue.recorded] == [
        (Status.SENT, "id-a@x", ""), (Status.FAILED, "", "550 no"), (Status.SENT, "id-c@x", "")]
    assert (loop.tally.sent, loop.tally.failed) == (2, 1)
    assert (adapter.opened, adapter.closed) == (1, 1)


def test_batches_follow_the_adapters_count_and_byte_caps() -> None:
    queue = MemoryQueue([f"r{i}@x" for i in range(8)])
    adapter = Batching()
    run(queue, adapter)
    # 3 a batch; at 10 bytes a message the 25-byte cap holds only 2.
    assert adapter.batches == [["r0@x", "r1@x"], ["r2@x"], ["r3@x", "r4@x"], ["r5@x"],
                               ["r6@x", "r7@x"]]
    assert set(queue.status.values()) == {Status.SENT}
    assert queue.claims[0] == 50


def test_an_error_raised_for_a_batch_answers_for_each_message() -> None:
    class Down(Batching):
        max_batch_bytes = 0

        def deliver(self, batch):  # type: ignore[no-untyped-def]
            raise PermanentError("422 the whole batch is invalid")

    queue = MemoryQueue(["a@x", "b@x", "c@x", "d@x"])
    run(queue, Down(), pause_after=0)
    assert [(r.status, r.error) for r in queue.recorded] == \
        [(Status.FAILED, "422 the whole batch is invalid")] * 4


def test_a_wrong_number_of_answers_stops_the_run_and_retries_the_batch_later() -> None:
    class Short(Batching):
        max_batch_bytes = 0

        def deliver(self, batch):  # type: ignore[no-untyped-def]
            return [Outcome.sent("only one")]

    queue = MemoryQueue(["a@x", "b@x", "c@x", "d@x"])
    with pytest.raises(NewsletterError) as info:
        run(queue, Short())
    assert info.value.message == "the batching adapter gave 1 answer(s) for 3 message(s)"
    assert [queue.status[i] for i in range(4)] == [Status.UNKNOWN] * 3 + [Status.PENDING]


def test_a_configuration_error_stops_the_run_with_the_rest_untried() -> None:
    queue = MemoryQueue(["a@x", "b@x", "c@x", "d@x"])
    adapter = Recording({"a@x": [PermanentError("550 no")],
                         "b@x": [ConfigurationError("bad password")]})
    with pytest.raises(ConfigurationError, match="bad password"):
        run(queue, adapter, pause_after=0)
    assert [queue.status[i] for i in range(4)] == [Status.FAILED] + [Status.PENDING] * 3
    untried = queue.recorded[1:]
    # not tried: no attempt counted, and the row keeps the error of its last real attempt
    assert {(r.counts_as_attempt, r.error) for r in untried} == {(False, None)}
    assert adapter.sent == [] and not queue.held


def test_a_stop_part_way_through_a_batch_keeps_what_was_settled() -> None:
    class Pending(Batching):
        max_batch_bytes = 0

        def deliver(self, batch):  # type: ignore[no-untyped-def]
            raise ConfigurationStop("error 412: account pending approval", "see the account",
                                    [Outcome.sent("accepted"), None])

    queue = MemoryQueue(["a@x", "b@x", "c@x", "d@x"])
    with pytest.raises(ConfigurationStop, match="412"):
        run(queue, Pending())
    assert [queue.status[i] for i in range(4)] == [Status.SENT] + [Status.PENDING] * 3
    assert queue.recorded[0].provider_id == "accepted"
    assert {r.counts_as_attempt for r in queue.recorded[1:]} == {False}


def test_an_exception_gives_back_the_claim_and_reaches_the_caller() -> None:
    class Broken(Recording):
        def send(self, message):  # type: ignore[no-untyped-def]
            raise RuntimeError("bug")

    queue = MemoryQueue(["a@x", "b@x"])
    adapter = Broken()
    with pytest.raises(RuntimeError, match="bug"):
        run(queue, adapter)
    # The message the adapter broke on may have gone: unknown, never given back as untried.
    assert not queue.held and queue.status == {0: Status.UNKNOWN, 1: Status.PENDING}
    assert "the adapter failed: RuntimeError('bug')" in queue.recorded[0].error
    assert queue.released == [1]
    assert adapter.closed == 1


def test_each_answer_is_kept_before_the_connection_sends_the_next_message() -> None:
    queue = MemoryQueue(["a@x", "b@x", "c@x"])
    run(queue, Recording(), record_every=20)
    assert queue.events == [("trying", [0]), ("answered", [0]), ("trying", [1]),
                            ("answered", [1]), ("trying", [2]), ("answered", [2]),
                            ("record", [0, 1, 2])]


def test_answers_the_ledger_could_not_take_are_never_given_back_as_untried() -> None:
    queue = MemoryQueue(["a@x", "b@x", "c@x", "d@x"])
    queue.failing_records = 1
    with pytest.raises(NewsletterError, match="database is locked"):
        run(queue, Recording(), record_every=2, claim_size=4)
    # a and b were answered (kept in the journal): still held for the next `send` to record;
    # c and d were never tried: given back as they were.
    assert [r.recipient_id for r in queue.journaled] == [0, 1]
    assert queue.released == [2, 3]
    assert queue.held == {0: "t1", 1: "t1"}


def test_an_adapters_waits_end_when_the_run_stops() -> None:
    adapter = Recording()
    loop = run(MemoryQueue(["a@x"]), adapter)
    assert adapter.stopping is loop.control.stop_event


# --- pacing, 429 and streaks -------------------------------------------------------------


class FakeClock:
    """Stands in for time.monotonic and Event.wait so pacing is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(round(seconds, 6))
        self.now += seconds
        return False


def paced(monkeypatch: pytest.MonkeyPatch, **kwargs) -> tuple[Control, FakeClock]:  # type: ignore[no-untyped-def]
    from newsletter import sendloop

    clock = FakeClock()
    monkeypatch.setattr(sendloop.time, "monotonic", clock.monotonic)
    control = Control(**kwargs)
    control.stop_event.wait = clock.wait  # type: ignore[method-assign]
    return control, clock


def test_rate_spaces_messages_over_all_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    control, clock = paced(monkeypatch, rate=4)
    for _ in range(3):
        control.wait_turn()
    control.wait_turn(2)          # a batch of two takes two slots
    control.wait_turn()
    assert clock.waits == [0.25, 0.25, 0.25, 0.5]


def test_the_loop_paces_each_batch_by_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter import sendloop

    turns: list[int] = []
    monkeypatch.setattr(sendloop.Control, "wait_turn", lambda self, count=1: turns.append(count))
    queue = MemoryQueue([f"r{i}@x" for i in range(8)])
    adapter = Batching()
    run(queue, adapter, rate=1000)
    assert turns == [len(b) for b in adapter.batches]
    queue = MemoryQueue(["a@x", "b@x", "c@x"])
    turns.clear()
    run(queue, Recording(), rate=1000)
    assert turns == [1, 1, 1]


def test_retry_after_holds_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    control, clock = paced(monkeypatch)
    control.pause_for(3)
    control.wait_turn()
    control.wait_turn()
    assert clock.waits == [1.0, 1.0, 1.0]     # waited in steps, so a stop is noticed


def test_a_429_pauses_the_run_and_is_not_an_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter import sendloop

    pauses: list[float] = []
    original = sendloop.Control.pause_for
    monkeypatch.setattr(sendloop.Control, "pause_for",
                        lambda self, s: (pauses.append(s), original(self, 0))[1])
    queue = MemoryQueue(["a@x", "b@x"])
    adapter = Recording({"a@x": [RateLimited("429 slow down", 12.0)]})
    loop = run(queue, adapter, pause_after=1)
    assert pauses == [12.0]
    first = queue.recorded[0]
    assert (first.status, first.counts_as_attempt) == (Status.PENDING, False)
    assert first.next_attempt_at > 0
    assert not loop.control.stopped         # a 429 is not a failure in a row
    assert loop.tally.deferred == 0


def test_a_batch_that_waits_becomes_due_together(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter import sendloop

    monkeypatch.setattr(sendloop.Control, "pause_for", lambda self, seconds: 0.0)

    class Limited(Batching):
        max_batch_bytes = 0

        def deliver(self, batch):  # type: ignore[no-untyped-def]
            raise RateLimited("429", 3600.0)

    queue = MemoryQueue(["a@x", "b@x", "c@x"])
    run(queue, Limited())
    assert len({r.next_attempt_at for r in queue.recorded}) == 1    # claimed together again
    assert {r.status for r in queue.recorded} == {Status.PENDING}


def test_backoff_doubles_then_waits_for_the_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter import sendloop

    monkeypatch.setattr(sendloop.time, "time", lambda: 1000.0)
    loop = SendLoop(None, lambda: None, LoopOptions(retry_delay=10, tries_per_run=4))  # type: ignore[arg-type]
    row = Claimed(7, "a@x.example", "", "p", "<m>", 0, Status.PENDING)
    deferred = Outcome(Status.DEFERRED, "451")
    dues = [loop.result(row, deferred).next_attempt_at for _ in range(4)]
    assert dues == [1010.0, 1020.0, 1040.0, NEXT_RUN]
    unknown = loop.result(Claimed(8, "b@x.example", "", "q", "<n>", 0, Status.PENDING),
                          Outcome(Status.UNKNOWN, "no answer"))
    assert (unknown.status, unknown.next_attempt_at) == (Status.UNKNOWN, 1010.0)
    limited = loop.result(row, RateLimited("429", 30).outcome())
    assert (limited.status, limited.counts_as_attempt, limited.next_attempt_at) == \
        (Status.PENDING, False, 1030.0)
    again = Claimed(9, "c@x.example", "", "r", "<o>", 1, Status.DEFERRED)
    untried = loop.result(again, None)
    assert (untried.status, untried.counts_as_attempt, untried.next_attempt_at) == \
        (Status.DEFERRED, False, 0.0)


def test_a_deferred_message_is_retried_in_the_same_run() -> None:
    queue = MemoryQueue(["a@x", "b@x"])
    adapter = Recording({"a@x": [TransientError("451 later")] * 2})
    loop = run(queue, adapter, retry_delay=0)
    assert adapter.sent == ["b@x", "a@x"]
    assert [r.status for r in queue.recorded if r.recipient_id == 0] == \
        [Status.DEFERRED, Status.DEFERRED, Status.SENT]
    assert (loop.tally.sent, loop.tally.deferred, loop.tally.total) == (2, 0, 0)


def test_failure_streak_pauses_the_run() -> None:
    control = Control(pause_after=3)
    for _ in range(2):
        control.answered(Outcome(Status.FAILED, "550"))
    control.answered(Outcome.sent())                 # a success resets the streak
    for _ in range(2):
        control.answered(Outcome(Status.DEFERRED, "451"))
    assert not control.stopped
    control.answered(Outcome(Status.UNKNOWN, "dropped"))
    assert control.stopped
    assert control.stop_reason is not None
    assert control.stop_reason.message == "paused after 3 failures in a row (last: dropped)"


@pytest.mark.parametrize(("rate", "expected"), [(None, 50), (100.0, 50), (0.5, 30), (0.001, 1)])
def test_claims_hold_at_most_a_minute_of_work(rate, expected) -> None:  # type: ignore[no-untyped-def]
    queue = MemoryQueue([])
    run(queue, Recording(), rate=rate)
    assert queue.claims == [expected]
