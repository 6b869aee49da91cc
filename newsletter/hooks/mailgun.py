"""Mailgun's webhooks.

Authentication, as documented at
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks :
the JSON body carries ``signature: {timestamp, token, signature}``; ``signature`` is the hex
HMAC-SHA256 of ``timestamp`` followed by ``token`` (no separator), keyed with the HTTP webhook
signing key (``MAILGUN_WEBHOOK_SIGNING_KEY``). The same page advises refusing a token seen
before and a timestamp far from now: both are done (the token is the replay key).

Events, as documented at
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads and
https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types :
``event-data.event`` is delivered, failed (``severity`` permanent or temporary), complained,
unsubscribed, and others we skip. A temporary failure is skipped: Mailgun retries it and sends
a permanent one if it gives up. django-anymail's ``anymail/webhooks/mailgun.py`` reads the same
fields.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from newsletter.bounces.events import EventType, bounce_type, status_in
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

KEY_SETTING = "MAILGUN_WEBHOOK_SIGNING_KEY"

_SIMPLE = {"delivered": EventType.DELIVERED, "complained": EventType.COMPLAINED,
           "unsubscribed": EventType.UNSUBSCRIBED}
# A permanent failure because the address is on Mailgun's own suppression lists.
_SUPPRESSED = {"suppress-bounce": EventType.BOUNCED_HARD,
               "suppress-complaint": EventType.COMPLAINED,
               "suppress-unsubscribe": EventType.UNSUBSCRIBED}


class MailgunHooks(Provider):
    """``POST /hooks/mailgun``."""

    name = "mailgun"
    settings = (KEY_SETTING,)

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        try:
            signature = load_json(body)["signature"]
            timestamp = str(signature["timestamp"])
            token = str(signature["token"])
            given = str(signature["signature"])
        except (Malformed, KeyError, TypeError) as exc:
            raise Unauthorized("no Mailgun signature in the body") from exc
        key = self.env.get(KEY_SETTING, "").strip().encode("utf-8")
        expected = hmac.new(key, (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()
        if not key or not hmac.compare_digest(expected, given.lower()):
            raise Unauthorized("the Mailgun signature does not verify")
        self.check_timestamp(timestamp)
        return f"mailgun:{token}"

    def parse(self, body: bytes) -> Parsed:
        document = load_json(body)
        data = document.get("event-data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise Malformed("no event-data object in the body")
        token = str(document.get("signature", {}).get("token", ""))
        parsed = Parsed()
        try:
            event = self._event(data, token, document)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("mailgun webhook: event skipped, cannot be read: %s", exc)
            parsed.skipped.append(f"cannot be read: {exc}")
            return parsed
        if isinstance(event, str):
            parsed.skipped.append(event)
        else:
            parsed.events.append(event)
        return parsed

    def _event(self, data: dict[str, Any], token: str, document: dict) -> WebhookEvent | str:
        kind = str(data["event"])
        status = text = ""
        if kind in _SIMPLE:
            type_ = _SIMPLE[kind]
        elif kind == "failed":
            if data.get("severity") != "permanent":
                return "temporary failure: Mailgun retries it"
            delivery = data.get("delivery-status") or {}
            text = str(delivery.get("message") or delivery.get("description") or "")
            status = str(delivery.get("enhanced-code") or "") or status_in(text)
            code = delivery.get("code")
            type_ = _SUPPRESSED.get(str(data.get("reason", "")),
                                    bounce_type(status, code if isinstance(code, int) else None,
                                                text))
        else:
            return f"{kind} events are not used"
        address = str(data["recipient"]).strip().lower()
        if "@" not in address:
            raise ValueError(f"recipient {address!r} is not an address")
        headers = (data.get("message") or {}).get("headers") or {}
        return WebhookEvent(
            provider=self.name, event_id=token or str(data.get("id", "")), type=type_,
            address=address, at=float(data["timestamp"]),
            message_id=angle(headers.get("message-id")),
            provider_message_id=str(headers.get("message-id") or ""),
            status=status, text=text[:500], raw=document)
