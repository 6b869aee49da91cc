"""Say what one message from the bounce mailbox is: a bounce, a complaint, or nothing for us.

In order, the first that fits wins:

1. an RFC 3464 delivery status notification (``multipart/report; report-type=delivery-status``):
   each per-recipient block's Action, Status and Diagnostic-Code are read as written. A
   ``failed`` recipient is a hard or soft bounce by its status code
   (:func:`~newsletter.bounces.events.bounce_type`); ``delayed`` is a warning and ignored,
   since the final answer comes later.
2. an RFC 5965 abuse report (``report-type=feedback-report``, ``Feedback-Type: abuse`` or
   ``fraud``): a complaint. Other feedback types (``auth-failure``, ``not-spam``, ...) are not.
3. a message from a mailer daemon (null Return-Path, or From ``MAILER-DAEMON``/``postmaster``)
   in one of the many non-standard formats (qmail, old Exim, Exchange 2003, ...): the Mailman
   project's ``flufl.bounce`` detectors find the failed addresses; we never write our own
   patterns for these.
4. an automatic reply (RFC 3834 ``Auto-Submitted``, and the out-of-office and vacation markers
   that Exchange and others use instead): ignored.
5. anything else: not a bounce, ignored.

Nothing here decides who the message was about in our database (that is attribution, done with
the VERP tag, the original Message-ID or the address); this module only reads the message.
Any message that cannot be parsed is ``malformed``, never an exception.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import message_from_bytes, message_from_string
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from typing import Any

from newsletter.bounces.events import EventType, basic_code_in, bounce_type, status_in

log = logging.getLogger(__name__)

MAX_TEXT = 500          # characters of a server's text kept with each bounce


class Kind(StrEnum):
    """What kind of message it is."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELAY = "delay warning"
    AUTO_REPLY = "auto-reply"
    NOT_A_BOUNCE = "not a bounce"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Finding:
    """One recipient the message is about: bounced (hard or soft) or complained."""

    address: str            # as the report gives it; may be empty for a redacted complaint
    type: EventType
    status: str = ""        # RFC 3463 enhanced status code, e.g. 5.1.1
    text: str = ""          # the remote server's words (Diagnostic-Code or the quoted reply)


@dataclass(frozen=True)
class Classification:
    """What one message is, and everything in it that can tie it to a recipient."""

    kind: Kind
    findings: tuple[Finding, ...] = ()
    message_id: str = ""            # this message's own Message-ID
    original_message_id: str = ""   # Message-ID of the message that bounced, if quoted
    envelope_addresses: tuple[str, ...] = ()   # where a VERP tag may be: To, Delivered-To, ...
    note: str = ""                  # why, in a few words, for `bounces fetch` to print
    subject: str = ""

    @property
    def counts(self) -> bool:
        """True when the message is a bounce or a complaint (something to record)."""
        return self.kind in (Kind.BOUNCE, Kind.COMPLAINT) and bool(self.findings)


# Headers where the delivering server writes the address a message came to: our VERP address.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_DAEMON_LOCALPARTS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}
_DAEMON_NAMES = re.compile(r"mail delivery (subsystem|system|service)|mailer.daemon"
                           r"|postmaster|microsoft outlook", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply"
    r"|auto:|vacation|away from (my|the) office|abwesenheitsnotiz|r[ée]ponse automatique)",
    re.IGNORECASE)
_COMPLAINT_TYPES = {"abuse", "fraud"}


def classify(raw: bytes) -> Classification:
    """Classify one message given as its raw bytes (as stored in a mailbox)."""
    try:
        msg = message_from_bytes(raw, policy=compat32)
        return _classify(msg)
    except Exception as exc:  # noqa: BLE001 - a broken message is skipped, never a crash
        log.warning("bounce message could not be read: %s: %s", type(exc).__name__, exc)
        return Classification(Kind.MALFORMED, note=f"could not be read: {exc}")


