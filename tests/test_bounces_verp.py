"""VERP tags: opaque, signed, per issue; read back to the issue and recipient they name."""

from __future__ import annotations

import pytest

from newsletter.bounces.verp import (
    TAG_LENGTH,
    InvalidTag,
    Tagged,
    VerpCodec,
    check_bounce_address,
    tag_in,
    verp_address,
)

ISSUES = ["2025-autumn", "2026-spring"]


def test_a_tag_reads_back_to_its_issue_and_recipient() -> None:
    codec = VerpCodec({"k1": b"secret"})
    tag = codec.tag("2026-spring", 42)
    assert len(tag) == TAG_LENGTH
    assert tag == tag.lower() and tag.isalnum()
    assert codec.read(tag, ISSUES) == Tagged("2026-spring", 42)


def test_a_tag_survives_case_folding_on_the_way_back() -> None:
    codec = VerpCodec({"k1": b"secret"})
    assert codec.read(codec.tag("2026-spring", 7).upper(), ISSUES).recipient_id == 7


def test_the_same_recipient_has_unrelated_tags_in_two_issues() -> None:
    codec = VerpCodec({"k1": b"secret"})
    first, second = codec.tag("2025-autumn", 42), codec.tag("2026-spring", 42)
    assert first != second
    assert first[:26] != second[:26]


def test_a_tag_carries_no_address_or_number_in_clear() -> None:
    tag = VerpCodec({"k1": b"secret"}).tag("2026-spring", 123456)
    assert "123456" not in tag and "spring" not in tag


def test_an_altered_tag_is_refused() -> None:
    codec = VerpCodec({"k1": b"secret"})
    tag = codec.tag("2026-spring", 42)
    altered = ("b" if tag[0] != "b" else "c") + tag[1:]
    with pytest.raises(InvalidTag, match="signature does not verify"):
        codec.read(altered, ISSUES)


def test_a_tag_from_another_key_is_refused() -> None:
    tag = VerpCodec({"k1": b"someone else"}).tag("2026-spring", 42)
    with pytest.raises(InvalidTag):
        VerpCodec({"k1": b"secret"}).read(tag, ISSUES)


def test_a_tag_from_a_rotated_out_but_listed_key_still_reads() -> None:
    old = VerpCodec({"k1": b"old"}).tag("2026-spring", 42)
    assert VerpCodec({"k2": b"new", "k1": b"old"}).read(old, ISSUES).recipient_id == 42


def test_a_tag_for_an_issue_not_in_the_database_is_refused() -> None:
    codec = VerpCodec({"k1": b"secret"})
    with pytest.raises(InvalidTag, match="issue is not in this database"):
        codec.read(codec.tag("2019-old", 1), ISSUES)


@pytest.mark.parametrize("text", ["", "short", "!" * TAG_LENGTH])
def test_a_malformed_tag_is_refused(text: str) -> None:
    with pytest.raises(InvalidTag):
        VerpCodec({"k1": b"secret"}).read(text, ISSUES)


def test_verp_address_and_back() -> None:
    address = verp_address("bounces@news.example.org", "abc")
    assert address == "bounces+abc@news.example.org"
    assert tag_in(address, "bounces@news.example.org") == "abc"
    assert tag_in("Bounces+ABC@News.Example.org", "bounces@news.example.org") == "abc"
    assert tag_in("bounces@news.example.org", "bounces@news.example.org") is None
    assert tag_in("bounces+abc@elsewhere.example.org", "bounces@news.example.org") is None


@pytest.mark.parametrize(("address", "message"), [
    ("bounces@news.example.org", ""),
    ("not-an-address", "is not an email address"),
    ("bounces..team@news.example.org", "is not an email address"),
    ("bounces team@news.example.org", "is not an email address"),
    ("bounces@news", "is not an email address"),
    ("bounces+x@news.example.org", "already has a '+'"),
    ("a" * 30 + "@news.example.org", "too long to add a 39-character tag (at most 24"),
])
def test_check_bounce_address(address: str, message: str) -> None:
    assert message in check_bounce_address(address) if message else \
        check_bounce_address(address) == ""
