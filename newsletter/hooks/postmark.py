"""Postmark's webhooks.

Authentication, as documented at
https://postmarkapp.com/developer/webhooks/webhooks-overview ("Protecting your webhook"):
Postmark signs nothing; it sends HTTP basic auth credentials put in the webhook URL
(``https://USER:PASSWORD@tracker.example.org/hooks/postmark``). We compare them with
``POSTMARK_WEBHOOK_USER`` and ``POSTMARK_WEBHOOK_PASSWORD``. There is no timestamp to check,
so a repeat is recognised only by the event's identity (stored once).

Events, one JSON object per request, ``RecordType`` saying which:
Delivery (https://postmarkapp.com/developer/webhooks/delivery-webhook),
Bounce (https://postmarkapp.com/developer/webhooks/bounce-webhook; ``Type`` HardBounce,
SoftBounce, Transient, ...), SpamComplaint
(https://postmarkapp.com/developer/webhooks/spam-complaint-webhook) and SubscriptionChange
(https://postmarkapp.com/developer/webhooks/subscription-change-webhook). Opens and clicks are
skipped. django-anymail's ``anymail/webhooks/postmark.py`` reads the same fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from newsletter.bounces.events import EventType, status_in
from newsletter.hooks import (
    Malformed,
    Parsed,
    Provider,
    Unauthorized,
    WebhookEvent,
    angle,
    iso_time,
    load_json,
    log,
)

USER_SETTING = "POSTMARK_WEBHOOK_USER"
PASSWORD_SETTING = "POSTMARK_WEBHOOK_PASSWORD"

# Bounce "Type" values (https://postmarkapp.com/developer/api/bounce-api#bounce-types).
# Transient and DnsError are delays Postmark retries; auto-responders are not bounces.
_BOUNCE_TYPES = {
    "HardBounce": EventType.BOUNCED_HARD,
    "BadEmailAddress": EventType.BOUNCED_HARD,
    "SoftBounce": EventType.BOUNCED_SOFT,
    "Blocked": EventType.BOUNCED_SOFT,
    "DMARCPolicy": EventType.BOUNCED_SOFT,
    "SpamNotification": EventType.COMPLAINED,
    "SpamComplaint": EventType.COMPLAINED,
}
_SUPPRESSION_REASONS = {
    "HardBounce": EventType.BOUNCED_HARD,
    "SpamComplaint": EventType.COMPLAINED,
    "ManualSuppression": EventType.UNSUBSCRIBED,
}


class PostmarkHooks(Provider):
    """``POST /hooks/postmark``."""

    name = "postmark"
    settings = (USER_SETTING, PASSWORD_SETTING)

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Unauthorized("no basic auth credentials")
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8") \
                .partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("basic auth credentials cannot be read") from exc
        want_user = self.env.get(USER_SETTING, "").strip()
        want_password = self.env.get(PASSWORD_SETTING, "").strip()
        # Compare both, always, so the time taken says nothing about which one was wrong.
        ok_user = hmac.compare_digest(user.encode(), want_user.encode())
        ok_password = hmac.compare_digest(password.encode(), want_password.encode())
        if not (sep and want_user and want_password and ok_user and ok_password):
            raise Unauthorized("wrong basic auth credentials")
        return ""

    def parse(self, body: bytes) -> Parsed:
        document = load_json(body)
        if not isinstance(document, dict):
            raise Malformed("the body is not a JSON object")
        parsed = Parsed()
        try:
            event = self._event(document, body)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("postmark webhook: event skipped, cannot be read: %s", exc)
            parsed.skipped.append(f"cannot be read: {exc}")
            return parsed
        if isinstance(event, str):
            parsed.skipped.append(event)
        else:
            parsed.events.append(event)
        return parsed

    def _event(self, item: dict[str, Any], body: bytes) -> WebhookEvent | str:
        record = str(item["RecordType"])
        kind = _kind(record, item)
        if isinstance(kind, str):
            return kind
        type_, text, status = kind
        address = str(item.get("Email") or item.get("Recipient") or "").strip().lower()
        if "@" not in address:
            raise ValueError(f"recipient {address!r} is not an address")
        if "ID" in item:
            event_id = f"{record}:{item['ID']}"
        else:
            event_id = f"{record}:" + hashlib.sha256(body).hexdigest()
        at = iso_time(item.get("DeliveredAt") or item.get("BouncedAt")
                      or item.get("ChangedAt") or item.get("ReceivedAt"), time.time())
        return WebhookEvent(
            provider=self.name, event_id=event_id, type=type_, address=address, at=at,
            provider_message_id=str(item.get("MessageID") or ""),
            message_id=angle(_header(item, "Message-ID")),
            status=status, text=text[:500], raw=item)


def _kind(record: str, item: dict[str, Any]) -> tuple[EventType, str, str] | str:
    """(event type, the provider's words, the SMTP status in them) of a record we use, or
    why it is skipped."""
    if record == "Delivery":
        return EventType.DELIVERED, str(item.get("Details") or ""), ""
    if record in ("Bounce", "SpamComplaint"):
        kind = str(item.get("Type") or record)
        if kind not in _BOUNCE_TYPES:
            return f"{record} of type {kind}: not a bounce we count"
        text = str(item.get("Details") or item.get("Description") or "")
        return _BOUNCE_TYPES[kind], text, status_in(text)
    if record == "SubscriptionChange":
        if not item.get("SuppressSending"):
            return "subscription change that lifts a suppression"
        reason = str(item.get("SuppressionReason") or "")
        if reason not in _SUPPRESSION_REASONS:
            return f"subscription change ({reason or 'no reason'}) not used"
        return _SUPPRESSION_REASONS[reason], "", ""
    return f"{record} events are not used"


def _header(item: dict[str, Any], name: str) -> str:
    """A header of the original message, when Postmark includes them."""
    for header in item.get("Headers") or []:
        if isinstance(header, dict) and str(header.get("Name", "")).lower() == name.lower():
            return str(header.get("Value") or "")
    return ""
