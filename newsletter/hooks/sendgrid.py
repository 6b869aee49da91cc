"""SendGrid's signed Event Webhook.

Authentication, as documented at
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
SendGrid signs ``timestamp + raw body`` with ECDSA (P-256, SHA-256). The signature (base64 DER)
is in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``, and the verification key the dashboard shows is a
base64 DER public key, which goes in ``SENDGRID_WEBHOOK_PUBLIC_KEY``. SendGrid documents no
replay window: we allow five minutes either way, and refuse a signature seen before.

Events, as documented at
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event : the body is a JSON
array; each object's ``event`` is delivered, bounce (``type`` bounce or blocked; ``status`` the
enhanced code, ``reason`` the server's words), dropped, spamreport, unsubscribe,
group_unsubscribe, and engagement events we skip; ``sg_event_id`` identifies the event.
django-anymail's ``anymail/webhooks/sendgrid.py`` reads the same fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.bounces.events import EventType, bounce_type, status_in
from newsletter.errors import ConfigurationError
from newsletter.hooks import (
    Malformed,
    Parsed,
    Provider,
    Unauthorized,
    WebhookEvent,
    angle,
    load_json,
    log,
)

KEY_SETTING = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

_SIMPLE = {"delivered": EventType.DELIVERED, "spamreport": EventType.COMPLAINED,
           "unsubscribe": EventType.UNSUBSCRIBED, "group_unsubscribe": EventType.UNSUBSCRIBED}
# "dropped": SendGrid did not send because the address is on one of its own lists.
_DROPPED = {"bounced address": EventType.BOUNCED_HARD, "invalid": EventType.BOUNCED_HARD,
            "spam reporting address": EventType.COMPLAINED,
            "unsubscribed address": EventType.UNSUBSCRIBED}


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or as PEM."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"{KEY_SETTING} is not a public key: {exc}",
            hint="copy the Verification Key from SendGrid's Mail Settings > Event Webhook "
            "(Signed Event Webhook) as it is shown: one line of base64") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{KEY_SETTING} is not an elliptic-curve (ECDSA) public key",
                                 hint="copy the Verification Key of the Signed Event Webhook")
    return key


class SendgridHooks(Provider):
    """``POST /hooks/sendgrid``."""

    name = "sendgrid"
    settings = (KEY_SETTING,)

    def __init__(self, env: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        value = env.get(KEY_SETTING, "").strip()
        self.key = load_public_key(value) if value else None

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        signature = headers.get(SIGNATURE_HEADER, "")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            raise Unauthorized("no SendGrid signature headers")
        if self.key is None:
            raise Unauthorized(f"{KEY_SETTING} is not set")
        try:
            self.key.verify(base64.b64decode(signature), timestamp.encode("utf-8") + body,
                            ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise Unauthorized("the SendGrid signature does not verify") from exc
        self.check_timestamp(timestamp)
        return "sendgrid:" + hashlib.sha256(signature.encode("utf-8")).hexdigest()

    def parse(self, body: bytes) -> Parsed:
        document = load_json(body)
        if not isinstance(document, list):
            raise Malformed("the body is not a JSON array of events")
        parsed = Parsed()
        for index, item in enumerate(document):
            try:
                event = self._event(item)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("sendgrid webhook: event %d skipped, cannot be read: %s", index, exc)
                parsed.skipped.append(f"event {index} cannot be read: {exc}")
                continue
            if isinstance(event, str):
                parsed.skipped.append(event)
            else:
                parsed.events.append(event)
        return parsed

    def _event(self, item: Any) -> WebhookEvent | str:
        if not isinstance(item, dict):
            raise TypeError("an event is not a JSON object")
        kind = str(item["event"])
        status = text = ""
        if kind in _SIMPLE:
            type_ = _SIMPLE[kind]
        elif kind == "bounce":
            text = str(item.get("reason") or "")
            status = status_in(str(item.get("status") or "")) or status_in(text)
            # "blocked" is SendGrid's word for a refusal that may pass (reputation, content).
            type_ = EventType.BOUNCED_SOFT if item.get("type") == "blocked" \
                else bounce_type(status, text=text)
        elif kind == "dropped":
            text = str(item.get("reason") or "")
            if text.strip().lower() not in _DROPPED:
                return f"dropped ({text or 'no reason'}): not about the address"
            type_ = _DROPPED[text.strip().lower()]
        else:
            return f"{kind} events are not used"
        address = str(item["email"]).strip().lower()
        if "@" not in address:
            raise ValueError(f"email {address!r} is not an address")
        event_id = str(item.get("sg_event_id") or "") or hashlib.sha256(
            json.dumps(item, sort_keys=True).encode("utf-8")).hexdigest()
        return WebhookEvent(
            provider=self.name, event_id=event_id, type=type_, address=address,
            at=float(item["timestamp"]), message_id=angle(item.get("smtp-id")),
            provider_message_id=str(item.get("sg_message_id") or ""), status=status,
            text=text[:500], raw=item)
