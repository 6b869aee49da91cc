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
import datetime as dt
import html
import re
import secrets
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import format_datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from newsletter import headers
from newsletter.links import PLACEHOLDER_RE

if TYPE_CHECKING:
    from newsletter.build import BuiltIssue
    from newsletter.project import Project
    from newsletter.tracking.tokens import Signer


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
        """The envelope sender: with ``bounce_address`` set, that address with this
        recipient's VERP tag (``bounces+TAG@...``), so every bounce says whom it is about."""
        f = self.factory
        if f.verp is not None and self.recipient.recipient_id:
            from newsletter.bounces.verp import verp_address

            return verp_address(f.bounce_address, f.verp.tag(f.slug, self.recipient.recipient_id))
        return f.bounce_address or f.envelope_from

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
    def _every_value(self) -> dict[tuple[str, str], str]:
        # The str parts (for HTTP APIs) also need the tokens shared by the recipient's list.
        f = self.factory
        values = dict(self._values)
        for kind, argument in f._placeholders:
            if (kind, argument) not in values:
                values[(kind, argument)] = f._token(kind, argument, self.recipient)
        return values

    @cached_property
    def text(self) -> str:
        return _join(self.factory._text, self._every_value, html_escape=False)

    @cached_property
    def html(self) -> str:
        return _join(self.factory._html, self._every_value, html_escape=True)

    def _unsubscribe_urls(self) -> list[str]:
        f = self.factory
        return [f"<{f.tracking_url}/u/{self._values[('unsubscribe', '')]}>,",
                f"<mailto:{f.unsubscribe_mailto}?subject=unsubscribe%20"
                f"{self.recipient.pseudonym}>"]

    @cached_property
    def headers(self) -> list[tuple[str, str]]:
        """Per-list headers (ASCII, encoded but unfolded), as HTTP APIs take them."""
        return [
            ("List-Id", _unfolded(self.factory.list_id_header)),
            ("List-Unsubscribe", " ".join(self._unsubscribe_urls())),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]

    @property
    def api_headers(self) -> list[tuple[str, str]]:
        """Every header an HTTP API must add besides From, To, Subject and Reply-To: the
        Message-ID, the ones the same for everyone (``Precedence``, ``Auto-Submitted``,
        ``Content-Language``, ``X-Newsletter-Test`` on test copies) and the per-list ones."""
        return [("Message-ID", self.message_id), *self.factory.fixed_headers, *self.headers]

    def _build(self, stuffed: bool) -> bytes:
        r = self.recipient
        f = self.factory
        b = f.boundary
        out = [f.head, _to_header(r.name, r.address), b"Date: ", _date_now(), CRLF,
               b"Message-ID: ", r.message_id.encode("ascii"), CRLF, f.list_id_header,
               headers.folded("List-Unsubscribe", self._unsubscribe_urls()),
               b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"]
        out += [CRLF, b"--", b, CRLF, f.part_heads[0]]
        # One join for the whole message: the parts' pieces go straight into it.
        piece = _qp_piece_stuffed if stuffed else _qp_piece
        for part, escape in (("text", False), ("html", True)):
            if part == "html":
                out += [CRLF, b"--", b, CRLF, f.part_heads[1]]
            for p in f._compiled(part, r.list_key, stuffed):
                out.append(p if isinstance(p, bytes) else piece(_value(self._values, p, escape)))
        out += [CRLF, b"--", b, b"--", CRLF]
        if stuffed:
            out.append(b".\r\n")
        return b"".join(out)

    # Made afresh on each use, not kept: a worker holds a whole claim of messages, and
    # 50 KB each adds up over four connections.
    @property
    def mime(self) -> bytes:
        """The whole message, CRLF line ends (for Maildir and APIs that take MIME)."""
        return self._build(stuffed=False)

    @property
    def smtp_data(self) -> bytes:
        """The message dot-stuffed for SMTP DATA (RFC 5321 4.5.2), ending with the final
        ``.``. Segments were stuffed once per issue, so this is a join, not a scan."""
        return self._build(stuffed=True)


_date_cache: list = [0, b""]


def _date_now() -> bytes:
    """The Date header's value, formatted once a second rather than once a message.

    A numeric zone (``+0000``), as RFC 5322 3.3 prefers over the obsolete ``GMT``.
    """
    now = int(time.time())
    if _date_cache[0] != now:
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        _date_cache[:] = [now, format_datetime(moment).encode("ascii")]
    return _date_cache[1]


_SIMPLE_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/?^_`{|}~-]+)*")


def _to_header(name: str, address: str) -> bytes:
    """The To line; most names are plain ASCII words and skip the general encoder."""
    if not name:
        return headers.mailbox("To", "", address)
    if len(name) + len(address) < 70 and _SIMPLE_NAME_RE.fullmatch(name):
        return f"To: {name} <{address}>\r\n".encode("ascii")
    return headers.mailbox("To", name, address)


def _unfolded(header: bytes) -> str:
    """The value of one encoded header line, unfolded (for APIs that take name and value)."""
    return header.decode("ascii").partition(":")[2].replace("\r\n", "").strip()


Parts = list["str | tuple[str, str]"]
SOFT_BREAK = b"=" + CRLF
QP_LINE = 76        # RFC 2045 6.7: encoded lines are at most 76 characters


def _qp(text: str) -> bytes:
    """Quoted-printable whose last line leaves room for the soft break every piece ends with.

    b2a_qp makes lines of up to 76 characters; a 76-character last line followed by our
    ``=`` would be 77 (RFC 2045 6.7 allows 76), so it is split, never inside an ``=XX``.
    """
    # b2a_qp keeps "\n" as the line break (istext); SMTP wants CRLF everywhere.
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > QP_LINE - 1:
        cut = start + QP_LINE - 1
        if encoded[cut - 1:cut] == b"=":
            cut -= 1
        elif encoded[cut - 2:cut - 1] == b"=":
            cut -= 2
        encoded = encoded[:cut] + b"=\n" + encoded[cut:]
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


_PLAIN_RE = re.compile(r"[A-Za-z0-9._~-]{0,75}")


@lru_cache(maxsize=4096)
def _qp_piece(value: str) -> bytes:
    """One placeholder's value, quoted-printable, ending in a soft break.

    Signed tokens are URL-safe ASCII that quoted-printable leaves as they are; those short
    enough for one line skip the encoder. Tokens shared by a whole list come from the cache.
    """
    if _PLAIN_RE.fullmatch(value):
        return value.encode("ascii") + SOFT_BREAK
    return _qp(value) + SOFT_BREAK


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: a line starting with "." gets another one (``data`` starts a line)."""
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


@lru_cache(maxsize=4096)
def _qp_piece_stuffed(value: str) -> bytes:
    return dot_stuff(_qp_piece(value))


_check_header = headers.check_header_text


class MessageFactory:
    """Makes each recipient's message for one built issue."""

    def __init__(self, built: BuiltIssue, project: Project, signer: Signer, *,
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
        self.bounce_address = project.settings.bounce_address
        self.verp = None
        if self.bounce_address:
            from newsletter.bounces.verp import codec_for

            self.verp = codec_for(signer)
        self.sender_name = _check_header("sender name", sender.name)
        self._from_line = headers.mailbox("From", sender.name, sender.email)
        # HTTP APIs take the display name as text and encode it themselves.
        self.from_header = str(Address(sender.name, addr_spec=sender.email))
        self.reply_to = _check_header("reply-to address", sender.reply_to or sender.email)
        subject = _check_header("subject", issue.subject)
        self.subject = f"[TEST] {subject}" if test else subject
        list_name, list_id = project.settings.list_id_parts
        self.list_id = f"<{list_id}>"
        self.list_id_header = headers.mailbox("List-Id", list_name, list_id, brackets=True)
        self._text = _split(built.text)
        self._html = _split(built.html)
        self._text_qp = _encode_parts(self._text)
        self._html_qp = _encode_parts(self._html)
        # Every piece starts a line (after a soft break or the part's headers), so each can
        # be dot-stuffed on its own, once.
        self._text_stuffed = [dot_stuff(p) if isinstance(p, bytes) else p
                              for p in self._text_qp]
        self._html_stuffed = [dot_stuff(p) if isinstance(p, bytes) else p
                              for p in self._html_qp]
        self._placeholders = sorted({p for p in self._text + self._html if isinstance(p, tuple)}
                                    | {("unsubscribe", "")})
        self._personal = [p for p in self._placeholders if self._is_personal(p)]
        self._compiled_cache: dict[tuple[str, str, bool], list[bytes | tuple[str, str]]] = {}
        self.boundary = f"==newsletter-{secrets.token_hex(12)}==".encode("ascii")
        # Headers the same for every recipient beyond From, Reply-To and Subject: in the MIME
        # head, and given one by one to HTTP APIs that build the MIME themselves.
        self.fixed_headers = [("Content-Language", issue.language or "en-GB"),
                              ("Precedence", "bulk"), ("Auto-Submitted", "auto-generated")]
        if test:
            self.fixed_headers.append(("X-Newsletter-Test", "yes"))
        self.head = self._encode_static_headers()
        self.part_heads = (
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        )
        # Aggregate tracking signs per list, not per person: sign each link once per list.
        self._list_tokens: dict[tuple[str, str, str], str] = {}

    def _encode_static_headers(self) -> bytes:
        # Encoded and folded once: they are the same for every recipient.
        lines = [self._from_line, headers.mailbox("Reply-To", "", self.reply_to),
                 headers.unstructured("Subject", self.subject),
                 headers.folded("MIME-Version", ["1.0"])]
        lines += [headers.folded(name, [value]) for name, value in self.fixed_headers]
        lines.append(headers.folded("Content-Type", [
            "multipart/alternative;", f'boundary="{self.boundary.decode("ascii")}"']))
        return b"".join(lines)

    def _token(self, kind: str, argument: str, r: Recipient) -> str:
        if kind == "unsubscribe":
            return self.signer.unsubscribe(self.slug, r.pseudonym)
        if self.tracking == "individual" and kind != "feedback":
            if kind == "click":
                return self.signer.click(self.slug, argument, pseudonym=r.pseudonym)
            return self.signer.open(self.slug, pseudonym=r.pseudonym)
        key = (kind, argument, r.list_key)
        token = self._list_tokens.get(key)
        if token is None:
            list_key = r.list_key or None
            if kind == "click":
                token = self.signer.click(self.slug, argument, list_key=list_key)
            elif kind == "feedback":   # an answer is the list's, never the person's
                token = self.signer.feedback(self.slug, argument, list_key=list_key)
            else:
                token = self.signer.open(self.slug, list_key=list_key)
            self._list_tokens[key] = token
        return token

    def _is_personal(self, placeholder: tuple[str, str]) -> bool:
        """Does this placeholder differ per recipient (rather than per list)?"""
        if placeholder[0] == "feedback":
            return False
        return placeholder[0] in ("name", "unsubscribe") or self.tracking == "individual"

    def _compiled(self, part: str, list_key: str, stuffed: bool) -> list[bytes | tuple[str, str]]:
        """The encoded part with every list-wide token filled in and the bytes between the
        remaining (personal) placeholders joined: a few pieces per recipient, not dozens."""
        key = (part, list_key, stuffed)
        compiled = self._compiled_cache.get(key)
        if compiled is not None:
            return compiled
        source = {("text", False): self._text_qp, ("text", True): self._text_stuffed,
                  ("html", False): self._html_qp, ("html", True): self._html_stuffed}[
                      (part, stuffed)]
        piece = _qp_piece_stuffed if stuffed else _qp_piece
        anyone = Recipient("", "", "", "", list_key)
        compiled, run = [], []
        for item in source:
            if isinstance(item, bytes):
                run.append(item)
            elif not self._is_personal(item):
                run.append(piece(self._token(item[0], item[1], anyone)))
            else:
                compiled += [b"".join(run), item]
                run = []
        compiled.append(b"".join(run))
        if len(self._compiled_cache) < 1000:
            self._compiled_cache[key] = compiled
        return compiled

    def make(self, r: Recipient) -> OutgoingMessage:
        """The message for ``r``: only the placeholder values are computed here."""
        values: dict[tuple[str, str], str] = {}
        for kind, argument in self._personal:
            if kind == "name":
                values[(kind, argument)] = r.name.strip() or NAME_FALLBACK
            else:
                values[(kind, argument)] = self._token(kind, argument, r)
        return OutgoingMessage(self, r, values)
