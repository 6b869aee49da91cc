"""The adapter registry (built-ins and entry-point plug-ins) and the base class's contract."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    Control,
    Outcome,
    PermanentError,
    adapter_names,
    load_adapter,
)
from newsletter.errors import ConfigurationError, NotSupported


def test_builtins_are_registered() -> None:
    for name in ("maildir", "smtp", "mailgun", "postmark", "sendgrid"):
        assert load_adapter(name).name == name
    assert {"maildir", "smtp", "mailgun", "postmark", "sendgrid"} <= set(adapter_names())


def test_unknown_adapter_lists_choices_and_where_to_set() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_adapter("carrier-pigeon")
    assert info.value.message.startswith(
        "there is no mail adapter called 'carrier-pigeon'; "
        "choose one of: maildir, mailgun, postmark, sendgrid, smtp")
    assert "--adapter NAME or the environment variable NEWSLETTER_ADAPTER" in info.value.hint
    assert "'newsletter.adapters'" in info.value.hint


def test_plugins_are_found_through_entry_points(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pigeon_adapter.py").write_text(
        "from newsletter.adapters.base import Adapter\n"
        "class PigeonAdapter(Adapter):\n"
        "    name = 'pigeon'\n"
        "    sent = []\n"
        "    def send(self, message):\n"
        "        self.sent.append(message)\n"
        "        return 'coo'\n"
        "class NotAnAdapter:\n"
        "    pass\n")
    info = tmp_path / "pigeon_adapter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-adapter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[newsletter.adapters]\npigeon = pigeon_adapter:PigeonAdapter\n"
        "broken = pigeon_adapter:NotAnAdapter\nmissing = no_such_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert "pigeon" in adapter_names()
    cls = load_adapter("pigeon")
    adapter = cls(AdapterSettings(root=tmp_path, env={}))
    assert adapter.attempt(object()).provider_id == "coo"  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'broken' is not a newsletter Adapter class"):
        load_adapter("broken")
    with pytest.raises(ConfigurationError, match="'missing' cannot be loaded"):
        load_adapter("missing")


def test_an_adapter_without_send_says_which_class() -> None:
    class Half(Adapter):
        name = "half"

    with pytest.raises(NotImplementedError, match="Half must implement send"):
        Half(AdapterSettings(root=Path("."), env={})).send(object())  # type: ignore[arg-type]


def test_unsupported_features_are_refused_not_dropped() -> None:
    class Single(Adapter):
        name = "single"
        supports_concurrency = False

    with pytest.raises(NotSupported) as info:
        Single.check_settings(AdapterSettings(root=Path("."), env={}, concurrency=4))
    assert info.value.message == "single does not support --concurrency"


def test_a_configuration_error_stops_the_rest_of_the_batch() -> None:
    class Flaky(Adapter):
        name = "flaky"
        calls = 0

        def send(self, message):  # type: ignore[no-untyped-def]
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise PermanentError("550 no")
            raise ConfigurationError("bad password")

    adapter = Flaky(AdapterSettings(root=Path("."), env={}))
    adapter.control = Control(pause_after=0)
    outcomes = adapter.send_batch([object()] * 4)  # type: ignore[list-item]
    assert outcomes == [Outcome("failed", "550 no"), Outcome("untried"), Outcome("untried"),
                        Outcome("untried")]
    assert adapter.control.stop_reason.message == "bad password"  # type: ignore[union-attr]
    assert Flaky.calls == 2


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
    from newsletter.adapters import base

    clock = FakeClock()
    monkeypatch.setattr(base.time, "monotonic", clock.monotonic)
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


def test_retry_after_holds_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    control, clock = paced(monkeypatch)
    control.pause_for(3)
    control.wait_turn()
    control.wait_turn()
    assert clock.waits == [1.0, 1.0, 1.0]     # waited in steps, so a stop is noticed


def test_backoff_doubles_then_waits_for_the_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.adapters import base
    from newsletter.adapters.base import LoopOptions, SendLoop
    from newsletter.ledger import NEXT_RUN, Claimed

    monkeypatch.setattr(base.time, "time", lambda: 1000.0)
    loop = SendLoop(None, lambda: None, LoopOptions(retry_delay=10, tries_per_run=4))  # type: ignore[arg-type]
    row = Claimed(7, "a@x.example", "", "p", "<m>", 0, "pending")
    dues = [loop._result(row, Outcome("deferred", "451")).next_attempt_at for _ in range(4)]
    assert dues == [1010.0, 1020.0, 1040.0, NEXT_RUN]
    unknown = loop._result(Claimed(8, "b@x.example", "", "q", "<n>", 0, "pending"),
                           Outcome("unknown", "no answer"))
    assert (unknown.status, unknown.next_attempt_at) == ("unknown", 1010.0)
    limited = loop._result(row, Outcome("retry", "429", retry_after=30))
    assert (limited.status, limited.counts_as_attempt, limited.next_attempt_at) == \
        ("pending", False, 1030.0)


def test_failure_streak_pauses_the_run() -> None:
    control = Control(pause_after=3)
    for _ in range(2):
        control.note(Outcome("failed", "550"))
    control.note(Outcome("sent"))                 # a success resets the streak
    for _ in range(2):
        control.note(Outcome("deferred", "451"))
    assert not control.stopped
    control.note(Outcome("unknown", "dropped"))
    assert control.stopped
    assert control.stop_reason.message == "paused after 3 failures in a row (last: dropped)"  # type: ignore[union-attr]


@pytest.mark.parametrize(("rate", "expected"), [(None, 50), (100.0, 50), (0.5, 30), (0.001, 1)])
def test_claims_hold_at_most_a_minute_of_work(rate, expected) -> None:  # type: ignore[no-untyped-def]
    from newsletter.adapters.base import LoopOptions, SendLoop

    asked: list[int] = []

    class Empty:
        def new_token(self) -> str:
            return "t"

        def claim(self, token: str, limit: int) -> list:  # type: ignore[type-arg]
            asked.append(limit)
            return []

        def next_due(self) -> None:
            return None

    class Quiet(Adapter):
        name = "quiet"

    loop = SendLoop(Empty(), lambda: Quiet(AdapterSettings(root=Path("."), env={})),  # type: ignore[arg-type]
                    LoopOptions(rate=rate))
    loop.run()
    assert asked == [expected]
