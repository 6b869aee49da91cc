"""Postmark: up to 500 messages, and at most 50 MB, per ``POST /email/batch``.

Settings (environment only): ``POSTMARK_SERVER_TOKEN``; ``POSTMARK_MESSAGE_STREAM``, the id of
the server's Broadcasts stream, copied from the stream's page (there is no default: without
it Postmark would send a newsletter through the server's transactional stream); and
``POSTMARK_API_URL`` (default https://api.postmarkapp.com).

Before the first message the stream and the server are read through the API and the send
refuses to start when Postmark would change what readers get: a stream that is not a
Broadcasts stream, or whose unsubscribes Postmark manages (it then adds its own unsubscribe
link and List-Unsubscribe headers in place of ours, and keeps its own list); or a server with
open tracking on (that cannot be turned off per message). Each message turns Postmark's link
and open tracking off (``TrackLinks: None``, ``TrackOpens: false``).

The batch endpoint answers 200 with one result per message, in order
(https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails):

- ErrorCode 0, or no ErrorCode at all ("Message accepted, but delivery may be delayed."):
  sent;
- 406 (inactive recipient: a hard bounce or spam complaint) and 300 about the 'To' address:
  that recipient fails;
- 300 about anything else (a 'From' that is not a verified sender signature...), 400, 401
  (sender signature), 405, 412, 413 (account), or any answer naming the stream: the run stops,
  nobody is marked failed;
- 100 (maintenance): deferred; 429: everyone waits.

A whole-batch 4xx (422 with an ErrorCode) is never about one recipient: the run stops.
Each message carries ``Metadata`` with the id of its request, so after a lost answer the
outbound message search (``GET /messages/outbound?metadata_newsletter_batch=...``) says which
ones Postmark accepted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from email.utils import formataddr
from typing import Any

import requests

from newsletter.adapters.base import (
    AdapterSettings,
    ConfigurationStop,
    DeliveryError,
    Outcome,
    OutcomeUnknown,
    RateLimited,
    Status,
    TransientError,
)
from newsletter.adapters.http import HttpAdapter
from newsletter.errors import ConfigurationError, NewsletterError
from newsletter.message import OutgoingMessage

MAX_BATCH_BYTES = 50 * 1000 * 1000      # "up to 50 MB payload size"; MB read as 10^6 bytes
MAX_MESSAGE_BYTES = 10 * 1000 * 1000    # one message, as for the single-email endpoint
ENVELOPE = 64 * 1024                    # head room for the brackets and commas of the array
RECIPIENT_CODES = {406}
CONFIGURATION_CODES = {10, 400, 401, 405, 409, 412, 413}
STREAM = "POSTMARK_MESSAGE_STREAM"


class PostmarkAdapter(HttpAdapter):
    """Sends through Postmark's batch API."""

    name = "postmark"
    provider = "Postmark"
    key_variable = "POSTMARK_SERVER_TOKEN"
    url_variable = "POSTMARK_API_URL"
    default_url = "https://api.postmarkapp.com"
    max_batch = 500
    max_batch_bytes = MAX_BATCH_BYTES
    can_look_up = True

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.token = settings.require("POSTMARK_SERVER_TOKEN", "the Postmark server token",
                                      "00000000-0000-0000-0000-000000000000")
        self.stream = settings.env.get(STREAM, "").strip()

    def describe(self) -> str:
        return f"postmark {self.base_url} (stream {self.stream or 'not set'})"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-Postmark-Server-Token": self.token, "Accept": "application/json",
                   **kwargs.pop("headers", {})}
        return super().request(method, path, headers=headers, **kwargs)

    def payload(self, message: OutgoingMessage, batch: str = "") -> dict:
        r = message.recipient
        return {"From": message.from_header, "To": formataddr((r.name, r.address)),
                "ReplyTo": message.reply_to, "Subject": message.subject,
                "HtmlBody": message.html, "TextBody": message.text,
                "Headers": [{"Name": name, "Value": value}
                            for name, value in message.api_headers],
                "MessageStream": self.stream, "TrackOpens": False, "TrackLinks": "None",
                "Metadata": {"newsletter_batch": batch}}

    # --- answers ---------------------------------------------------------------------

    def _stop(self, code: object, said: str) -> ConfigurationError:
        """The configuration problem a Postmark error code or message names."""
        lowered = said.lower()
        if "stream" in lowered:
            return ConfigurationError(
                f"Postmark refused the message stream '{self.stream}' ({STREAM}): \"{said}\"",
                hint="run `newsletter send` again after setting POSTMARK_MESSAGE_STREAM to the "
                "id of the server's Broadcasts stream (on the stream's page in Postmark)")
        if code in (405, 412, 413):
            return ConfigurationError(
                f"Postmark will not send for this account (error {code}): \"{said}\"",
                hint="see the account's status in Postmark (approval, credits); nothing was "
                "marked failed")
        if code in (400, 401) or "'from'" in lowered or "sender signature" in lowered:
            return ConfigurationError(
                f"Postmark will not send from this sender (error {code}): \"{said}\"",
                hint="confirm the sender address (sender: email: in the issue file) as a Sender "
                "Signature, or verify its domain, in Postmark (Sender Signatures); nothing "
                "was marked failed")
        return ConfigurationError(
            f"Postmark refused the batch (error {code}): \"{said}\"",
            hint="nothing was marked failed; fix what Postmark names and run the same "
            "`newsletter send` again")

    def classify(self, response: requests.Response, said: str) -> Exception:
        try:
            code = response.json().get("ErrorCode")
        except (ValueError, AttributeError):
            code = None
        if response.status_code == 413:
            return ConfigurationError(
                f"Postmark refused the batch as too large: \"{said}\"",
                hint="the issue is too big for Postmark (10 MB a message, 50 MB a batch): "
                "make its images smaller")
        return self._stop(code, said)

    def _outcome(self, answer: object) -> Outcome | ConfigurationError:
        """One message's result in a batch answer."""
        if not isinstance(answer, dict):
            return ConfigurationError(f"Postmark's batch answer held {answer!r}")
        said = str(answer.get("Message", ""))
        code = answer.get("ErrorCode", 0)      # none: "accepted, but delivery may be delayed"
        if code == 0:
            return Outcome.sent(str(answer.get("MessageID", "")))
        text = f"Postmark error {code}: {said}"
        if code in RECIPIENT_CODES or (code == 300 and ("'to'" in said.lower())):
            return Outcome(Status.FAILED, text, recipient_problem=True)
        if code == 100:
            return Outcome(Status.DEFERRED, text)
        if code == 429:
            return RateLimited(text, 60.0).outcome()
        return self._stop(code, said)

    # --- sending ---------------------------------------------------------------------

    def deliver(self, messages: Sequence[OutgoingMessage]) -> list[Outcome]:
        if not self.stream:
            raise ConfigurationError(f"{STREAM} is not set",
                                     hint="set it to the id of the server's Broadcasts stream")
        outcomes: list[Outcome] = []
        for chunk, body, batch in self._requests(messages, outcomes):
            try:
                outcomes += self._post_batch(chunk, body, batch)
            except RateLimited as exc:
                # The rest of the batch would meet the same limit: it waits too, unsent.
                outcomes += [exc.outcome()] * (len(messages) - len(outcomes))
                break
            except DeliveryError as exc:
                outcomes += [exc.outcome()] * len(chunk)
            except ConfigurationStop as exc:
                raise ConfigurationStop(exc.message, exc.hint,
                                        [*outcomes, *exc.outcomes]) from exc
            except NewsletterError as exc:
                raise ConfigurationStop.wrap(exc, outcomes) from exc
        return outcomes

    def size(self, message: OutgoingMessage) -> int:
        """The bytes ``message`` adds to a batch request (its JSON and a comma): the send
        loop keeps each batch under ``max_batch_bytes`` by it."""
        return len(json.dumps(self.payload(message, "0" * 16),
                              ensure_ascii=False).encode("utf-8")) + 1

    def _requests(self, messages: Sequence[OutgoingMessage], done: list[Outcome]
                  ) -> Iterator[tuple[list[OutgoingMessage], bytes, str]]:
        """Requests of at most 500 messages and 50 MB, each as (messages, body, batch id).

        The send loop already makes batches under the cap by :meth:`size`; this keeps the
        request itself, brackets included, under it whatever it is given."""
        chunk: list[OutgoingMessage] = []
        parts: list[bytes] = []
        size = ENVELOPE
        batch = secrets.token_hex(8)
        for message in messages:
            part = json.dumps(self.payload(message, batch), ensure_ascii=False).encode("utf-8")
            if len(part) > MAX_MESSAGE_BYTES:
                raise ConfigurationStop(
                    f"the message is {len(part) / 1e6:.1f} MB as Postmark takes it; Postmark "
                    "accepts at most 10 MB a message",
                    hint="make the issue's images smaller, or link to them", outcomes=done)
            if chunk and size + len(part) + 1 > self.max_batch_bytes:
                yield chunk, b"[" + b",".join(parts) + b"]", batch
                batch = secrets.token_hex(8)
                chunk, parts, size = [], [], ENVELOPE
                part = json.dumps(self.payload(message, batch),
                                  ensure_ascii=False).encode("utf-8")
            chunk.append(message)
            parts.append(part)
            size += len(part) + 1
        if chunk:
            yield chunk, b"[" + b",".join(parts) + b"]", batch

    def _post_batch(self, chunk: Sequence[OutgoingMessage], body: bytes,
                    batch: str) -> list[Outcome]:
        try:
            response = self.post("/email/batch", data=body,
                                 headers={"Content-Type": "application/json"})
        except OutcomeUnknown as exc:
            return self.settle(chunk, exc, batch)
        try:
            answers = response.json()
        except ValueError as exc:
            raise TransientError("Postmark's answer was not JSON") from exc
        if not isinstance(answers, list) or len(answers) != len(chunk):
            # Postmark answered, but we cannot tell which messages it took: ask it.
            return self.settle(chunk, OutcomeUnknown("Postmark's batch answer does not match "
                                                     "the batch sent"), batch)
        outcomes: list[Outcome | None] = []
        stop: ConfigurationError | None = None
        for answer in answers:
            outcome = self._outcome(answer)
            if isinstance(outcome, ConfigurationError):
                stop = stop or outcome
                outcomes.append(None)        # not taken: goes back as it was
                continue
            outcomes.append(outcome)
        if stop is not None:
            # Accepted messages stay sent; the others go back untouched, the run stops.
            raise ConfigurationStop(stop.message, stop.hint, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    def find_accepted(self, messages: Sequence[OutgoingMessage],
                      token: str) -> dict[int, str]:
        data = self.get_json("/messages/outbound", "the messages it accepted", count=500,
                             offset=0, messagestream=self.stream,
                             metadata_newsletter_batch=token)
        where = {m.to.lower(): i for i, m in enumerate(messages)}
        found = {}
        for sent in data.get("Messages") or []:
            for address in sent.get("Recipients") or []:
                if str(address).lower() in where:
                    found[where[str(address).lower()]] = str(sent.get("MessageID", ""))
        return found

    # --- before sending --------------------------------------------------------------

    def _broadcast_streams(self) -> str:
        data = self.get_json("/message-streams", "the server's message streams",
                             MessageStreamType="Broadcasts", IncludeArchivedStreams="false")
        streams = [f"'{s.get('ID')}' ({s.get('Name')})" for s in data.get("MessageStreams", [])]
        if not streams:
            return ("this Postmark server has no Broadcasts stream: create one (the server's "
                    "page → Create Message Stream → Broadcasts) and set POSTMARK_MESSAGE_STREAM "
                    "to its id")
        example = data["MessageStreams"][0].get("ID")
        return (f"this server's Broadcasts streams: {', '.join(streams)}; e.g. `export "
                f"POSTMARK_MESSAGE_STREAM={example}`")

    def preflight(self) -> list[str]:
        """Refuse to start when Postmark would send elsewhere or change our links or unsubscribe."""
        if not self.stream:
            raise ConfigurationError(
                f"{STREAM} is not set: without it Postmark sends through the server's "
                "transactional stream, which is not for newsletters",
                hint=self._broadcast_streams())
        status, stream = self.look(f"/message-streams/{self.stream}", "the message stream")
        if status == 404 or not isinstance(stream, dict) or "ID" not in stream:
            said = stream.get("Message", "") if isinstance(stream, dict) else ""
            raise ConfigurationError(
                f"this Postmark server has no message stream '{self.stream}' ({STREAM})"
                + (f": \"{said}\"" if said else ""), hint=self._broadcast_streams())
        kind = stream.get("MessageStreamType")
        if kind != "Broadcasts":
            raise ConfigurationError(
                f"the Postmark stream '{self.stream}' ({STREAM}) is a {kind} stream; Postmark "
                "keeps newsletters and other bulk mail on Broadcasts streams",
                hint=self._broadcast_streams())
        if stream.get("ArchivedAt"):
            raise ConfigurationError(
                f"the Postmark stream '{self.stream}' ({STREAM}) is archived",
                hint="unarchive it in Postmark, or " + self._broadcast_streams())
        handling = (stream.get("SubscriptionManagementConfiguration") or {}).get(
            "UnsubscribeHandlingType")
        if handling == "Postmark":
            raise ConfigurationError(
                f"Postmark manages unsubscribes on the stream '{self.stream}' ({STREAM}): it "
                "would add its "
                "own unsubscribe link and List-Unsubscribe headers to every message in place of "
                "ours, and people who unsubscribe would land on Postmark's suppression list, "
                "not ours",
                hint="ask Postmark support to allow \"Manage unsubscribes on your own\", then "
                "choose it in the stream's Settings → Subscription Management (or set "
                f"{STREAM} to a stream where it is chosen)")
        server = self.get_json("/server", "the server's settings")
        if server.get("TrackOpens"):
            raise ConfigurationError(
                "open tracking is on for this Postmark server: Postmark would add its own "
                "tracking image to every message, and that cannot be turned off per message",
                hint="turn off Open tracking in the server's Settings in Postmark (whether "
                "we count views is set per issue, with `opens:`)")
        return []
