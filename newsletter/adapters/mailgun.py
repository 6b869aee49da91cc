"""Mailgun: the whole MIME message through ``POST /v3/DOMAIN/messages.mime``.

Settings (environment only): ``MAILGUN_API_KEY``, ``MAILGUN_DOMAIN`` (the sending domain), and
``MAILGUN_API_URL`` (default https://api.mailgun.net; a domain in Mailgun's EU region is only
known to https://api.eu.mailgun.net). Mailgun has no batch form for ready-made MIME, so each
message is one request, the MIME sent as a file upload with the recipient in ``to``.

Every request turns Mailgun's click and open tracking off for that message (``o:tracking``,
``o:tracking-clicks``, ``o:tracking-opens``: "higher priority than domain-level setting"), so
our links reach the reader as we wrote them. Mailgun's unsubscribe tracking (its own footer,
and its own unsubscribe list) is a domain setting: before sending, the domain's settings are
read (``GET /v3/domains/DOMAIN`` and ``.../tracking``) and the send refuses to start while it
is on, or while the domain is a sandbox or unverified.

Answers (https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses):
200 ``{"id": "<Message-ID>", "message": "Queued. Thank you."}``; 400 "'to' parameter is not
a valid address" fails that recipient; 400/403 "Domain ... is not allowed to send" (sandbox,
unverified domain) and 404 "Domain not found" (a wrong domain or region) stop the run.
Mailgun keeps the Message-ID of the MIME we send and returns it as ``id``; after a lost
answer, the events API (``GET /v3/DOMAIN/events?message-id=...&event=accepted``) says whether
Mailgun accepted it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import requests

from newsletter.adapters.base import AdapterSettings, Outcome, PermanentError
from newsletter.adapters.http import HttpAdapter
from newsletter.errors import ConfigurationError
from newsletter.message import OutgoingMessage

# Per message: no click, open or unsubscribe tracking of Mailgun's own.
NO_TRACKING = {"o:tracking": "no", "o:tracking-clicks": "no", "o:tracking-opens": "no"}
EU_URL = "https://api.eu.mailgun.net"
US_URL = "https://api.mailgun.net"


class MailgunAdapter(HttpAdapter):
    """Sends ready-made MIME through Mailgun's API."""

    name = "mailgun"
    provider = "Mailgun"
    key_variable = "MAILGUN_API_KEY"
    url_variable = "MAILGUN_API_URL"
    default_url = US_URL
    can_look_up = True

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.key = settings.require("MAILGUN_API_KEY", "the Mailgun API key", "key-...")
        self.domain = settings.require("MAILGUN_DOMAIN", "the Mailgun sending domain",
                                       "mg.example.org")

    def describe(self) -> str:
        return f"mailgun {self.base_url} (domain {self.domain})"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return super().request(method, path, auth=("api", self.key), **kwargs)

    # --- answers ---------------------------------------------------------------------

    def _region_error(self, said: str) -> ConfigurationError:
        other = US_URL if self.base_url.rstrip("/") == EU_URL else EU_URL
        return ConfigurationError(
            f"Mailgun at {self.base_url} does not know the sending domain {self.domain} "
            f"(MAILGUN_DOMAIN): \"{said}\"",
            hint=f"check MAILGUN_DOMAIN against Mailgun's Sending → Domains page; a domain in "
            f"the other region needs MAILGUN_API_URL={other}; nothing was marked failed")

    def classify(self, response: requests.Response, said: str) -> Exception:
        status = response.status_code
        lowered = said.lower()
        if status == 404 and "domain not found" in lowered:
            return self._region_error(said)
        if status in (400, 403) and ("not allowed to send" in lowered or "sandbox" in lowered
                                     or "unverified" in lowered):
            if "sandbox" in lowered:
                hint = ("a Mailgun sandbox domain only sends to its few authorized recipients; "
                        "set MAILGUN_DOMAIN to your own verified sending domain")
            else:
                hint = ("finish the domain's DNS records in Mailgun (Sending → Domains → "
                        f"{self.domain} → DNS records) or choose another MAILGUN_DOMAIN")
            return ConfigurationError(
                f"Mailgun will not send from the domain {self.domain} (MAILGUN_DOMAIN): "
                f"\"{said}\"", hint=hint + "; nothing was marked failed")
        if status == 400 and ("not a valid address" in lowered or "'to'" in lowered):
            return PermanentError(f"Mailgun refused the address: \"{said}\"",
                                  recipient_problem=True)
        if status == 403:
            return ConfigurationError(
                f"Mailgun refused access (403): \"{said}\"",
                hint="check that the key in MAILGUN_API_KEY may send for "
                f"{self.domain}; nothing was marked failed")
        return super().classify(response, said)

    # --- sending ---------------------------------------------------------------------

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        return self.each(messages, self._send_one)

    def _send_one(self, message: OutgoingMessage) -> Outcome:
        response = self.post(f"/v3/{self.domain}/messages.mime",
                             data={"to": message.to, **NO_TRACKING},
                             files={"message": ("message.mime", message.mime,
                                                "message/rfc822")})
        try:
            answer = response.json()
            provider_id = str(answer["id"])
        except (ValueError, KeyError, TypeError):
            # Mailgun answers 200 "Mailgun Magnificent API" for a path it does not know.
            raise ConfigurationError(
                f"Mailgun's answer at {self.base_url} was not a sent message: "
                f"\"{response.text[:200].strip()}\"",
                hint="check MAILGUN_API_URL (https://api.mailgun.net, or "
                "https://api.eu.mailgun.net for EU domains) and MAILGUN_DOMAIN") from None
        return Outcome.sent(provider_id)

    def find_accepted(self, messages: Sequence[OutgoingMessage],
                      token: str) -> dict[int, str]:
        found = {}
        for index, message in enumerate(messages):
            wanted = message.message_id.strip("<>")
            data = self.get_json(f"/v3/{self.domain}/events", "accepted messages",
                                 **{"message-id": wanted, "event": "accepted",
                                    "begin": int(time.time() - 86400), "ascending": "yes",
                                    "limit": 1})
            if data.get("items"):
                found[index] = wanted
        return found

    # --- before sending --------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Refuse to start when the domain would send nothing, or add its own unsubscribe."""
        status, domain = self.look(f"/v3/domains/{self.domain}", "the sending domain",
                                   key_error=False)
        if status == 404:
            said = domain.get("message", "") if isinstance(domain, dict) else ""
            raise self._region_error(said or "Domain not found")
        if status in (401, 403):
            # A domain sending key may send but not read settings; a wrong key fails at the
            # first message anyway, stopping the run with nobody marked failed.
            return [self._cannot_check(f"Mailgun answered {status}")]
        info = domain.get("domain", {}) if status == 200 and isinstance(domain, dict) else {}
        if info.get("type") == "sandbox":
            raise ConfigurationError(
                f"{self.domain} (MAILGUN_DOMAIN) is a Mailgun sandbox domain: it only sends to "
                "its few authorized recipients",
                hint="set MAILGUN_DOMAIN to your own verified sending domain")
        if info.get("state") not in (None, "active") or info.get("is_disabled"):
            raise ConfigurationError(
                f"the Mailgun domain {self.domain} (MAILGUN_DOMAIN) cannot send: its state is "
                f"{info.get('state')!r}{' and it is disabled' if info.get('is_disabled') else ''}",
                hint=f"finish its DNS records in Mailgun (Sending → Domains → {self.domain}) "
                "or choose another MAILGUN_DOMAIN")
        tracking = self.get_json(f"/v3/domains/{self.domain}/tracking", "tracking settings")
        unsubscribe = tracking.get("tracking", {}).get("unsubscribe", {})
        if unsubscribe.get("active"):
            raise ConfigurationError(
                f"Mailgun's unsubscribe tracking is on for {self.domain}: Mailgun would add its "
                "own unsubscribe footer to every message and keep its own list of people who "
                "unsubscribe, beside ours",
                hint=f"turn it off in Mailgun: Sending → Domain settings → {self.domain} → "
                "Tracking → Unsubscribes (our unsubscribe link and List-Unsubscribe stay)")
        return []

    def _cannot_check(self, why: str) -> str:
        return (f"warning: the Mailgun key cannot read the settings of {self.domain} ({why}); "
                "a domain sending key can only send. Check in Mailgun that unsubscribe "
                "tracking is off (Sending → Domain settings → Tracking), or our readers get "
                "Mailgun's unsubscribe footer too")
