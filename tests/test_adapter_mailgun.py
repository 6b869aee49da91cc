"""The Mailgun adapter against a fake Mailgun that answers as Mailgun documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_providers import HREF_RE, URL_RE, Mailgun, MailgunDomain
from helpers import (
    SEND_ADDRESSES,
    adapter,
    ledger_rows,
    mailgun_env,
    make_built,
    messages,
    prepare_send,
    run_send,
)

from newsletter import send as sending
from newsletter.adapters.http import HttpAdapter
from newsletter.errors import ConfigurationError
from newsletter.sendloop import LoopOptions


@pytest.fixture
def quick_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search for a message whose answer was lost twice, 0.1 s apart, not for 30 s."""
    monkeypatch.setattr(HttpAdapter, "confirm_waits", (0.1, 0.1))


def test_every_request_turns_mailguns_tracking_off(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Mailgun(domains=[MailgunDomain("mg.example.org", click=True, open=True)])
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert outcome.complete and set(fake.recipients) == SEND_ADDRESSES
    for accepted in fake.accepted:
        fields = accepted.request["fields"]
        assert (fields["o:tracking"], fields["o:tracking-clicks"],
                fields["o:tracking-opens"]) == ("no", "no", "no")
        sent = accepted.request["parsed"]
        sent_links = (HREF_RE.findall(sent.get_body(("html",)).get_content())
                      + URL_RE.findall(sent.get_body(("plain",)).get_content()))
        assert accepted.links() == sent_links          # as we wrote them, none rewritten
        assert "email.mg.example.org" not in accepted.html


def test_our_list_headers_reach_mailgun(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Mailgun()
    run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    delivered = fake.accepted[0].delivered
    assert delivered["List-Id"] == ("Kent and Medway Prevent Partner Newsletter "
                                  "<prevent-newsletter.example.org>")
    # folded before its first URL (too long for the first line): the space is folding
    assert delivered["List-Unsubscribe"].lstrip().startswith("<http://127.0.0.1:8025/u/")
    assert delivered["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (delivered["Precedence"], delivered["Auto-Submitted"],
            delivered["Content-Language"]) == ("bulk", "auto-generated", "en-GB")
    assert fake.accepted[0].provider_id == delivered["Message-ID"].strip("<>")


def test_a_test_copy_says_so_to_mailgun(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Mailgun()
    mailgun = adapter("mailgun", send_project, mailgun_env(http_server(fake.app())))
    (outcome,) = mailgun.send_batch(messages(send_project, make_built(), ["ed@example.org"],
                                             test=True))
    assert outcome.status == "sent"
    assert fake.accepted[0].delivered["X-Newsletter-Test"] == "yes"


def test_an_address_mailgun_refuses_fails_that_recipient_only(send_project: Path,  # type: ignore[no-untyped-def]
                                                              http_server) -> None:
    fake = Mailgun()
    fake.refuse = {"cat@council.example"}
    url = http_server(fake.app())
    outcome = run_send(send_project, mailgun_env(url), "mailgun")
    # A refused address is a hard bounce: its row fails and the address is suppressed at once.
    assert outcome.counts["sent"] == 4 and outcome.counts["suppressed"] == 1
    assert outcome.bounced[0][:2] == ("cat@council.example", "bounced-hard")
    assert "'to' parameter is not a valid address" in outcome.bounced[0][2]
    mailgun = adapter("mailgun", send_project, mailgun_env(url))
    (refused,) = mailgun.send_batch(messages(send_project, make_built(),
                                             ["cat@council.example"]))
    assert refused.status == "failed" and refused.recipient_problem


def test_a_domain_in_the_other_region_is_named_before_sending(send_project: Path,  # type: ignore[no-untyped-def]
                                                             http_server) -> None:
    fake = Mailgun(domains=[MailgunDomain("mg.example.org", region="eu")])
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert "does not know the sending domain mg.example.org (MAILGUN_DOMAIN)" in \
        info.value.message
    assert '"Domain not found"' in info.value.message
    assert "MAILGUN_API_URL=https://api.eu.mailgun.net" in info.value.hint
    assert fake.sends == 0


@pytest.mark.parametrize(("status", "body", "named"), [
    (404, {"message": "Domain not found"}, "MAILGUN_API_URL=https://api.eu.mailgun.net"),
    (403, {"message": Mailgun.SANDBOX.format(d="mg.example.org")}, "sandbox"),
    (400, {"message": "Sandbox subdomains are for test purposes only. Please add your own "
           "domain or add the address to authorized recipients in Account Settings."},
     "sandbox"),
    (403, {"message": Mailgun.UNVERIFIED.format(d="mg.example.org")}, "DNS records"),
])
def test_domain_answers_while_sending_stop_the_run_and_fail_nobody(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, status, body, named) -> None:
    fake = Mailgun()
    fake.script = [(status, {}, body)]
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "MAILGUN_DOMAIN" in outcome.stopped_by.message
    assert body["message"] in outcome.stopped_by.message          # Mailgun's own words
    assert named in outcome.stopped_by.hint
    assert outcome.counts["failed"] == outcome.counts["deferred"] == 0
    assert outcome.counts["pending"] == 5 and fake.accepted == []


@pytest.mark.parametrize(("domain", "words"), [
    (MailgunDomain("mg.example.org", sandbox=True), "is a Mailgun sandbox domain"),
    (MailgunDomain("mg.example.org", verified=False), "its state is 'unverified'"),
    (MailgunDomain("mg.example.org", unsubscribe=True), "Mailgun's unsubscribe tracking is on"),
])
def test_send_refuses_to_start_on_a_domain_that_would_misbehave(send_project: Path,  # type: ignore[no-untyped-def]
                                                                http_server, domain, words) -> None:
    fake = Mailgun(domains=[domain])
    with pytest.raises(ConfigurationError) as info:
        prepare_send(send_project, mailgun_env(http_server(fake.app())), "mailgun")
    assert words in info.value.message
    assert fake.sends == 0


def test_a_sending_key_that_cannot_read_settings_sends_with_a_warning(send_project: Path,  # type: ignore[no-untyped-def]
                                                                      http_server) -> None:
    fake = Mailgun()
    fake.sending_key = True
    app = fake.app()
    prepared = prepare_send(send_project, mailgun_env(http_server(app)), "mailgun")
    try:
        assert any("cannot read the settings of mg.example.org" in line
                   for line in prepared.adapter_notes)
        assert any("unsubscribe tracking is off" in line for line in sending.summary(prepared))
        outcome = sending.run(prepared, LoopOptions())
    finally:
        prepared.close()
    assert outcome.complete and set(fake.recipients) == SEND_ADDRESSES


def test_a_lost_answer_is_looked_up_not_resent(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                               quick_confirm) -> None:
    fake = Mailgun()
    fake.slow = 1
    fake.slow_seconds = 1.0
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun",
                       timeout=0.3)
    assert outcome.complete
    assert sorted(fake.recipients) == sorted(SEND_ADDRESSES)     # once each, none twice
    assert any("/events?" in path for path in fake.paths("GET"))
    assert outcome.possible_repeats == 0


def test_a_lost_answer_mailgun_cannot_confirm_is_resent_with_the_same_message_id(  # type: ignore[no-untyped-def]
        send_project: Path, http_server, quick_confirm) -> None:
    fake = Mailgun()
    fake.slow, fake.slow_seconds, fake.events_hidden = 1, 1.0, 100
    outcome = run_send(send_project, mailgun_env(http_server(fake.app())), "mailgun",
                       timeout=0.3)
    assert outcome.complete
    twice = [r for r in set(fake.recipients) if fake.recipients.count(r) == 2]
    assert len(twice) == 1 and len(fake.accepted) == 6
    copies = [a.provider_id for a in fake.accepted if a.recipient == twice[0]]
    assert copies[0] == copies[1]                    # the same Message-ID both times
    row = ledger_rows(send_project)[twice[0]]
    assert row["status"] == "sent" and row["repeat_possible"]
    assert outcome.possible_repeats == 1
