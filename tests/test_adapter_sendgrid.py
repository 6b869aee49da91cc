"""The SendGrid adapter against a fake SendGrid that answers as SendGrid documents."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_providers import HREF_RE, SENDGRID_RESERVED, URL_RE, Sendgrid
from helpers import SEND_ADDRESSES, adapter, make_built, messages, run_send, sendgrid_env

from newsletter.adapters.http import HttpAdapter
from newsletter.errors import ConfigurationError


def test_every_request_turns_sendgrids_four_trackings_off(send_project: Path,  # type: ignore[no-untyped-def]
                                                           http_server) -> None:
    fake = Sendgrid()              # an account with click, open, subscription and GA tracking on
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    assert outcome.complete and set(fake.recipients) == SEND_ADDRESSES
    for accepted in fake.accepted:
        request = accepted.request
        assert request["tracking_settings"] == {
            name: {"enable": False} for name in ("click_tracking", "open_tracking",
                                                 "subscription_tracking", "ganalytics")}
        content = {c["type"]: c["value"] for c in request["content"]}
        assert accepted.links() == (HREF_RE.findall(content["text/html"])
                                    + URL_RE.findall(content["text/plain"]))
        assert accepted.delivered["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/u/")
        assert "sendgrid.net" not in accepted.html + accepted.text


def test_our_list_headers_reach_sendgrid_and_none_is_reserved(send_project: Path,  # type: ignore[no-untyped-def]
                                                               http_server) -> None:
    fake = Sendgrid()
    run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    headers = fake.accepted[0].request["headers"]
    assert not {name.lower() for name in headers} & SENDGRID_RESERVED
    assert headers["Message-ID"].startswith("<2026-spring.")
    assert headers["List-Id"] == ("Kent and Medway Prevent Partner Newsletter "
                                  "<prevent-newsletter.example.org>")
    assert (headers["Precedence"], headers["Auto-Submitted"],
            headers["Content-Language"]) == ("bulk", "auto-generated", "en-GB")
    assert [c["type"] for c in fake.accepted[0].request["content"]] == ["text/plain",
                                                                        "text/html"]


def test_a_test_copy_says_so_to_sendgrid(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    sendgrid = adapter("sendgrid", send_project, sendgrid_env(http_server(fake.app())))
    (outcome,) = sendgrid.send_batch(messages(send_project, make_built(), ["ed@example.org"],
                                              test=True))
    assert outcome.status == "sent" and outcome.provider_id
    assert fake.accepted[0].delivered["X-Newsletter-Test"] == "yes"


def test_429_waits_until_x_ratelimit_reset(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid()
    fake.script = [fake.rate_limited(120)]
    sendgrid = adapter("sendgrid", send_project, sendgrid_env(http_server(fake.app())))
    before = time.time()
    (outcome,) = sendgrid.send_batch(messages(send_project, make_built(), ["a@school.example"]))
    assert outcome.rate_limited
    assert 115 <= outcome.retry_after <= 125         # SendGrid's reset, not the 60 s fallback
    assert sendgrid.control._resume_at - time.monotonic() > 100
    assert time.time() - before < 60                 # the wait is the loop's, not a sleep here


def test_429_is_retried_and_not_counted_as_an_attempt(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    from helpers import ledger_rows

    fake = Sendgrid()
    fake.script = [fake.rate_limited(0)]
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    assert outcome.complete and fake.sends == 6
    assert {row["attempts"] for row in ledger_rows(send_project).values()} == {1}


def test_an_unverified_sender_stops_the_run_and_names_the_sender(send_project: Path,  # type: ignore[no-untyped-def]
                                                                 http_server) -> None:
    fake = Sendgrid(senders=("elsewhere.example",))
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert "The from address does not match a verified Sender Identity" in \
        outcome.stopped_by.message
    assert "sender: email:" in outcome.stopped_by.hint
    assert "SENDGRID_API_KEY" not in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5 and outcome.counts["failed"] == 0


def test_a_key_without_mail_send_is_named(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    fake = Sendgrid(scopes=("stats.read",))
    outcome = run_send(send_project, sendgrid_env(http_server(fake.app())), "sendgrid")
    assert isinstance(outcome.stopped_by, ConfigurationError)
    assert '"access forbidden"' in outcome.stopped_by.message
    assert "Mail Send permission" in outcome.stopped_by.hint
    assert outcome.counts["pending"] == 5


def test_a_refused_address_fails_that_recipient_and_other_400s_stop(send_project: Path,  # type: ignore[no-untyped-def]
                                                                    http_server) -> None:
    fake = Sendgrid()
    fake.invalid = {"dan@district.example"}
    url = http_server(fake.app())
    outcome = run_send(send_project, sendgrid_env(url), "sendgrid")
    # A refused address is a hard bounce: its row fails and the address is suppressed at once.
    assert outcome.counts["sent"] == 4 and outcome.counts["suppressed"] == 1
    assert outcome.bounced[0][:2] == ("dan@district.example", "bounced-hard")
    sendgrid = adapter("sendgrid", send_project, sendgrid_env(url))
    (refused,) = sendgrid.send_batch(messages(send_project, make_built(),
                                              ["dan@district.example"]))
    assert refused.status == "failed" and refused.recipient_problem
    fake.script = [(400, {}, {"errors": [{"message": "The content value must be a string at "
                                          "least one character in length.",
                                          "field": "content.0.value", "help": None}]})]
    (stopped,) = sendgrid.send_batch(messages(send_project, make_built(), ["a@school.example"]))
    assert stopped is None                           # not tried: the run stopped
    assert "content value must be a string" in sendgrid.control.stop_reason.message


def test_a_lost_answer_is_resent_with_the_same_message_id(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HttpAdapter, "confirm_waits", (0.1,))
    fake = Sendgrid()
    fake.slow, fake.slow_seconds = 1, 1.0
    sendgrid = adapter("sendgrid", send_project, sendgrid_env(http_server(fake.app())),
                       timeout=0.3)
    message = messages(send_project, make_built(), ["a@school.example"])
    (lost,) = sendgrid.send_batch(message)
    assert lost.status == "unknown"
    assert "SendGrid offers no way to look it up" in lost.error
    (again,) = sendgrid.send_batch(message)
    assert again.status == "sent"
    ids = [a.request["headers"]["Message-ID"] for a in fake.accepted]
    assert len(ids) == 2 and ids[0] == ids[1]
