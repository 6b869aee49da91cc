"""Provider webhooks: each request signed exactly as the provider documents (see the doc links
in newsletter/hooks/*.py), checked, and normalised into one vocabulary."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import basic_auth, public_key_setting
from helpers import mailgun_body as _mailgun_body
from helpers import sendgrid_request as _sendgrid_request

from newsletter.bounces.events import EventType
from newsletter.errors import ConfigurationError
from newsletter.hooks import Malformed, Unauthorized, provider_for

NOW = 1_776_154_000.0
MAILGUN_KEY = "mailgun-webhook-signing-key-for-tests"


def clock() -> float:
    return NOW


# --- Mailgun ------------------------------------------------------------------------------


def mailgun_body(event_data: dict, *, key: str = MAILGUN_KEY, timestamp: float = NOW,
                 token: str = "a" * 50) -> bytes:
    return _mailgun_body(event_data, key=key, timestamp=timestamp, token=token)


def mailgun_failed(severity: str = "permanent", **delivery: object) -> dict:
    return {"event": "failed", "severity": severity, "reason": "bounce",
            "recipient": "dsl@academy2.example.org", "timestamp": NOW - 5,
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "message": {"headers": {"message-id": "2026-spring.p0002@news.example.org"}},
            "delivery-status": {"code": 550, "message": "5.1.1 The email account that you "
                                "tried to reach does not exist", **delivery}}


@pytest.fixture
def mailgun():  # type: ignore[no-untyped-def]
    return provider_for("mailgun", {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}, clock=clock)


def test_mailgun_permanent_failure_is_a_hard_bounce(mailgun) -> None:  # type: ignore[no-untyped-def]
    body = mailgun_body(mailgun_failed())
    assert mailgun.authenticate({}, body) == "mailgun:" + "a" * 50
    [event] = mailgun.parse(body).events
    assert (event.type, event.address, event.status, event.message_id) == (
        EventType.BOUNCED_HARD, "dsl@academy2.example.org", "5.1.1",
        "<2026-spring.p0002@news.example.org>")
    assert event.raw["event-data"]["id"] == "G9Bn5sl1TC6nu79C8C0bwg"


def test_mailgun_mailbox_full_is_a_soft_bounce(mailgun) -> None:  # type: ignore[no-untyped-def]
    body = mailgun_body(mailgun_failed(code=552, message="5.2.2 mailbox full"))
    assert mailgun.parse(body).events[0].type == EventType.BOUNCED_SOFT


def test_mailgun_temporary_failure_is_skipped(mailgun) -> None:  # type: ignore[no-untyped-def]
    parsed = mailgun.parse(mailgun_body(mailgun_failed("temporary")))
    assert parsed.events == []
    assert parsed.skipped == ["temporary failure: Mailgun retries it"]


@pytest.mark.parametrize(("kind", "expected"), [
    ("delivered", EventType.DELIVERED), ("complained", EventType.COMPLAINED),
    ("unsubscribed", EventType.UNSUBSCRIBED)])
def test_mailgun_other_events(mailgun, kind: str, expected: EventType) -> None:  # type: ignore[no-untyped-def]
    body = mailgun_body({"event": kind, "recipient": "dsl@academy2.example.org",
                         "timestamp": NOW})
    assert mailgun.parse(body).events[0].type == expected


def test_mailgun_opens_are_skipped(mailgun) -> None:  # type: ignore[no-untyped-def]
    body = mailgun_body({"event": "opened", "recipient": "x@example.org", "timestamp": NOW})
    assert mailgun.parse(body).skipped == ["opened events are not used"]


def test_mailgun_wrong_signature_is_refused(mailgun) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match="does not verify"):
        mailgun.authenticate({}, mailgun_body(mailgun_failed(), key="another key"))


def test_mailgun_altered_body_signature_fields_are_refused(mailgun) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(mailgun_body(mailgun_failed()))
    body["signature"]["token"] = "b" * 50
    with pytest.raises(Unauthorized, match="does not verify"):
        mailgun.authenticate({}, json.dumps(body).encode())


def test_mailgun_old_timestamp_is_refused(mailgun) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match="seconds from now"):
        mailgun.authenticate({}, mailgun_body(mailgun_failed(), timestamp=NOW - 3600))


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b'{"signature": "x"}'])
def test_mailgun_without_a_signature_is_refused(mailgun, body: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match="no Mailgun signature"):
        mailgun.authenticate({}, body)


def test_mailgun_without_a_key_refuses_everything() -> None:
    provider = provider_for("mailgun", {}, clock=clock)
    assert not provider.configured and provider.missing() == "MAILGUN_WEBHOOK_SIGNING_KEY"
    with pytest.raises(Unauthorized):
        provider.authenticate({}, mailgun_body(mailgun_failed(), key=""))


def test_mailgun_without_event_data_is_malformed(mailgun) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(mailgun_body({}))
    del body["event-data"]
    with pytest.raises(Malformed):
        mailgun.parse(json.dumps(body).encode())


def test_mailgun_event_without_recipient_is_skipped(mailgun) -> None:  # type: ignore[no-untyped-def]
    parsed = mailgun.parse(mailgun_body({"event": "delivered", "timestamp": NOW}))
    assert parsed.events == [] and parsed.skipped[0].startswith("cannot be read")


# --- SendGrid -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_request(private, events: object, *,  # type: ignore[no-untyped-def]
                     timestamp: float = NOW) -> tuple[dict[str, str], bytes]:
    return _sendgrid_request(private, events, timestamp=timestamp)


def sg_event(kind: str, **fields: object) -> dict:
    return {"email": "dsl@academy2.example.org", "timestamp": int(NOW), "event": kind,
            "sg_event_id": f"evt-{kind}-{fields.get('type', '')}", "sg_message_id": "m1.filter",
            "smtp-id": "<2026-spring.p0002@news.example.org>", **fields}


@pytest.fixture
def sendgrid(sendgrid_key):  # type: ignore[no-untyped-def]
    return provider_for("sendgrid", {"SENDGRID_WEBHOOK_PUBLIC_KEY":
                                     public_key_setting(sendgrid_key)}, clock=clock)


def test_sendgrid_batch_is_normalised(sendgrid, sendgrid_key) -> None:  # type: ignore[no-untyped-def]
    events = [sg_event("delivered"),
              sg_event("bounce", type="bounce", status="5.1.1",
                       reason="550 5.1.1 The email account does not exist"),
              sg_event("bounce", type="blocked", status="5.7.1", reason="550 5.7.1 blocked"),
              sg_event("spamreport"), sg_event("unsubscribe"), sg_event("open"),
              sg_event("dropped", reason="Bounced Address"), "not an object"]
    headers, body = sendgrid_request(sendgrid_key, events)
    assert sendgrid.authenticate(headers, body).startswith("sendgrid:")
    parsed = sendgrid.parse(body)
    assert [e.type for e in parsed.events] == [
        EventType.DELIVERED, EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT,
        EventType.COMPLAINED, EventType.UNSUBSCRIBED, EventType.BOUNCED_HARD]
    assert parsed.events[1].status == "5.1.1"
    assert parsed.events[1].event_id == "evt-bounce-bounce"
    assert parsed.skipped == ["open events are not used",
                              "event 7 cannot be read: an event is not a JSON object"]


def test_sendgrid_wrong_signature_is_refused(sendgrid) -> None:  # type: ignore[no-untyped-def]
    other = ec.generate_private_key(ec.SECP256R1())
    headers, body = sendgrid_request(other, [sg_event("delivered")])
    with pytest.raises(Unauthorized, match="does not verify"):
        sendgrid.authenticate(headers, body)


def test_sendgrid_altered_body_is_refused(sendgrid, sendgrid_key) -> None:  # type: ignore[no-untyped-def]
    headers, body = sendgrid_request(sendgrid_key, [sg_event("delivered")])
    with pytest.raises(Unauthorized, match="does not verify"):
        sendgrid.authenticate(headers, body.replace(b"delivered", b"spamreport"))


def test_sendgrid_old_timestamp_is_refused(sendgrid, sendgrid_key) -> None:  # type: ignore[no-untyped-def]
    headers, body = sendgrid_request(sendgrid_key, [sg_event("delivered")], timestamp=NOW - 600)
    with pytest.raises(Unauthorized, match="seconds from now"):
        sendgrid.authenticate(headers, body)


def test_sendgrid_without_headers_is_refused(sendgrid) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match="no SendGrid signature headers"):
        sendgrid.authenticate({}, b"[]")


def test_sendgrid_garbage_signature_is_refused(sendgrid) -> None:  # type: ignore[no-untyped-def]
    headers = {"x-twilio-email-event-webhook-signature": "!!!",
               "x-twilio-email-event-webhook-timestamp": str(int(NOW))}
    with pytest.raises(Unauthorized):
        sendgrid.authenticate(headers, b"[]")


def test_sendgrid_not_an_array_is_malformed(sendgrid) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Malformed, match="not a JSON array"):
        sendgrid.parse(b'{"event": "delivered"}')


def test_sendgrid_key_as_pem_is_accepted(sendgrid_key) -> None:  # type: ignore[no-untyped-def]
    pem = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    provider = provider_for("sendgrid", {"SENDGRID_WEBHOOK_PUBLIC_KEY": pem}, clock=clock)
    headers, body = sendgrid_request(sendgrid_key, [sg_event("delivered")])
    provider.authenticate(headers, body)


def test_sendgrid_bad_key_setting_says_where_to_find_the_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        provider_for("sendgrid", {"SENDGRID_WEBHOOK_PUBLIC_KEY": "not a key"})
    assert caught.value.message.startswith("SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key")
    assert "Verification Key" in caught.value.hint


# --- Postmark -----------------------------------------------------------------------------

POSTMARK_ENV = {"POSTMARK_WEBHOOK_USER": "hooks", "POSTMARK_WEBHOOK_PASSWORD": "pm-secret"}


@pytest.fixture
def postmark():  # type: ignore[no-untyped-def]
    return provider_for("postmark", POSTMARK_ENV, clock=clock)


def pm_bounce(kind: str = "HardBounce") -> dict:
    # https://postmarkapp.com/developer/webhooks/bounce-webhook
    return {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": kind, "TypeCode": 1,
            "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Description": "The server was unable to deliver your message (ex: unknown user, "
            "mailbox not found).", "Details": "smtp;550 5.1.1 The email account that you tried "
            "to reach does not exist.", "Email": "DSL@academy2.example.org",
            "BouncedAt": "2026-04-14T09:12:05.2735393+01:00", "Inactive": True}


def test_postmark_hard_bounce(postmark) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(pm_bounce()).encode()
    assert postmark.authenticate(basic_auth("hooks", "pm-secret"), body) == ""
    [event] = postmark.parse(body).events
    assert (event.type, event.address, event.status, event.event_id) == (
        EventType.BOUNCED_HARD, "dsl@academy2.example.org", "5.1.1",
        "Bounce:4323372036854775807")
    assert event.at == pytest.approx(1776154325.273539)


@pytest.mark.parametrize(("kind", "expected"), [
    ("SoftBounce", EventType.BOUNCED_SOFT), ("SpamNotification", EventType.COMPLAINED)])
def test_postmark_bounce_types(postmark, kind: str, expected: EventType) -> None:  # type: ignore[no-untyped-def]
    assert postmark.parse(json.dumps(pm_bounce(kind)).encode()).events[0].type == expected


def test_postmark_transient_is_skipped(postmark) -> None:  # type: ignore[no-untyped-def]
    parsed = postmark.parse(json.dumps(pm_bounce("Transient")).encode())
    assert parsed.skipped == ["Bounce of type Transient: not a bounce we count"]


def test_postmark_delivery_complaint_and_unsubscribe(postmark) -> None:  # type: ignore[no-untyped-def]
    delivery = {"RecordType": "Delivery", "MessageID": "m", "Recipient": "dsl@academy2.example.org",
                "DeliveredAt": "2026-04-14T09:12:05Z", "Details": "Test delivery webhook details"}
    complaint = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint",
                 "Email": "dsl@academy2.example.org", "BouncedAt": "2026-04-14T09:12:05Z"}
    change = {"RecordType": "SubscriptionChange", "Recipient": "dsl@academy2.example.org",
              "SuppressSending": True, "SuppressionReason": "ManualSuppression",
              "ChangedAt": "2026-04-14T09:12:05Z"}
    lifted = dict(change, SuppressSending=False)
    types = [postmark.parse(json.dumps(doc).encode()).events[0].type
             for doc in (delivery, complaint, change)]
    assert types == [EventType.DELIVERED, EventType.COMPLAINED, EventType.UNSUBSCRIBED]
    assert postmark.parse(json.dumps(lifted).encode()).events == []


@pytest.mark.parametrize("headers", [
    {}, basic_auth("hooks", "wrong"), basic_auth("other", "pm-secret"),
    {"authorization": "Basic !!"}, {"authorization": "Bearer pm-secret"}])
def test_postmark_wrong_credentials_are_refused(postmark, headers: dict) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized):
        postmark.authenticate(headers, b"{}")


def test_postmark_without_settings_refuses_everything() -> None:
    provider = provider_for("postmark", {}, clock=clock)
    with pytest.raises(Unauthorized):
        provider.authenticate(basic_auth("", ""), b"{}")


def test_postmark_not_an_object_is_malformed(postmark) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Malformed):
        postmark.parse(b"[1, 2]")


def test_postmark_event_without_an_address_is_skipped(postmark) -> None:  # type: ignore[no-untyped-def]
    parsed = postmark.parse(json.dumps({"RecordType": "Delivery"}).encode())
    assert parsed.events == [] and parsed.skipped[0].startswith("cannot be read")


def test_an_unknown_provider_is_none() -> None:
    assert provider_for("ses", {}) is None
