"""Each message of the bounce corpus (tests/bounces/) is classified as a person would."""

from __future__ import annotations

import pytest
from helpers import BOUNCE_CORPUS

from newsletter.bounces.classify import Kind, classify
from newsletter.bounces.events import EventType, bounce_type

HARD, SOFT, COMPLAINED = EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT, EventType.COMPLAINED

# file -> (kind, [(address, type, status)], original Message-ID)
EXPECTED = {
    "postfix-user-unknown.eml": (Kind.BOUNCE, [
        ("safeguarding-lead@school1.example.org", HARD, "5.1.1")],
        "<2026-spring.p0001@prevent-newsletter.example.org>"),
    "exim-mailbox-full.eml": (Kind.BOUNCE, [("dsl@academy2.example.org", SOFT, "5.2.2")],
                              "<2026-spring.p0002@prevent-newsletter.example.org>"),
    "microsoft365-recipient-not-found.eml": (Kind.BOUNCE, [
        ("partnership-office@kscmp.example.org", HARD, "5.1.10")],
        "<2026-spring.p0003@prevent-newsletter.example.org>"),
    "gmail-address-not-found.eml": (Kind.BOUNCE, [
        ("prevent-education@kcc.example.org", HARD, "5.1.1")],
        "<2026-spring.p0004@prevent-newsletter.example.org>"),
    "qmail-non-standard.eml": (Kind.BOUNCE, [
        ("adult-safeguarding@care1.example.org", HARD, "5.1.1")], ""),
    "exim-classic-non-standard.eml": (Kind.BOUNCE, [
        ("safeguarding@charity1.example.org", HARD, "5.2.1")], ""),
    "arf-complaint.eml": (Kind.COMPLAINT, [("communications@kcc.example.org", COMPLAINED, "")],
                          "<2026-spring.p0007@prevent-newsletter.example.org>"),
    "out-of-office.eml": (Kind.AUTO_REPLY, [], ""),
    "vacation.eml": (Kind.AUTO_REPLY, [], ""),
    "delayed-warning.eml": (Kind.DELAY, [], ""),
    "dmarc-auth-failure.eml": (Kind.NOT_A_BOUNCE, [], "<spoofed.1@elsewhere.example.org>"),
    "not-a-bounce.eml": (Kind.NOT_A_BOUNCE, [], ""),
}


def test_the_corpus_is_all_expected() -> None:
    assert sorted(p.name for p in BOUNCE_CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message_is_classified(name: str) -> None:
    kind, findings, original = EXPECTED[name]
    result = classify((BOUNCE_CORPUS / name).read_bytes())
    assert result.kind == kind, result.note
    assert [(f.address, f.type, f.status) for f in result.findings] == findings
    assert result.original_message_id == original
    assert result.counts == bool(findings)


def test_the_server_text_is_kept_unfolded() -> None:
    result = classify((BOUNCE_CORPUS / "postfix-user-unknown.eml").read_bytes())
    assert result.findings[0].text == (
        "550 5.1.1 <safeguarding-lead@school1.example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table")


def test_the_verp_address_is_found_in_envelope_headers_and_the_quoted_original() -> None:
    result = classify((BOUNCE_CORPUS / "arf-complaint.eml").read_bytes())
    assert ("bounces+du3j3g7p3ql5zumbkcatylxslpz53vym22t7bmq@prevent-newsletter.example.org"
            in result.envelope_addresses)


def test_a_complaint_with_the_recipient_redacted_still_counts() -> None:
    raw = (BOUNCE_CORPUS / "arf-complaint.eml").read_bytes()
    raw = raw.replace(b"Original-Rcpt-To: <communications@kcc.example.org>\n", b"")
    raw = raw.replace(b"To: Communications Team <communications@kcc.example.org>",
                      b"To: redacted")
    result = classify(raw)
    assert result.kind == Kind.COMPLAINT
    assert [(f.address, f.type) for f in result.findings] == [("", COMPLAINED)]


def test_an_auto_reply_from_a_null_sender_is_not_a_bounce() -> None:
    result = classify((BOUNCE_CORPUS / "out-of-office.eml").read_bytes())
    assert result.kind == Kind.AUTO_REPLY
    assert result.note == "automatic reply (Auto-Submitted: auto-generated)"


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe garbage", b"Content-Type: multipart/report;"
                                 b" report-type=delivery-status; boundary=x\n\n--x\nbroken"])
def test_garbage_is_never_a_bounce_and_never_a_crash(raw: bytes) -> None:
    assert not classify(raw).counts


@pytest.mark.parametrize(("status", "code", "text", "expected"), [
    ("5.1.1", None, "", HARD),
    ("5.1.10", None, "", HARD),
    ("5.2.1", None, "", HARD),
    ("5.7.1", None, "", HARD),
    ("5.2.2", None, "", SOFT),
    ("5.7.26", None, "", SOFT),
    ("4.2.2", None, "", SOFT),
    ("", 550, "", HARD),
    ("", 552, "", SOFT),
    ("", None, "smtp; 550 5.1.1 user unknown", HARD),
    ("", None, "421 4.7.0 try again later", SOFT),
    ("", None, "", SOFT),
])
def test_bounce_type_by_status_code(status: str, code: int | None, text: str,
                                    expected: EventType) -> None:
    assert bounce_type(status, code, text) == expected
