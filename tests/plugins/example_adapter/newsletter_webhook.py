"""An example mail adapter: POST each message, as message/rfc822, to a gateway's URL.

Set ``WEBHOOK_URL``. The gateway answers 2xx with the message's id in ``X-Message-Id``.
Pacing, retries, 429 pauses and the ledger are the send loop's: the adapter only says what
each answer means.
"""

import requests

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from newsletter.errors import ConfigurationError
from newsletter.message import OutgoingMessage


class WebhookAdapter(Adapter):
    """Hands each message to an HTTP mail gateway."""

    name = "webhook"

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.url = settings.require("WEBHOOK_URL", "the gateway's URL",
                                    "https://gateway.example.org/submit")
        self.session = requests.Session()

    def describe(self) -> str:
        return f"webhook {self.url}"

    def close(self) -> None:
        self.session.close()

    def send(self, message: OutgoingMessage) -> str:
        try:
            answer = self.session.post(self.url, data=message.mime, timeout=30,
                                       headers={"Content-Type": "message/rfc822"})
        except requests.ConnectTimeout as exc:
            raise TransientError(f"cannot reach {self.url}") from exc
        except requests.RequestException as exc:     # it may have arrived: same Message-ID
            raise OutcomeUnknown(f"no answer from {self.url}: {exc}") from exc
        said = f"the gateway answered {answer.status_code}: {answer.text[:200]}"
        if answer.status_code in (401, 403):
            raise ConfigurationError(said, hint="check WEBHOOK_URL")
        if answer.status_code == 429:
            raise RateLimited(said, float(answer.headers.get("Retry-After", 60)))
        if answer.status_code >= 500:
            raise TransientError(said)
        if answer.status_code >= 300:
            raise PermanentError(said)
        return answer.headers.get("X-Message-Id", "")
