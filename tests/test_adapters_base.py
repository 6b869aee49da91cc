"""The adapter registry (built-ins and plug-ins, all entry points) and the base class's contract.

The loop that drives adapters is tested in tests/test_sendloop.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    ConfigurationStop,
    Outcome,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    Status,
    TransientError,
    adapter_names,
    builtin_names,
    load_adapter,
)
from newsletter.errors import ConfigurationError, NotSupported


def test_builtins_are_registered() -> None:
    for name in ("maildir", "smtp", "mailgun", "postmark", "sendgrid"):
        assert load_adapter(name).name == name
    assert {"maildir", "smtp", "mailgun", "postmark", "sendgrid"} <= set(adapter_names())


def test_builtins_are_entry_points_of_this_package() -> None:
    import tomllib

    declared = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"]["entry-points"]["newsletter.adapters"]
    assert builtin_names() == sorted(declared)
    for name, target in declared.items():
        module, _, attr = target.partition(":")
        assert load_adapter(name) is getattr(importlib.import_module(module), attr)


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
    assert adapter.deliver([object()]) == [Outcome(Status.SENT, provider_id="coo")]  # type: ignore[list-item]
    assert "pigeon" not in builtin_names()
    with pytest.raises(ConfigurationError, match="'broken' is not a newsletter Adapter class"):
        load_adapter("broken")
    with pytest.raises(ConfigurationError, match="'missing' cannot be loaded"):
        load_adapter("missing")


def test_an_adapter_without_send_says_which_class() -> None:
    class Half(Adapter):
        name = "half"

    with pytest.raises(NotImplementedError, match=r"Half must implement send\(\) or deliver"):
        Half(AdapterSettings(root=Path("."), env={})).send(object())  # type: ignore[arg-type]


def test_unsupported_features_are_refused_not_dropped() -> None:
    class Single(Adapter):
        name = "single"
        supports_concurrency = False

    with pytest.raises(NotSupported) as info:
        Single.check_settings(AdapterSettings(root=Path("."), env={}, concurrency=4))
    assert info.value.message == "single does not support --concurrency"


def test_two_packages_claiming_one_name_are_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "evil_smtp.py").write_text(
        "from newsletter.adapters.base import Adapter\n"
        "class EvilSmtp(Adapter):\n    name = 'smtp'\n")
    info = tmp_path / "evil_smtp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-smtp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[newsletter.adapters]\nsmtp = evil_smtp:EvilSmtp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ConfigurationError) as info_:
        load_adapter("smtp")
    assert info_.value.message == (
        "more than one installed package provides the mail adapter 'smtp': "
        "evil_smtp:EvilSmtp (evil-smtp), newsletter.adapters.smtp:SmtpAdapter (newsletter)")
    assert info_.value.hint == "uninstall the package you do not want"


def test_default_deliver_classifies_each_answer_from_send() -> None:
    answers = iter([lambda: "id-1", TransientError("451 later"), PermanentError("550 no"),
                    OutcomeUnknown("no answer"), RateLimited("429 slow down", 7.0)])

    class Scripted(Adapter):
        name = "scripted"

        def send(self, message):  # type: ignore[no-untyped-def]
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer()

    outcomes = Scripted(AdapterSettings(root=Path("."), env={})).deliver([object()] * 5)  # type: ignore[list-item]
    assert outcomes == [Outcome(Status.SENT, provider_id="id-1"),
                        Outcome(Status.DEFERRED, "451 later"),
                        Outcome(Status.FAILED, "550 no"),
                        Outcome(Status.UNKNOWN, "no answer"),
                        Outcome(Status.DEFERRED, "429 slow down", retry_after=7.0)]
    assert [o.rate_limited for o in outcomes] == [False] * 4 + [True]


def test_a_configuration_error_from_send_is_not_an_answer() -> None:
    class Locked(Adapter):
        name = "locked"

        def send(self, message):  # type: ignore[no-untyped-def]
            raise ConfigurationError("bad password")

    with pytest.raises(ConfigurationError, match="bad password"):
        Locked(AdapterSettings(root=Path("."), env={})).deliver([object()])  # type: ignore[list-item]


def test_a_configuration_error_part_way_keeps_the_answers_before_it() -> None:
    calls = iter(["id-1", PermanentError("550 no"), ConfigurationError("bad password", "fix")])

    class Locking(Adapter):
        name = "locking"

        def send(self, message):  # type: ignore[no-untyped-def]
            answer = next(calls)
            if isinstance(answer, Exception):
                raise answer
            return answer

    with pytest.raises(ConfigurationStop) as info:
        Locking(AdapterSettings(root=Path("."), env={})).deliver([object()] * 4)  # type: ignore[list-item]
    assert (info.value.message, info.value.hint) == ("bad password", "fix")
    assert info.value.outcomes == [Outcome.sent("id-1"), Outcome(Status.FAILED, "550 no")]


def test_an_outcome_is_an_answer_a_server_can_give() -> None:
    assert Outcome("sent").status is Status.SENT        # type: ignore[arg-type]
    for status in (Status.PENDING, Status.SENDING, "retry"):
        with pytest.raises(ValueError, match="an adapter answers sent, deferred, failed or "
                                             "unknown, not"):
            Outcome(status)  # type: ignore[arg-type]


def test_a_batch_size_needs_a_batch_delivery() -> None:
    with pytest.raises(TypeError, match="Lazy sets max_batch = 10 but does not implement "
                                        r"deliver\(\)"):
        class Lazy(Adapter):
            name = "lazy"
            max_batch = 10


def test_the_adapters_do_not_know_the_ledger() -> None:
    # Delivery only: claiming and recording belong to the send loop.
    import ast

    package = Path(__file__).parent.parent / "newsletter" / "adapters"
    for source in package.glob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        assert not imported & {"newsletter.ledger", "newsletter.sendloop", "newsletter.send"}, \
            source
