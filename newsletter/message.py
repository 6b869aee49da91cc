"""One email per recipient, made by substitution into the issue's built output.

The build writes ``email.html`` and ``email.txt`` once, with placeholders where each recipient
differs (``{{click:ID}}``, ``{{unsubscribe}}``, ``{{open}}``, ``{{name}}``). Here both are split
once per issue into literal segments and placeholders, the headers that are the same for
everyone are encoded once, and each recipient's message is a join of strings, one
quoted-printable encoding per part, and a few header lines. Nothing is re-rendered and no
``email.message`` tree is built per recipient.

Only the recipient's pseudonym (inside signed tokens) goes into URLs, never the address.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.utils import formataddr, formatdate
from functools import cached_property
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.project import Project
    from newsletter.tracking.tokens import Signer

try:
    from newsletter.links import PLACEHOLDER_RE
except ImportError:  # pragma: no cover - links.py is written alongside this module
    PLACEHOLDER_RE = re.compile(r"\{\{(click|unsubscribe|open|name)(?::([A-Za-z0-9_-]+))?\}\}")

NAME_FALLBACK = "colleague"
CRLF = b"\r\n"


@dataclass(frozen=True)
class Recipient:
    """Who one message is for, as the message needs it."""

    address: str
    name: str
    pseudonym: str
    message_id: str
    list_key: str = ""
    recipient_id: int = 0


class OutgoingMessage:
    """One recipient's message: parts for HTTP APIs, and the whole MIME for SMTP and Maildir.

    Everything is computed on first use: the SMTP adapter never builds the str parts, the
    HTTP adapters never build the MIME.
    """

    def __init__(self, factory: MessageFactory, recipient: Recipient,
                 values: dict[tuple[str, str], str]) -> None:
        self.factory = factory
        self.recipient = recipient
        self._values = values

    @property
    def to(self) -> str:
        return self.recipient.address

    @property
    def message_id(self) -> str:
        return self.recipient.message_id

    @property
    def envelope_from(self) -> str:
        return self.factory.envelope_from

    @property
    def from_header(self) -> str:
        return self.factory.from_header

    @property
    def reply_to(self) -> str:
        return self.factory.reply_to

    @property
    def subject(self) -> str:
        return self.factory.subject

    @cached_property
    def text(self) -> str:
        return _join(self.factory._text, self._values, html_escape=False)

    @cached_property
    def html(self) -> str:
        return _join(self.factory._html, self._values, html_escape=True)

    @cached_property
    def headers(self) -> list[tuple[str, str]]:
        """Per-list headers (ASCII, unfolded), as HTTP APIs take them."""
        f = self.factory
        return [
            ("List-Id", f.list_id),
            ("List-Unsubscribe", f"<{f.tracking_url}/u/{self._values[('unsubscribe', '')]}>, "
                                 f"<mailto:{f.unsubscribe_mailto}"
                                 f"?subject=unsubscribe%20{self.recipient.pseudonym}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]

    @cached_property
    def mime(self) -> bytes:
        """The whole message, CRLF line ends, ready for SMTP DATA."""
        r = self.recipient
        f = self.factory
        to = formataddr((r.name, r.address), "utf-8") if r.name else r.address
        lines = [b"To: " + to.encode("ascii"),
                 b"Date: " + formatdate(usegmt=True).encode("ascii"),
                 b"Message-ID: " + r.message_id.encode("ascii")]
        # Fold the long List-Unsubscribe between its two URLs.
        lines += [f"{name}: {value}".replace(">, <", ">,\r\n <").encode("ascii")
                  for name, value in self.headers]
        b = f.boundary
        return b"".join((
            f.head, CRLF.join(lines), CRLF, CRLF,
            b"--", b, CRLF, f.part_heads[0], _join_qp(f._text_qp, self._values, False), CRLF,
            b"--", b, CRLF, f.part_heads[1], _join_qp(f._html_qp, self._values, True), CRLF,
            b"--", b, b"--", CRLF,
        ))


Parts = list["str | tuple[str, str]"]
SOFT_BREAK = b"=" + CRLF


def _qp(text: str) -> bytes:
    # b2a_qp keeps "\n" as the line break (istext); SMTP wants CRLF everywhere.
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.replace(b"\n", CRLF)


def _split(template: str) -> Parts:
    """Literal strings and ``(kind, argument)`` placeholders, in order."""
    parts: Parts = []
    position = 0
    for match in PLACEHOLDER_RE.finditer(template):
        parts.append(template[position:match.start()])
        parts.append((match.group(1), match.group(2) or ""))
        position = match.end()
    parts.append(template[position:])
    return [p for p in parts if p != ""]


def _encode_parts(parts: Parts) -> list[bytes | tuple[str, str]]:
    """Quoted-printable per literal segment, once per issue.

    Each encoded piece ends with a soft line break, so a line never runs across a join and
    every line stays within 76 characters; soft breaks vanish when the part is decoded.
    """
    return [_qp(p) + SOFT_BREAK if isinstance(p, str) else p for p in parts]


def _value(values: dict[tuple[str, str], str], part: tuple[str, str], html_escape: bool) -> str:
    value = values[part]
    return html.escape(value) if html_escape and part[0] == "name" else value


def _join(parts: Parts, values: dict[tuple[str, str], str], html_escape: bool) -> str:
    return "".join(p if isinstance(p, str) else _value(values, p, html_escape) for p in parts)


def _join_qp(parts: list[bytes | tuple[str, str]], values: dict[tuple[str, str], str],
             html_escape: bool) -> bytes:
    return b"".join(p if isinstance(p, bytes) else _qp(_value(values, p, html_escape)) + SOFT_BREAK
                    for p in parts)


def _check_header(what: str, value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise NewsletterError(f"the {what} contains a line break, which would forge headers",
                              hint="remove line breaks from it in the issue file")
    return value


class MessageFactory:
    """Makes each recipient's message for one built issue."""

    def __init__(self, built, project: Project, signer: Signer, *,  # type: ignore[no-untyped-def]
                 test: bool = False) -> None:
        issue = built.issue
        self.slug = issue.slug
        self.tracking = issue.tracking
        self.signer = signer
        self.test = test
        self.tracking_url = project.tracking_url
        self.unsubscribe_mailto = project.unsubscribe_mailto
        sender = issue.sender
        self.envelope_from = _check_header("sender address", sender.email)
        self.sender_name = _check_header("sender name", sender.name)
        self.from_header = str(Address(sender.name, addr_spec=sender.email))
        self.reply_to = _check_header("reply-to address", sender.reply_to or sender.email)
        subject = _check_header("subject", issue.subject)
        self.subject = f"[TEST] {subject}" if test else subject
        self.list_id = f"<{self.slug}.{project.list_id_domain}>"
        self._text = _split(built.text)
        self._html = _split(built.html)
        self._text_qp = _encode_parts(self._text)
        self._html_qp = _encode_parts(self._html)
        self._placeholders = sorted({p for p in self._text + self._html if isinstance(p, tuple)}
                                    | {("unsubscribe", "")})
        self.boundary = f"==newsletter-{secrets.token_hex(12)}==".encode("ascii")
        self.head = self._encode_static_headers(issue.language)
        self.part_heads = (
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        )
        # Aggregate tracking signs per list, not per person: sign each link once per list.
        self._list_tokens: dict[tuple[str, str, str], str] = {}

    def _encode_static_headers(self, language: str) -> bytes:
        # The email package folds and RFC 2047-encodes these once; they are the same for all.
        smtp = policy.SMTP

        def fold(name: str, value: str) -> bytes:
            return smtp.header_factory(name, value).fold(policy=smtp).encode("ascii")

        headers = [("From", self.from_header), ("Reply-To", self.reply_to),
                   ("Subject", self.subject), ("MIME-Version", "1.0"),
                   ("Content-Language", language or "en-GB"),
                   ("Precedence", "bulk"), ("Auto-Submitted", "auto-generated")]
        if self.test:
            headers.append(("X-Newsletter-Test", "yes"))
        encoded = [fold(name, value) for name, value in headers]
        encoded.append(b'Content-Type: multipart/alternative; boundary="'
                       + self.boundary + b'"\r\n')
        return b"".join(encoded)

    def _token(self, kind: str, argument: str, r: Recipient) -> str:
        if kind == "unsubscribe":
            return self.signer.unsubscribe(self.slug, r.pseudonym)
        if self.tracking == "individual":
            if kind == "click":
                return self.signer.click(self.slug, argument, pseudonym=r.pseudonym)
            return self.signer.open(self.slug, pseudonym=r.pseudonym)
        key = (kind, argument, r.list_key)
        token = self._list_tokens.get(key)
        if token is None:
            list_key = r.list_key or None
            if kind == "click":
                token = self.signer.click(self.slug, argument, list_key=list_key)
            else:
                token = self.signer.open(self.slug, list_key=list_key)
            self._list_tokens[key] = token
        return token

    def make(self, r: Recipient) -> OutgoingMessage:
        """The message for ``r``: only the placeholder values are computed here."""
        values: dict[tuple[str, str], str] = {}
        for kind, argument in self._placeholders:
            if kind == "name":
                values[(kind, argument)] = r.name.strip() or NAME_FALLBACK
            else:
                values[(kind, argument)] = self._token(kind, argument, r)
        return OutgoingMessage(self, r, values)
