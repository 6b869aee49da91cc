"""Mailgun: the whole MIME message through ``POST /v3/DOMAIN/messages.mime``.

Settings (environment only): ``MAILGUN_API_KEY``, ``MAILGUN_DOMAIN`` (the sending domain), and
``MAILGUN_API_URL`` (default https://api.mailgun.net; https://api.eu.mailgun.net for EU
accounts). Mailgun has no batch form for ready-made MIME, so each message is one request.
Mailgun answers 200 with ``{"id": "<...>", "message": "Queued. Thank you."}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.adapters.base import AdapterSettings, Outcome
from newsletter.adapters.http import HttpAdapter
from newsletter.message import OutgoingMessage


class MailgunAdapter(HttpAdapter):
    """Sends ready-made MIME through Mailgun's API."""

    name = "mailgun"
    provider = "Mailgun"
    key_variable = "MAILGUN_API_KEY"
    url_variable = "MAILGUN_API_URL"
    default_url = "https://api.mailgun.net"

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.key = settings.require("MAILGUN_API_KEY", "the Mailgun API key", "key-...")
        self.domain = settings.require("MAILGUN_DOMAIN", "the Mailgun sending domain",
                                       "mg.example.org")

    def describe(self) -> str:
        return f"mailgun {self.base_url} (domain {self.domain})"

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        outcomes = []
        for message in messages:
            response = self.post(f"/v3/{self.domain}/messages.mime", auth=("api", self.key),
                                 data={"to": message.to},
                                 files={"message": ("message.mime", message.mime,
                                                    "message/rfc822")})
            try:
                provider_id = str(response.json().get("id", ""))
            except ValueError:
                provider_id = ""
            outcomes.append(Outcome("sent", provider_id=provider_id))
        return outcomes
