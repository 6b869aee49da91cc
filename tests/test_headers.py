"""Header lines read back exactly by Python's email package and by Perl's Email::MIME."""

from __future__ import annotations

import pytest
from helpers import ENCODED_WORD_RE, line_problems, perl_parse, python_mailboxes, python_parse

from newsletter import headers
from newsletter.errors import NewsletterError

SUBJECTS = [
    "Spring update: what’s new",
    "Plain ASCII subject",
    # The case that lost its spaces: the space fell between two encoded-words.
    "café ✓ Ünïcödé " * 6 + "end",
    "Prevent in Kent: Отчёт о работе партнёрства — 安全保障 — ελληνικά καλημέρα — مرحبا بكم "
    "— हिन्दी — 😀 and more words after",
    "a" * 100 + " then a very long word",
    "two  spaces inside",
    " a leading space",
    "=?utf-8?q?looks_encoded?= but is text",
    "tab\tinside",
    "🙂" * 40,
]


def _message(*header_lines: bytes) -> bytes:
    return b"".join(header_lines) + b"MIME-Version: 1.0\r\n\r\nbody\r\n"


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_subject_decodes_back_exactly(subject: str) -> None:
    raw = _message(headers.unstructured("Subject", subject))
    assert python_parse(raw)["Subject"] == subject
    assert perl_parse(raw)["subject"] == subject
    assert line_problems(raw) == []


NAMES = [
    "Ann Lee",
    "Ann <Lee> & Co",
    'Say "hi"',
    "J. Smith",
    "O'Brien",
    "Sam, Shared",
    "Zoë Ünïcödé-Łukasiewicz, Organisation für Sicherheit und Schutz",
    "Δημήτρης Παπαδόπουλος (Κοινότητα) Έργο",
    "安全保障" * 10,
    "x" * 90,
    "Ülo  Two Spaces",
    " lead",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_display_name_decodes_back_exactly(name: str) -> None:
    raw = _message(headers.mailbox("To", name, "ann@school.example.org"))
    assert python_mailboxes(raw, "To") == [(name, "ann@school.example.org")]
    assert perl_parse(raw)["to"] == [{"name": name, "address": "ann@school.example.org"}]
    assert line_problems(raw) == []


def test_a_short_non_ascii_name_is_one_encoded_word() -> None:
    # One encoded-word, so even parsers that keep the space between two of them agree.
    raw = _message(headers.mailbox("To", "Zoë Ünïcödé", "zoe@example.org"))
    assert len(ENCODED_WORD_RE.findall(raw)) == 1
    assert python_parse(raw)["To"].addresses[0].display_name == "Zoë Ünïcödé"


def test_a_list_id_keeps_its_brackets_without_a_name() -> None:
    assert headers.mailbox("List-Id", "", "news.example.org", brackets=True) == \
        b"List-Id: <news.example.org>\r\n"


def test_long_lists_of_items_are_folded_between_items() -> None:
    line = headers.folded("List-Unsubscribe", ["<https://t.example.org/u/" + "x" * 40 + ">,",
                                                "<mailto:leave@example.org?subject=x>"])
    assert line == (b"List-Unsubscribe:\r\n <https://t.example.org/u/" + b"x" * 40
                    + b">,\r\n <mailto:leave@example.org?subject=x>\r\n")


@pytest.mark.parametrize("address", ["ann lee@example.org", "zoë@example.org",
                                     "a@example.org>, b@example.org"])
def test_an_address_that_cannot_be_a_header_is_refused(address: str) -> None:
    with pytest.raises(NewsletterError, match="cannot be written in a From header"):
        headers.mailbox("From", "Team", address)
