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