def _classify(msg: Message) -> Classification:
    base: dict[str, Any] = {
        "message_id": _message_id(msg.get("Message-ID")),
        "subject": _header(msg, "Subject"),
    }
    original = _original_headers(msg)
    base["original_message_id"] = _message_id(original.get("Message-ID")) if original else ""
    base["envelope_addresses"] = _envelope_addresses(msg, original)
    report_type = (msg.get_param("report-type", header="content-type") or "")
    report_type = str(report_type).lower() if msg.get_content_type() == "multipart/report" \
        else ""

    if report_type == "delivery-status":
        findings, delayed = _dsn_findings(msg)
        if findings:
            return Classification(Kind.BOUNCE, tuple(findings),
                                  note="delivery status notification (RFC 3464)", **base)
        if delayed:
            return Classification(Kind.DELAY, note="delivery delayed; the final answer "
                                  "comes later", **base)
        # A report whose blocks we cannot read: let the detectors try before giving up.
    if report_type == "feedback-report":
        return _complaint(msg, original, base)

    auto = _auto_reply_marker(msg)
    if _from_mailer_daemon(msg) or report_type == "delivery-status":
        findings, delayed = _detector_findings(msg)
        if findings:
            return Classification(Kind.BOUNCE, tuple(findings),
                                  note="non-standard bounce (flufl.bounce)", **base)
        if delayed:
            return Classification(Kind.DELAY, note="delivery delayed (flufl.bounce)", **base)
    if auto:
        return Classification(Kind.AUTO_REPLY, note=f"automatic reply ({auto})", **base)
    if _from_mailer_daemon(msg) or report_type:
        return Classification(Kind.NOT_A_BOUNCE,
                              note="from a mail server, but names no failed recipient", **base)
    return Classification(Kind.NOT_A_BOUNCE, note="not a bounce or a complaint", **base)


# --- RFC 3464 ---------------------------------------------------------------------------------


def _dsn_blocks(msg: Message) -> list[Message]:
    blocks: list[Message] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks.extend(p for p in payload if isinstance(p, Message))
        else:
            # Sent base64- or quoted-printable-encoded, so the parser kept it as text.
            data = _decoded(part)
            text = data.decode("utf-8", "replace").replace("\r\n", "\n")
            blocks.extend(message_from_string(chunk.strip() + "\n", policy=compat32)
                          for chunk in re.split(r"\n\s*\n", text) if chunk.strip())
    return blocks


def _dsn_findings(msg: Message) -> tuple[list[Finding], bool]:
    findings: list[Finding] = []
    delayed = False
    for block in _dsn_blocks(msg):
        action = _unfold(block.get("Action", "")).lower()
        if not action:
            continue        # the per-message block (Reporting-MTA, Arrival-Date)
        address = (_typed_address(block.get("Original-Recipient"))
                   or _typed_address(block.get("X-Actual-Recipient"))
                   or _typed_address(block.get("Final-Recipient")))
        if action.startswith("delayed"):
            delayed = True
            continue
        if not action.startswith(("failed", "error")):     # delivered, relayed, expanded
            continue
        status = status_in(_unfold(block.get("Status", "")))
        text = _unfold(block.get("Diagnostic-Code", ""))
        text = re.sub(r"^\s*[\w-]+\s*;\s*", "", text)      # the diagnostic type: smtp; X-str;
        findings.append(Finding(address, bounce_type(status, text=text), status,
                                text[:MAX_TEXT]))
    return findings, delayed


def _typed_address(value: str | None) -> str:
    """``rfc822; someone@example.org`` -> the address (other address types are not ours)."""
    if not value:
        return ""
    kind, sep, address = _unfold(value).partition(";")
    if not sep:
        address = kind
    elif kind.strip().lower() != "rfc822":
        return ""
    return parseaddr(address.strip())[1].strip().lower()


# --- RFC 5965 ---------------------------------------------------------------------------------


