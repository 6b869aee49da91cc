"""Who may unsubscribe at ``POST /u/{token}``: mail programs and people, not link scanners.

Two kinds of POST reach the unsubscribe URL, and both must work at once:

* **RFC 8058 one-click.** A mailbox provider (Gmail, Yahoo, Outlook.com, Apple Mail) shows an
  Unsubscribe button beside the message because of our ``List-Unsubscribe-Post`` header; when the
  reader presses it, the provider POSTs ``List-Unsubscribe=One-Click`` to the
  ``List-Unsubscribe`` URL, without ever loading a page. RFC 8058 forbids receivers to POST
  without the user's consent, and asks senders to act on it without further interaction: the
  body alone decides.
* **The page's button.** The message's own "Unsubscribe" link opens a page (``GET`` changes
  nothing) whose form a person submits.

Link scanners fetch every link, and some load the page and submit its form (a script that posts
a page's fields, or a sandboxed browser that presses buttons looking for credential-phishing
forms). So the page's form is not a one-click POST, and :func:`decide` takes it only when it looks
pressed by a person, with checks that never delay anyone:

1. it carries the page's ``confirm`` field, a nonce signed for this unsubscribe token and the
   moment the page was made (a form replayed from elsewhere, or posted without the page, has
   none);
2. it carries ``unsubscribe=yes``: the button's own name and value, which a browser sends only
   when that button is what submitted the form (a script that posts the form's fields, or
   ``form.submit()`` in a headless browser, leaves it out);
3. at least :data:`MIN_SECONDS` passed between making the page and the press (scanners submit
   as soon as the page is parsed; a person reads it first);
4. a browser that says where a navigation came from (``Sec-Fetch-Site``) also says a person
   started it (``Sec-Fetch-User: ?1``);
5. the request itself is not from a scanner's agent or network, and the tracker has not judged
   the same address and browser a probable scanner on this issue (it is asked by the server).

A submission that fails any check changes nothing and gets the page again, with a fresh nonce:
a person whose press was too quick presses once more. Someone who keeps getting the page (a
person whose office shares a scanner's address and browser) still has the mail program's own
Unsubscribe button, which is RFC 8058 one-click.

One race is left: a sandbox that presses the button with real input events, after a wait, from
an address and browser the tracker has not judged yet (it opened the page before the other
links). So a press is reviewed for :data:`REVIEW_SECONDS` as the tracker stores more hits: if
the same address and browser are judged a probable scanner on the issue in that time, the
unsubscribe is withdrawn (:func:`withdraw`, logged) unless something else suppressed the
address since.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from newsletter.db import Database

MIN_SECONDS = 1.0            # between making the page and pressing its button
MAX_AGE = 24 * 3600.0        # a page older than this is made again (its nonce is stale)
ONE_CLICK = ("List-Unsubscribe", "One-Click")
BUTTON = ("unsubscribe", "yes")
NONCE = "confirm"
PRESSED_DETAIL = "the unsubscribe page's button (/u/)"   # the suppression's detail
REVIEW_SECONDS = 600.0       # how long after a press a scanner verdict withdraws it


class Decision(Enum):
    """What to do with one POST to the unsubscribe URL."""

    ONE_CLICK = "one-click"       # RFC 8058: unsubscribe now
    PRESSED = "pressed"           # the page's button, pressed by a person: unsubscribe now
    CONFIRM = "confirm"           # nothing changes; show the page (again)


def form_key(secret: bytes) -> bytes:
    """The key the page's nonces are signed with, derived from a tracker secret."""
    return hmac.new(secret, b"unsubscribe-form-nonce", hashlib.sha256).digest()


def nonce(key: bytes, token: str, now: float) -> str:
    """The page's ``confirm`` value: when it was made, signed for this unsubscribe token."""
    made = f"{now:.3f}"
    mac = hmac.new(key, f"{token}\x1f{made}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{made}.{mac}"


def nonce_age(key: bytes, token: str, value: str, now: float) -> float | None:
    """Seconds since the page carrying ``value`` was made, or None if we did not sign it."""
    made, dot, mac = value.rpartition(".")
    if not dot:
        return None
    expected = hmac.new(key, f"{token}\x1f{made}".encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    return now - float(made)  # we wrote it: a number


def fields(body: bytes, content_type: str) -> dict[str, list[str]] | None:
    """The form fields of a POST body (URL-encoded or multipart), or None if unreadable."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "multipart/form-data":
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
            found: dict[str, list[str]] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    found.setdefault(str(name), []).append(part.get_content().strip())
            return found
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (ValueError, UnicodeDecodeError, LookupError):
        return None


def decide(body: bytes, headers: Mapping[str, str], *, key: bytes, token: str, now: float,
           scanner: Callable[[], bool]) -> Decision:
    """Whether a POST to ``/u/{token}`` unsubscribes (see the module's docstring).

    ``headers`` are the request's, lower-case names; ``scanner()`` says whether the request's
    own reasons or the tracker's memory mark its address and browser as a probable scanner's
    (asked last: it may have to store queued hits first).
    """
    form = fields(body, headers.get("content-type", "application/x-www-form-urlencoded"))
    if form is None:
        return Decision.CONFIRM
    if NONCE not in form and form.get(ONE_CLICK[0]) == [ONE_CLICK[1]]:
        return Decision.ONE_CLICK
    values = form.get(NONCE) or [""]
    age = nonce_age(key, token, values[0], now)
    if age is None or not 0 <= age <= MAX_AGE or age < MIN_SECONDS:
        return Decision.CONFIRM
    if form.get(BUTTON[0]) != [BUTTON[1]]:
        return Decision.CONFIRM
    if headers.get("sec-fetch-site") and headers.get("sec-fetch-user") != "?1":
        return Decision.CONFIRM
    if scanner():
        return Decision.CONFIRM
    return Decision.PRESSED


def withdraw(database: Database, address: str, issue: str) -> bool:
    """Lift the suppression a press of the page's button added for ``issue``, if it is still
    that one (logged with why); False when the address is suppressed for another reason."""
    from newsletter import suppressions

    current = suppressions.get(database, address)
    if current is None or (current.reason, current.source, current.issue, current.detail) != (
            "unsubscribed", "tracker", issue, PRESSED_DETAIL):
        return False
    return suppressions.remove(
        database, address, note="withdrawn: the address and browser that pressed the "
        "unsubscribe button were judged a link scanner minutes later") is not None
