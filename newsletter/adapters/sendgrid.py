"""SendGrid: ``POST /v3/mail/send``, one message per request.

Settings (environment only): ``SENDGRID_API_KEY``, ``SENDGRID_API_URL`` (default
https://api.sendgrid.com). SendGrid answers 202 Accepted with the id in ``X-Message-Id``.
Its batch form (many personalizations in one request) shares one body between recipients;
ours differ per recipient (signed tokens), so each message is its own request. SendGrid's
own click and open tracking is turned off: links already go through our tracker.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.adapters.base import AdapterSettings, Outcome
from newsletter.adapters.http import HttpAdapter
from newsletter.message import OutgoingMessage


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
            "content": [{"type": "text/plain", "value": message.text},
                        {"type": "text/html", "value": message.html}],
            "headers": {"Message-ID": message.message_id, **dict(message.headers)},
            "tracking_settings": {"click_tracking": {"enable": False},
                                  "open_tracking": {"enable": False}},
        }

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        outcomes = []
        for message in messages:
            response = self.post("/v3/mail/send", json=self.payload(message),
                                 headers={"Authorization": f"Bearer {self.key}"})
            outcomes.append(Outcome("sent",
                                    provider_id=response.headers.get("X-Message-Id", "")))
        return outcomes