def _decoded(part: Message) -> bytes:
    """The body of ``part`` with its transfer encoding undone (empty if it has none)."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _complaint(msg: Message, original: Message | None,
               base: dict[str, Any]) -> Classification:
    fields: Message | None = None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                fields = payload[0]
            else:
                data = _decoded(part)
                fields = message_from_string(data.decode("utf-8", "replace"), policy=compat32)
            break
    if fields is None:
        return Classification(Kind.NOT_A_BOUNCE, note="feedback report without its "
                              "machine-readable part", **base)
    feedback = _unfold(fields.get("Feedback-Type", "")).lower()
    if feedback not in _COMPLAINT_TYPES:
        return Classification(Kind.NOT_A_BOUNCE, note=f"feedback report of type "
                              f"{feedback or '(none)'}, not a complaint", **base)
    addresses = [a.lower() for _, a in getaddresses(fields.get_all("Original-Rcpt-To", []))
                 if "@" in a]
    if not addresses and original is not None:
        addresses = [a.lower() for _, a in getaddresses(original.get_all("To", [])) if "@" in a]
    text = _header(fields, "User-Agent")
    findings = [Finding(a, EventType.COMPLAINED, text=f"feedback report from {text}"
                        if text else "feedback report") for a in addresses]
    if not findings:
        # Many mailbox providers redact the recipient; the VERP tag or the original
        # Message-ID may still say who it was.
        findings = [Finding("", EventType.COMPLAINED, text="feedback report (recipient redacted)")]
    return Classification(Kind.COMPLAINT, tuple(findings),
                          note=f"complaint (RFC 5965 feedback report, {feedback})", **base)


# --- non-standard bounces ------------------------------------------------------------------------


def _from_mailer_daemon(msg: Message) -> bool:
    return_path = (msg.get("Return-Path") or "").strip()
    if return_path in ("<>", "< >"):
        return True
    name, address = parseaddr(msg.get("From") or "")
    local = address.split("@", 1)[0].lower()
    return local in _DAEMON_LOCALPARTS or bool(_DAEMON_NAMES.search(name or ""))


def _detector_findings(msg: Message) -> tuple[list[Finding], bool]:
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    body = _plain_text(msg)
    findings = []
    for raw_address in sorted(permanent):
        address = raw_address.decode("ascii", "replace").strip().lower()
        snippet = _near(body, address)
        status = status_in(snippet)
        code = _any_basic_code(snippet)
        # With no code to go on, a permanent failure by the detector's own word is hard.
        kind = bounce_type(status, code) if status or code is not None \
            else EventType.BOUNCED_HARD
        findings.append(Finding(address, kind, status, snippet[:MAX_TEXT]))
    return findings, bool(temporary)


def _near(body: str, address: str) -> str:
    """The few lines after ``address`` in the bounce text: where servers quote their reply."""
    lines = body.splitlines()
    for index, line in enumerate(lines):
        if address in line.lower():
            chunk = [item.strip() for item in lines[index:index + 6] if item.strip()]
            return " ".join(chunk)
    return ""


def _any_basic_code(text: str) -> int | None:
    found = re.search(r"(?<![\d.])([45]\d\d)[ -](?!\d)", text)
    return int(found.group(1)) if found else basic_code_in(text)


# --- automatic replies ---------------------------------------------------------------------------


def _auto_reply_marker(msg: Message) -> str:
    """Why ``msg`` is an automatic reply (a header or subject), or ``""``."""
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Autogenerated", "X-Auto-Response-Suppress"):
        if msg.get(header):
            return header
    if (msg.get("Precedence") or "").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    subject = _header(msg, "Subject")
    if _AUTO_SUBJECT.search(subject):
        return f"subject {subject!r}"
    return ""


# --- helpers ----------------------------------------------------------------------------------


def _original_headers(msg: Message) -> Message | None:
    """Headers of the message that bounced, from a message/rfc822 or text/rfc822-headers part."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind in ("text/rfc822-headers", "text/rfc822-header"):
            data = _decoded(part)
            return message_from_string(data.decode("utf-8", "replace"), policy=compat32)
    return None


def _envelope_addresses(msg: Message, original: Message | None) -> tuple[str, ...]:
    found: list[str] = []
    for header in _ENVELOPE_HEADERS:
        for _, address in getaddresses(msg.get_all(header, [])):
            if address and address not in found:
                found.append(address)
    if original is not None:
        # The quoted original's Return-Path is the envelope sender we used: our VERP address.
        for _, address in getaddresses(original.get_all("Return-Path", [])):
            if address and address not in found:
                found.append(address)
    return tuple(found)


def _plain_text(msg: Message) -> str:
    chunks = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            data = _decoded(part)
            charset = part.get_content_charset() or "utf-8"
            try:
                chunks.append(data.decode(charset, "replace"))
            except LookupError:
                chunks.append(data.decode("utf-8", "replace"))
    return "\n".join(chunks)


def _message_id(value: object) -> str:
    text = _unfold(str(value or "")).strip()
    found = re.search(r"<[^<>\s]+>", text)
    if found:
        return found.group(0)
    return f"<{text}>" if text and " " not in text else ""


def _header(msg: Message, name: str) -> str:
    from email.header import decode_header, make_header

    value = msg.get(name)
    if value is None:
        return ""
    try:
        return _unfold(str(make_header(decode_header(str(value)))))
    except (UnicodeError, LookupError, ValueError):
        return _unfold(str(value))


def _unfold(value: object) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip()

