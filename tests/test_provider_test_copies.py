"""`newsletter send --test ADDRESS` through each provider adapter, against the fake providers.

A test copy goes through the same loop as a real send: the provider's settings are checked
first, the request carries the same tracking switches, and the copy says it is a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_providers import Mailgun, MailgunDomain, Postmark, Sendgrid
from helpers import mailgun_env, postmark_env, sendgrid_env

from newsletter.cli import main

PROVIDERS = {"mailgun": (Mailgun, mailgun_env), "postmark": (Postmark, postmark_env),
             "sendgrid": (Sendgrid, sendgrid_env)}


def send_test_copy(adapter: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The fake providers' tracker is on 127.0.0.1, which a real send refuses.
    return CliRunner().invoke(main, ["send", "2026-spring", "--test", "Editor@Example.org",
                                     "--adapter", adapter, "--allow-local-tracking"])


@pytest.mark.parametrize("adapter", sorted(PROVIDERS))
def test_a_test_copy_turns_the_providers_tracking_off(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      adapter: str) -> None:
    # (test_adapters_http.py checks the copy is marked as a test and recorded nowhere.)
    kind, env = PROVIDERS[adapter]
    fake = kind()
    # Provider-side tracking on wherever a setting allows it: the request must turn it off.
    if isinstance(fake, Mailgun):
        fake.domains["mg.example.org"] = MailgunDomain("mg.example.org", click=True, open=True)
    if isinstance(fake, Postmark):
        fake.track_links = "HtmlAndText"
    result = send_test_copy(adapter, env(http_server(fake.app())), monkeypatch)
    assert result.exit_code == 0, result.output
    (copy,) = fake.accepted
    assert copy.recipient == "editor@example.org"
    assert copy.delivered["List-Unsubscribe"].lstrip().startswith("<http://127.0.0.1:8025/u/")
    for host in ("email.mg.example.org", "pstmrk", "sendgrid.net"):
        assert host not in copy.html + copy.text           # no link rewritten, no pixel


def test_a_test_copy_the_provider_refuses_says_why(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Sendgrid(senders=("elsewhere.example",))
    result = send_test_copy("sendgrid", sendgrid_env(http_server(fake.app())), monkeypatch)
    assert result.exit_code == 1
    assert "The from address does not match a verified Sender Identity" in result.output
    assert "hint:" in result.output and "Traceback" not in result.output
    assert fake.accepted == []


def test_a_test_copy_is_refused_when_postmark_would_add_its_unsubscribe(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    from fake_providers import PostmarkStream

    fake = Postmark(streams=[PostmarkStream("newsletter", unsubscribe="Postmark")])
    result = send_test_copy("postmark", postmark_env(http_server(fake.app())), monkeypatch)
    assert result.exit_code == 1
    assert "Postmark manages unsubscribes on the stream 'newsletter'" in result.output
    assert fake.sends == 0
