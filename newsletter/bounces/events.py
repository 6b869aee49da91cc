"""One vocabulary for what happened to a message after it left us, whatever told us.

A bounce read from the mailbox, a refusal at send time and a provider's webhook all become one
of these event types, as django-anymail's ``EventType`` does for its providers, with the
provider's own record kept beside it.
"""

from __future__ import annotations

import re
from enum import StrEnum


class EventType(StrEnum):
    """What became of one message to one recipient."""

    DELIVERED = "delivered"
    BOUNCED_HARD = "bounced-hard"      # the address is dead: suppressed at once
    BOUNCED_SOFT = "bounced-soft"      # full mailbox, refused for now: suppressed after N in a row
    COMPLAINED = "complained"          # marked as spam: suppressed at once
    UNSUBSCRIBED = "unsubscribed"      # through the provider's own link or list


# RFC 3463 enhanced status codes that say the address itself is bad or refuses us:
# 5.1.x (bad mailbox, bad domain, no such user), 5.2.1 (mailbox disabled), 5.7.1 (delivery
# not authorised). Every other permanent failure (5.2.2 mailbox full, 5.3.4 too big, 5.4.x
# routing) may pass, so it counts as soft.
_HARD_STATUS = re.compile(r"^5\.(1\.\d{1,3}|2\.1|7\.1)$")
_STATUS_IN_TEXT = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_BASIC_IN_TEXT = re.compile(r"^\s*(?:smtp;\s*)?([245]\d\d)\b", re.IGNORECASE)
# Without an enhanced code, RFC 5321's "mailbox unavailable", "user not local" and "mailbox
# name not allowed" are about the address.
_HARD_BASIC = {550, 551, 553}


def status_in(text: str) -> str:
    """The first RFC 3463 status code (``5.1.1``) in a server's text, or ``""``."""
    found = _STATUS_IN_TEXT.search(text or "")
    return found.group(1) if found else ""


def basic_code_in(text: str) -> int | None:
    """The SMTP reply code a server's text starts with (``550 ...``, ``smtp; 550-...``)."""
    found = _BASIC_IN_TEXT.match(text or "")
    return int(found.group(1)) if found else None


def bounce_type(status: str = "", code: int | None = None, text: str = "") -> EventType:
    """Hard or soft, from an enhanced status code, a basic SMTP code or the server's text.

    Hard: 5.1.x, 5.2.1, 5.7.1; without an enhanced code, 550, 551 and 553. Everything else
    (4xx, other 5xx, nothing to go on) is soft.
    """
    status = status or status_in(text)
    if status:
        return EventType.BOUNCED_HARD if _HARD_STATUS.match(status) else EventType.BOUNCED_SOFT
    code = code if code is not None else basic_code_in(text)
    return EventType.BOUNCED_HARD if code in _HARD_BASIC else EventType.BOUNCED_SOFT
