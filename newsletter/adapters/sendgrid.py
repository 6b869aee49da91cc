"""SendGrid: ``POST /v3/mail/send``, one message per request.

Settings (environment only): ``SENDGRID_API_KEY``, ``SENDGRID_API_URL`` (default
https://api.sendgrid.com; EU regional subusers use https://api.eu.sendgrid.com). SendGrid
answers 202 Accepted with its id in ``X-Message-Id``. Its batch form (many personalizations
in one request) shares one body between recipients; ours differ per recipient (signed
tokens), so each message is its own request.

Every request turns off, for that message, all four of SendGrid's own trackings, which an
account often has on: click tracking and Google Analytics (both rewrite our links),
open tracking (adds an image), subscription tracking (adds SendGrid's unsubscribe links and
its own List-Unsubscribe).

Answers (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send): 401 a wrong,
revoked or send-less key, and 403 "The from address does not match a verified Sender
Identity" or "access forbidden" stop the run; 400 about ``personalizations...to...email``
fails that recipient, any other 400 stops the run; 429 waits until ``X-RateLimit-Reset`` (a
Unix time; SendGrid sends no Retry-After). SendGrid offers no way to ask whether a message
whose answer was lost was accepted (its Email Activity API is a paid add-on), so such a
message is retried with the same Message-ID and marked as possibly repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

import requests

from newsletter.adapters.base import AdapterSettings, Outcome, PermanentError
from newsletter.adapters.http import HttpAdapter, reset_seconds, retry_after_seconds
from newsletter.errors import ConfigurationError
from newsletter.message import OutgoingMessage

NO_TRACKING = {name: {"enable": False} for name in ("click_tracking", "open_tracking",
                                                    "subscription_tracking", "ganalytics")}


class SendgridAdapter(HttpAdapter):
    """Sends through SendGrid's v3 mail API."""

    name = "sendgrid"
    provider = "SendGrid"
    key_variable = "SENDGRID_API_KEY"
    url_variable = "SENDGRID_API_URL"
    default_url = "https://api.sendgrid.com"

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.key = settings.require("SENDGRID_API_KEY", "the SendGrid API key", "SG.xxxx")

    def payload(self, message: OutgoingMessage) -> dict:
        r = message.recipient
        f = message.factory
        to = {"email": r.address, **({"name": r.name} if r.name else {})}
        return {
            "personalizations": [{"to": [to]}],
            "from": {"email": f.envelope_from, "name": f.sender_name} if f.sender_name
            else {"email": f.envelope_from},
            "reply_to": {"email": message.reply_to},
            "subject": message.subject,
            # SendGrid wants text/plain first, then text/html.
            "content": [{"type": "text/plain", "value": message.text},
                        {"type": "text/html", "value": message.html}],
            "headers": dict(message.api_headers),
            "tracking_settings": NO_TRACKING,
        }

    def wait_after(self, response: requests.Response) -> float:
        reset = response.headers.get("X-RateLimit-Reset")
        if reset:
            return reset_seconds(reset)
        return retry_after_seconds(response.headers.get("Retry-After"))

    def classify(self, response: requests.Response, said: str) -> Exception:
        status = response.status_code
        try:
            errors = response.json().get("errors") or []
        except (ValueError, AttributeError):
            errors = []
        fields = [str(e.get("field") or "") for e in errors if isinstance(e, dict)]
        if status == 403 and "sender identity" in said.lower():
            return ConfigurationError(
                f"SendGrid will not send from this sender: \"{said}\"",
                hint="verify the sender address (sender: email: in the issue file) or its "
                "domain in SendGrid (Settings → Sender Authentication); nothing was marked "
                "failed")
        if status == 403:
            return ConfigurationError(
                f"SendGrid refused the key (403): \"{said}\"",
                hint="the key in SENDGRID_API_KEY needs the Mail Send permission (SendGrid: "
                "Settings → API Keys); nothing was marked failed")
        if status == 400 and fields and all(f.startswith("personalizations.")
                                            and ".to." in f for f in fields):
            return PermanentError(f"SendGrid refused the address: \"{said}\"",
                                  recipient_problem=True)
        if status == 413:
            return ConfigurationError(
                f"SendGrid refused the message as too large: \"{said}\"",
                hint="SendGrid takes at most 30 MB a message: make the issue's images smaller")
        return super().classify(response, said)

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        return self.each(messages, self._send_one)

    def _send_one(self, message: OutgoingMessage) -> Outcome:
        response = self.post("/v3/mail/send", json=self.payload(message),
                             headers={"Authorization": f"Bearer {self.key}"})
        return Outcome.sent(response.headers.get("X-Message-Id", ""))
