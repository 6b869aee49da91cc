"""`newsletter doctor` reads each provider's settings through its API, as `send` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_providers import Mailgun, MailgunDomain, Postmark, Sendgrid
from helpers import mailgun_env, postmark_env, sendgrid_env

from newsletter.cli import main


def doctor(adapter: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The doctor's lines about the mail server (the other checks need a public tracker)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["doctor", "2026-spring", "--adapter", adapter,
                                       "--allow-local-tracking", "--timeout", "2"])
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "mail server" in line)
    found = [lines[start]]
    for line in lines[start + 1:]:
        if line.startswith(" ") or "mail server" in line:
            found.append(line)
        else:
            break
    return found


def test_doctor_lists_the_postmark_streams_to_choose_from(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Postmark()
    monkeypatch.delenv("POSTMARK_MESSAGE_STREAM", raising=False)
    lines = doctor("postmark", postmark_env(http_server(fake.app()), stream=""), monkeypatch)
    assert lines[0].startswith("problem") and "POSTMARK_MESSAGE_STREAM is not set" in lines[0]
    assert "what to do: this server's Broadcasts streams: 'newsletter' (Partner newsletter)" \
        in lines[1]
    assert fake.sends == 0


@pytest.mark.parametrize(("adapter", "make", "env", "words"), [
    ("postmark", lambda: Postmark(), postmark_env, "settings accepted"),
    ("mailgun", lambda: Mailgun(), mailgun_env, "settings accepted"),
    ("sendgrid", lambda: Sendgrid(), sendgrid_env, "settings accepted"),
    ("mailgun", lambda: Mailgun(domains=[MailgunDomain("mg.example.org", unsubscribe=True)]),
     mailgun_env, "Mailgun's unsubscribe tracking is on"),
])
def test_doctor_reports_each_providers_settings(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch, adapter, make,
                                                env, words) -> None:
    fake = make()
    lines = doctor(adapter, env(http_server(fake.app())), monkeypatch)
    assert words in lines[0]
    assert lines[0].startswith("ok" if words == "settings accepted" else "problem")
    assert fake.sends == 0 and fake.accepted == []


def test_doctor_says_when_postmark_would_add_its_open_tracking(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Postmark()
    fake.track_opens = True
    lines = doctor("postmark", postmark_env(http_server(fake.app())), monkeypatch)
    assert lines[0].startswith("problem")
    assert "open tracking is on for this Postmark server" in lines[0]
    assert "Open tracking" in lines[1]
