"""Postmark: up to 500 messages per ``POST /email/batch``.

Settings (environment only): ``POSTMARK_SERVER_TOKEN``, ``POSTMARK_MESSAGE_STREAM`` (default
``broadcast``: Postmark keeps bulk mail apart from transactional), ``POSTMARK_API_URL``
(default https://api.postmarkapp.com).

The batch endpoint answers 200 even when some messages are refused: each message has its own
``ErrorCode`` (0 = accepted), in the order sent. 406 (inactive recipient: bounced or marked
spam) and 300 (invalid message) fail that one message; any other code defers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import formataddr

from newsletter.adapters.base import AdapterSettings, Outcome, TransientError
from newsletter.adapters.http import HttpAdapter
from newsletter.message import OutgoingMessage

PERMANENT_CODES = {300, 406}


class PostmarkAdapter(HttpAdapter):
    """Sends through Postmark's batch API."""

    name = "postmark"
    provider = "Postmark"
    key_variable = "POSTMARK_SERVER_TOKEN"
    url_variable = "POSTMARK_API_URL"
    default_url = "https://api.postmarkapp.com"
    max_batch = 500

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.token = settings.require("POSTMARK_SERVER_TOKEN", "the Postmark server token",
                                      "00000000-0000-0000-0000-000000000000")
        self.stream = settings.env.get("POSTMARK_MESSAGE_STREAM", "").strip() or "broadcast"

    def payload(self, message: OutgoingMessage) -> dict:
        r = message.recipient
        headers = [{"Name": "Message-ID", "Value": message.message_id}]
        headers += [{"Name": name, "Value": value} for name, value in message.headers]
        return {"From": message.from_header, "To": formataddr((r.name, r.address)),
                "ReplyTo": message.reply_to, "Subject": message.subject,
                "HtmlBody": message.html, "TextBody": message.text, "Headers": headers,
                "MessageStream": self.stream, "TrackOpens": False, "TrackLinks": "None"}

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        response = self.post("/email/batch", json=[self.payload(m) for m in messages],
                             headers={"X-Postmark-Server-Token": self.token,
                                      "Accept": "application/json"})
        try:
            answers = response.json()
        except ValueError as exc:
            raise TransientError("Postmark's answer was not JSON") from exc
        if not isinstance(answers, list) or len(answers) != len(messages):
            raise TransientError("Postmark's batch answer does not match the batch sent")
        outcomes = []
        for answer in answers:
            code = int(answer.get("ErrorCode", -1))
            text = f"Postmark error {code}: {answer.get('Message', '')}"
            if code == 0:
                outcomes.append(Outcome("sent", provider_id=str(answer.get("MessageID", ""))))
            elif code in PERMANENT_CODES:
                outcomes.append(Outcome("failed", text))
            else:
                outcomes.append(Outcome("deferred", text))
        return outcomes
