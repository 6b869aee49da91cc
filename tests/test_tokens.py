"""Tokens are opaque and per issue; tokens made before they were encrypted still verify."""

from __future__ import annotations

import base64

import pytest
from helpers import legacy_token

from newsletter.tracking.tokens import InvalidToken, Signer, TokenData

SIGNER = Signer({"k1": b"secret"}, "k1")

# Made by the code before tokens were encrypted (git 2bd276c), key k1 = b"secret".
OLD_CODE_TOKENS = {
    "azEfYx9zcHJpbmcfYTEfcjpwMQ.RueMNXFzSD_EkIgV":
        TokenData("c", "spring", "a1", pseudonym="p1"),
    "azEfYx9zcHJpbmcfYTEfbDpwYXJ0bmVycw.teP61uhczl8cJSyN":
        TokenData("c", "spring", "a1", list="partners"),
    "azEfdR9zcHJpbmcfH3I6cDE.uwfiNfroxOl2Vabs": TokenData("u", "spring", "", pseudonym="p1"),
    "azEfbx9zcHJpbmcfH3I6cDE.42fCw74r7KUb9pDt": TokenData("o", "spring", "", pseudonym="p1"),
}


@pytest.mark.parametrize(("token", "says"), OLD_CODE_TOKENS.items())
def test_tokens_made_by_the_old_code_still_verify(token: str, says: TokenData) -> None:
    assert SIGNER.verify(token) == says


def test_the_legacy_helper_makes_what_the_old_code_made() -> None:
    # tests/helpers.legacy_token stands in for the old code in tests that need other keys.
    assert legacy_token(b"secret", "k1", "c", "spring", "a1", "r:p1") == \
        "azEfYx9zcHJpbmcfYTEfcjpwMQ.RueMNXFzSD_EkIgV"


@pytest.mark.parametrize("token", [
    SIGNER.click("2026-spring", "abcdefgh", pseudonym="Qx3vP0aZlM2kR8tY"),
    SIGNER.click("2026-spring", "abcdefgh", list_key="kscmp"),
    SIGNER.open("2026-spring", pseudonym="Qx3vP0aZlM2kR8tY"),
    SIGNER.unsubscribe("2026-spring", "Qx3vP0aZlM2kR8tY"),
])
def test_nothing_in_a_token_can_be_read(token: str) -> None:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for value in ("Qx3vP0aZlM2kR8tY", "2026-spring", "abcdefgh", "kscmp", "spring"):
        assert value not in token
        assert value.encode() not in raw
    assert "." not in token            # only URL-safe base64 (and never the legacy form)


def test_tokens_round_trip() -> None:
    assert SIGNER.verify(SIGNER.click("s", "a1", pseudonym="p")) == TokenData("c", "s", "a1", "p")
    assert SIGNER.verify(SIGNER.click("s", "a1", list_key="l")) == \
        TokenData("c", "s", "a1", list="l")
    assert SIGNER.verify(SIGNER.open("s")) == TokenData("o", "s", "")
    assert SIGNER.verify(SIGNER.unsubscribe("s", "p"), "u") == TokenData("u", "s", "", "p")


def test_an_individual_click_token_stays_short() -> None:
    pseudonym = SIGNER.pseudonym("2026-spring", "recipient-secret")
    assert len(SIGNER.click("2026-spring", "abcdefgh", pseudonym=pseudonym)) <= 80


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    with pytest.raises(InvalidToken, match="for something else"):
        SIGNER.verify(SIGNER.unsubscribe("s", "p"), "c")


@pytest.mark.parametrize("make", [
    lambda s: s.click("s", "a1")[:-2],                                   # truncated
    lambda s: s.click("s", "a1")[:5] + "A" + s.click("s", "a1")[6:],     # changed
    lambda s: Signer({"k2": b"other"}, "k2").click("s", "a1"),           # another key
    lambda s: legacy_token(b"other", "k1", "c", "s", "a1"),              # old form, other key
    lambda s: "not base64 !",
    lambda s: "QUJD",                                                    # too short
])
def test_a_changed_or_foreign_token_does_not_verify(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidToken):
        SIGNER.verify(make(SIGNER))


def test_rotated_keys_open_tokens_of_every_listed_key() -> None:
    old = Signer({"k1": b"secret"}, "k1")
    rotated = Signer({"k2": b"new secret", "k1": b"secret"}, "k2")
    assert rotated.verify(old.click("s", "a1", pseudonym="p")).pseudonym == "p"
    assert rotated.verify(legacy_token(b"secret", "k1", "c", "s", "a1", "r:p")).pseudonym == "p"
    with pytest.raises(InvalidToken):
        old.verify(rotated.click("s", "a1"))


def test_a_recipient_has_an_unrelated_pseudonym_in_each_issue() -> None:
    spring = SIGNER.pseudonym("2026-spring", "the-recipient's-secret")
    assert spring == SIGNER.pseudonym("2026-spring", "the-recipient's-secret")
    assert spring != SIGNER.pseudonym("2026-summer", "the-recipient's-secret")
    assert spring != SIGNER.pseudonym("2026-spring", "someone-else's-secret")
    assert "secret" not in spring and len(spring) == 16
    # Another key gives other pseudonyms: without the key they cannot be worked out.
    assert spring != Signer({"k1": b"other"}, "k1").pseudonym("2026-spring",
                                                              "the-recipient's-secret")


def test_the_ip_hash_key_did_not_change() -> None:
    # Hashes stored before tokens were encrypted must match the same addresses after.
    assert SIGNER.ip_hash_key() == b"azEfbx8AaXAtaGFzaC1rZXkfHw.ep6JooeIQ9OgnZL1"


def _respell(token: str) -> list[str]:
    """Other spellings of ``token`` a lenient base64 decoder reads as the same bytes."""
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = {2: 0b1111, 3: 0b11}.get(len(token) % 4, 0)   # unused low bits of the last char
    index = alphabet.index(last)
    variants = [token[:-1] + alphabet[(index & ~spare) | bits] for bits in range(spare + 1)]
    return [v for v in variants if v != token]


def test_a_token_has_one_spelling_only() -> None:
    token = SIGNER.click("spring", "a1", pseudonym="p1")
    assert len(token) % 4 in (2, 3)  # so its last character has unused bits
    standard = token.replace("-", "+").replace("_", "/")  # the other base64 alphabet
    variants = [*_respell(token), token[:5] + "." + token[5:], token + "=", token + "==",
                " " + token, token[:3] + "!" + token[4:]]
    if standard != token:
        variants.append(standard)
    for variant in variants:
        with pytest.raises(InvalidToken):
            SIGNER.verify(variant)


@pytest.mark.parametrize("token", OLD_CODE_TOKENS)
def test_a_legacy_token_with_a_dot_in_its_mac_does_not_verify(token: str) -> None:
    body, mac = token.split(".")
    for spelt in (f"{body}.{mac[:3]}.{mac[3:]}", f"{body}.{mac}.", f"{body[:2]}.{body[2:]}.{mac}"):
        with pytest.raises(InvalidToken):
            SIGNER.verify(spelt)
    for variant in _respell(mac):
        with pytest.raises(InvalidToken):
            SIGNER.verify(f"{body}.{variant}")
