"""The smtp adapter against a real SMTP server (aiosmtpd) with faults injected."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from helpers import Driven, make_built

from newsletter.adapters.base import AdapterSettings
from newsletter.adapters.smtp import SmtpAdapter, parse_smtp_url
from newsletter.errors import ConfigurationError
from newsletter.message import MessageFactory, Recipient
from newsletter.project import Project
from newsletter.settings import Settings
from newsletter.tracking.tokens import Signer


@pytest.fixture
def factory(tmp_path: Path) -> MessageFactory:
    project = Project(root=tmp_path, settings=Settings(root=tmp_path, env={},
                                                      list_id_domain="news.example.org"))
    return MessageFactory(make_built(), project, Signer({"k1": b"secret"}, "k1"))


def message(factory: MessageFactory, address: str, n: int = 1):  # type: ignore[no-untyped-def]
    return factory.make(Recipient(address, "Ann Lee", f"p{n}", f"<spring.p{n}@news.example.org>",
                                  "schools", n))


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def server(smtp_server, request):  # type: ignore[no-untyped-def]
    """A real SMTP server, with and without PIPELINING advertised."""
    recorder, url = smtp_server()
    recorder.pipelining = request.param
    return recorder, url


def adapter(url: str) -> Driven:
    return Driven(SmtpAdapter(AdapterSettings(root=Path("."), env={"NEWSLETTER_SMTP_URL": url})))


def test_sends_over_one_reused_connection(server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = server
    a = adapter(url)
    try:
        outcomes = [a.attempt(message(factory, f"r{i}@example.org", i)) for i in range(3)]
        first = a._conn
        assert first is not None
    finally:
        a.close()
    assert [o.status for o in outcomes] == ["sent"] * 3
    assert "queued as 3" in outcomes[2].provider_id
    assert len(recorder.messages) == 3
    parsed = email.message_from_bytes(recorder.messages[0], policy=policy.default)
    assert parsed["Message-ID"] == "<spring.p0@news.example.org>"
    assert parsed["To"].addresses[0].addr_spec == "r0@example.org"
    # Dot-stuffing round trip: a line starting with "." arrives intact.
    assert ".leading dot line" in parsed.get_body(("html",)).get_content()
    assert ".a line starting with a dot" in parsed.get_body(("plain",)).get_content()


def test_421_at_greeting_is_deferred(smtp_server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server(greeting="421 4.3.2 too busy, try later")
    a = adapter(url)
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
    finally:
        a.close()
    assert outcome.status == "deferred"
    assert "421" in outcome.error
    assert recorder.messages == []


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("451 4.7.1 greylisted, try later", "deferred", "451"),
    ("550 5.1.1 no such user", "failed", "550"),
    ("data:552 5.2.2 mailbox full", "deferred", "552"),     # RFC 5321: treat 552 as temporary
    ("data:554 5.7.1 rejected as spam", "failed", "554"),
])
def test_refusals_touch_only_that_recipient(server, factory, fault, status, code) -> None:  # type: ignore[no-untyped-def]
    recorder, url = server
    recorder.faults["bad@example.org"] = [fault]
    a = adapter(url)
    try:
        before = a.attempt(message(factory, "ok1@example.org", 1))
        refused = a.attempt(message(factory, "bad@example.org", 2))
        after = a.attempt(message(factory, "ok2@example.org", 3))
    finally:
        a.close()
    assert (before.status, refused.status, after.status) == ("sent", status, "sent")
    assert code in refused.error
    assert len(recorder.messages) == 2


def test_connection_dropped_after_data_is_unknown(server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = server
    recorder.faults["drop@example.org"] = ["drop"]
    a = adapter(url)
    try:
        dropped = a.attempt(message(factory, "drop@example.org", 1))
        again = a.attempt(message(factory, "next@example.org", 2))   # reconnects
    finally:
        a.close()
    assert dropped.status == "unknown"
    assert "may have been delivered" in dropped.error
    assert again.status == "sent"


def test_a_garbled_answer_after_data_is_unknown_not_failed(server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = server
    recorder.faults["odd@example.org"] = ["data:OK thanks, got it"]   # no reply code at all
    a = adapter(url)
    try:
        garbled = a.attempt(message(factory, "odd@example.org", 1))
        again = a.attempt(message(factory, "next@example.org", 2))   # on a fresh connection
    finally:
        a.close()
    assert garbled.status == "unknown"
    assert "the answer after the message data could not be read" in garbled.error
    assert "may have been delivered" in garbled.error
    assert again.status == "sent"


def test_stalled_server_times_out_as_unknown(server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = server
    recorder.faults["slow@example.org"] = ["stall"]
    a = adapter(url.replace("timeout=1", "timeout=0.3"))
    try:
        outcome = a.attempt(message(factory, "slow@example.org"))
    finally:
        a.close()
    assert outcome.status == "unknown"
    assert "timed out" in outcome.error


def test_refused_connection_is_deferred(factory) -> None:  # type: ignore[no-untyped-def]
    from helpers import free_port

    a = adapter(f"smtp://127.0.0.1:{free_port()}?timeout=1")
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
    finally:
        a.close()
    assert outcome.status == "deferred"
    assert "connecting to 127.0.0.1" in outcome.error


def test_missing_setting_names_every_place() -> None:
    with pytest.raises(ConfigurationError) as info:
        SmtpAdapter(AdapterSettings(root=Path("."), env={}))
    text = info.value.format()
    assert "NEWSLETTER_SMTP_URL" in text
    assert "export NEWSLETTER_SMTP_URL=" in text
    assert "never read from newsletter.yaml" in text


@pytest.mark.parametrize(("url", "expected"), [
    ("http://host", "must look like smtp://"),
    ("smtp://host?tls=1", "unknown options: tls"),
    ("smtp://host:notaport", "bad port"),
    ("smtps://host?starttls=true", "asks for TLS twice"),
])
def test_bad_urls(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        parse_smtp_url(url)


def test_url_parts() -> None:
    s = parse_smtp_url("smtps://user%40x:p%3Ass@mail.example.org?timeout=5")
    assert (s.host, s.port, s.tls, s.username, s.password, s.timeout) == \
        ("mail.example.org", 465, True, "user@x", "p:ss", 5.0)
    assert "p:ss" not in s.describe()
    s = parse_smtp_url("smtp://relay:587?starttls=true")
    assert (s.port, s.starttls, s.tls) == (587, True, False)


def test_pipelining_is_used_when_offered(smtp_server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server()
    recorder.pipelining = True
    recorder.faults["bad@example.org"] = ["550 5.1.1 no such user"]
    a = adapter(url)
    try:
        refused = a.attempt(message(factory, "bad@example.org", 1))
        sent = a.attempt(message(factory, "ok@example.org", 2))
        assert a._conn is not None and a._conn.has_extn("pipelining")
    finally:
        a.close()
    assert (refused.status, sent.status) == ("failed", "sent")
    assert len(recorder.messages) == 1


def test_login_and_a_refused_login_stops_the_run(smtp_server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server(auth=("news", "s3cret"))
    good = adapter(url.replace("smtp://", "smtp://news:s3cret@"))
    try:
        assert good.attempt(message(factory, "ann@example.org")).status == "sent"
    finally:
        good.close()
    bad = adapter(url.replace("smtp://", "smtp://news:wrong@"))
    try:
        outcome = bad.attempt(message(factory, "bob@example.org"))
    finally:
        bad.close()
    assert outcome is None, outcome.error  # nobody is marked failed...
    reason = bad.control.stop_reason                   # ...and the run stops
    assert reason is not None
    assert reason.message.startswith("the SMTP server refused our login: 535")
    assert reason.hint == "check the user and password in NEWSLETTER_SMTP_URL"
    assert len(recorder.messages) == 1


def test_login_to_a_server_that_offers_none_stops_the_run(smtp_server, factory) -> None:  # type: ignore[no-untyped-def]
    recorder, url = smtp_server()
    a = adapter(url.replace("smtp://", "smtp://news:s3cret@"))
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
    finally:
        a.close()
    assert outcome is None
    reason = a.control.stop_reason
    assert reason is not None
    assert reason.message.startswith(
        "the SMTP server cannot do what NEWSLETTER_SMTP_URL asks: SMTP AUTH extension")
    assert reason.hint.startswith("this server takes no login: remove user:password")
    assert recorder.messages == []
