"""Provider webhooks: delivery, bounce, complaint and unsubscribe events from Mailgun, Postmark
and SendGrid, each authenticated exactly as the provider documents, then normalised into one
vocabulary (:class:`~newsletter.bounces.events.EventType`) with the provider's record kept.

A provider module does two things and nothing else::

    authenticate(headers, body) -> replay key      raises Unauthorized: the tracker answers 401
    parse(body) -> events, skipped                  raises Malformed: logged, 400, nothing kept

Events we have no use for (opens, clicks, "processed", deferrals the provider retries itself)
are skipped, not errors. One event that cannot be read in a batch is skipped and logged; the
others are kept. Storing events, refusing replays and suppressing addresses happen in
``hooks.store``, so these modules can be tested without a database.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from newsletter.bounces.events import EventType

log = logging.getLogger("newsletter.hooks")

# How far a signed timestamp may be from our clock, either way, in seconds. Mailgun and
# SendGrid document no number; five minutes is what Stripe, Svix and most others use.
DEFAULT_WINDOW = 300.0


class Unauthorized(Exception):
    """The request is not from the provider (or is a replay): 401, and nothing is stored."""


class Malformed(Exception):
    """An authenticated request whose body cannot be read: logged, 400, nothing stored."""


@dataclass(frozen=True)
class WebhookEvent:
    """One normalised event, with the provider's own record of it."""

    provider: str
    event_id: str               # the provider's id for this event: stored once
    type: EventType
    address: str
    at: float                   # when it happened, seconds since the epoch
    message_id: str = ""        # the message's Message-ID header, when the provider gives it
    provider_message_id: str = ""
    status: str = ""            # RFC 3463 status code, when there is one
    text: str = ""              # the remote server's or the provider's words
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Parsed:
    """What a request held: the events we keep, and why the others were skipped."""

    events: list[WebhookEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Provider:
    """One provider's webhook: how it authenticates and what its events mean."""

    name: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()     # environment variables it needs

    def __init__(self, env: Mapping[str, str], *, window: float = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.env = env
        self.window = window
        self.clock = clock

    @property
    def configured(self) -> bool:
        """True when every setting this provider needs is set."""
        return all(self.env.get(name, "").strip() for name in self.settings)

    def missing(self) -> str:
        """The settings still to set, for the log line when a request is refused."""
        return ", ".join(n for n in self.settings if not self.env.get(n, "").strip())

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check the request is the provider's; return a key that must never be seen twice
        (``""`` when the provider's scheme has none). Header names are lowercase."""
        raise NotImplementedError

    def parse(self, body: bytes) -> Parsed:
        """The events in an authenticated request's body."""
        raise NotImplementedError

    def check_timestamp(self, value: object) -> float:
        """A signed timestamp as a number, refused when outside the window (a replay)."""
        try:
            stamp = float(str(value))
        except ValueError as exc:
            raise Unauthorized("the signed timestamp is not a number") from exc
        if abs(self.clock() - stamp) > self.window:
            raise Unauthorized(f"the signed timestamp is {self.clock() - stamp:.0f} seconds "
                               f"from now (at most {self.window:.0f} allowed)")
        return stamp


def load_json(body: bytes) -> Any:
    """The body as JSON, or :class:`Malformed`."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"the body is not JSON: {exc}") from exc


def iso_time(value: object, default: float) -> float:
    """An ISO 8601 time (any number of fractional digits) as epoch seconds, else ``default``."""
    import re

    if not isinstance(value, str) or not value:
        return default
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return default


def angle(message_id: object) -> str:
    """A Message-ID in angle brackets, as our ledger stores it."""
    text = str(message_id or "").strip()
    if not text:
        return ""
    return text if text.startswith("<") else f"<{text}>"


def provider_for(name: str, env: Mapping[str, str], **kwargs: Any) -> Provider | None:
    """The webhook handler for ``name`` (mailgun, postmark, sendgrid), or None."""
    from newsletter.hooks.mailgun import MailgunHooks
    from newsletter.hooks.postmark import PostmarkHooks
    from newsletter.hooks.sendgrid import SendgridHooks

    classes: dict[str, type[Provider]] = {
        "mailgun": MailgunHooks, "postmark": PostmarkHooks, "sendgrid": SendgridHooks}
    cls = classes.get(name)
    return cls(env, **kwargs) if cls else None


PROVIDER_NAMES = ("mailgun", "postmark", "sendgrid")
