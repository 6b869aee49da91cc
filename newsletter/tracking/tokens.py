"""Opaque tokens for tracked links, open pixels and unsubscribe URLs.

A token says what it is for (click, open, unsubscribe, feedback), the issue, the link's click
ID (or the feedback answer), and *who*: the recipient's pseudonym for this issue (``r:...``,
individual tracking and every unsubscribe token), the list the message went through (``l:...``,
aggregate tracking and every feedback token in an email), the outlet whose copy of the web
version it was in (``o:...``), or nobody. It never names an address or a person, and
nothing in it can be read: the whole payload is encrypted and authenticated with AES-SIV
(RFC 5297), so a link scanner or a forwarded copy sees only random-looking characters, and a
changed or forged token does not verify. AES-SIV is deterministic: the same payload gives
the same token, so a list's token for a link is made once, and nothing per recipient is needed
to keep a token short (no nonce).

The pseudonym is per issue (:meth:`Signer.pseudonym`, a keyed hash of the issue and the
recipient's secret), so two messages of different issues share no per-recipient value; only
the ledger (``deliveries.pseudonym``) turns one back into a recipient.

Tokens made before this format (``payload.mac``: readable base64 signed with a truncated
HMAC-SHA256) still verify, so links in issues already sent keep working.

Keys come from ``NEWSLETTER_SECRET_KEY`` (``kid:secret[,kid:secret...]``, the first makes new
tokens, every one listed still opens old ones) or, when that is unset, from one key created
once and kept in the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

if TYPE_CHECKING:
    from newsletter.db import Database

TokenKind = Literal["c", "o", "u", "f"]
_SEP = "\x1f"
_MAC_BYTES = 12                 # legacy tokens' truncated HMAC
_PSEUDONYM_BYTES = 12           # 96 bits: no two recipients of one issue share one
_TOKEN_CONTEXT = b"newsletter token v2"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, and only the one spelling :func:`_b64` makes.

    Lenient decoding let a token be spelt many ways (characters outside the alphabet, such as
    a dot, were skipped; the unused low bits of the last character were ignored), so one
    token had many URLs that all verified.
    """
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise binascii.Error("not the canonical spelling")
    return data


@dataclass(frozen=True)
class TokenData:
    """What a verified token says."""

    kind: TokenKind
    issue: str
    link: str
    pseudonym: str | None = None
    list: str | None = None
    outlet: str | None = None


class InvalidToken(Exception):
    """A token that is malformed, forged, or made with an unknown key."""


def _derive(secret: bytes, purpose: bytes, size: int = 32) -> bytes:
    """A key for one purpose from a configured secret (the secret itself is used for none)."""
    return hmac.new(secret, purpose, hashlib.sha512).digest()[:size]


class Signer:
    """Makes and opens tokens with a set of keys; the first key makes new ones."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._keys = dict(keys)
        self._current = current
        # 64 bytes: AES-256-SIV. The current key is tried first when opening a token.
        order = [current] + [kid for kid in keys if kid != current]
        self._ciphers = [AESSIV(_derive(keys[kid], b"newsletter token encryption v2", 64))
                         for kid in order]
        self._pseudonym_key = _derive(keys[current], b"newsletter recipient pseudonym v1")

    # -- legacy tokens (before v2): readable payload + truncated HMAC ----------------------
    def _mac(self, kid: str, payload: bytes) -> bytes:
        return hmac.new(self._keys[kid], payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def _verify_legacy(self, token: str) -> tuple[str, str, str, str]:
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
            given = _unb64(mac)
            kid, tkind, issue, link, who = payload.decode("utf-8").split(_SEP)
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise InvalidToken("malformed token") from exc
        if kid not in self._keys or not hmac.compare_digest(given, self._mac(kid, payload)):
            raise InvalidToken("signature does not verify")
        return tkind, issue, link, who

    def ip_hash_key(self) -> bytes:
        """The key for hashing IP addresses, derived from the current key.

        The same bytes as before tokens were encrypted (it was a legacy token of a fixed
        payload), so hashes stored earlier still match the same addresses.
        """
        payload = _SEP.join((self._current, "o", "\x00ip-hash-key", "", "")).encode("utf-8")
        return (_b64(payload) + "." + _b64(self._mac(self._current, payload))).encode()

    # -- tokens ----------------------------------------------------------------------------
    def sign(
        self,
        kind: TokenKind,
        issue: str,
        link: str = "",
        *,
        pseudonym: str | None = None,
        list_key: str | None = None,
        outlet: str | None = None,
    ) -> str:
        """A token for ``kind`` on ``issue``'s ``link``, naming a pseudonym, a list, an outlet
        or nobody."""
        who = (f"r:{pseudonym}" if pseudonym else f"l:{list_key}" if list_key
               else f"o:{outlet}" if outlet else "")
        payload = _SEP.join((kind, issue, link, who)).encode("utf-8")
        return _b64(self._ciphers[0].encrypt(payload, [_TOKEN_CONTEXT]))

    def click(self, issue: str, link: str, *, pseudonym: str | None = None,
              list_key: str | None = None, outlet: str | None = None) -> str:
        """Token for a tracked link (in the web version: naming the outlet)."""
        return self.sign("c", issue, link, pseudonym=pseudonym, list_key=list_key,
                         outlet=outlet)

    def feedback(self, issue: str, answer: str, *, list_key: str | None = None,
                 outlet: str | None = None) -> str:
        """Token for an answer to the feedback question: a list's or an outlet's, never a
        person's."""
        return self.sign("f", issue, answer, list_key=list_key, outlet=outlet)

    def open(self, issue: str, *, pseudonym: str | None = None, list_key: str | None = None) -> str:
        """Token for the open pixel."""
        return self.sign("o", issue, pseudonym=pseudonym, list_key=list_key)

    def unsubscribe(self, issue: str, pseudonym: str) -> str:
        """Token for the unsubscribe URL: always names the recipient by pseudonym."""
        return self.sign("u", issue, pseudonym=pseudonym)

    def verify(self, token: str, kind: TokenKind | None = None) -> TokenData:
        """Open ``token`` and return what it says, or raise :class:`InvalidToken`."""
        if "." in token:               # made before tokens were encrypted
            tkind, issue, link, who = self._verify_legacy(token)
        else:
            tkind, issue, link, who = self._open(token)
        if tkind not in ("c", "o", "u", "f") or (kind and tkind != kind):
            raise InvalidToken("token is for something else")
        pseudonym = who[2:] if who.startswith("r:") else None
        list_key = who[2:] if who.startswith("l:") else None
        return TokenData(cast(TokenKind, tkind), issue, link, pseudonym, list_key,
                         who[2:] if who.startswith("o:") else None)

    def _open(self, token: str) -> tuple[str, str, str, str]:
        try:
            sealed = _unb64(token)
        except (ValueError, binascii.Error) as exc:
            raise InvalidToken("malformed token") from exc
        if len(sealed) <= 16:          # the synthetic IV alone
            raise InvalidToken("malformed token")
        for cipher in self._ciphers:
            try:
                payload = cipher.decrypt(sealed, [_TOKEN_CONTEXT])
            except InvalidTag:
                continue
            try:
                tkind, issue, link, who = payload.decode("utf-8").split(_SEP)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidToken("malformed token") from exc
            return tkind, issue, link, who
        raise InvalidToken("token does not verify")

    # -- pseudonyms ------------------------------------------------------------------------
    def pseudonym(self, issue: str, recipient_secret: str) -> str:
        """The recipient's pseudonym in ``issue``: a keyed hash of the issue and the
        recipient's own random secret, so the same person has an unrelated one in each issue.

        Written into the ledger when the send is planned, so a later change of keys never
        changes a delivery's pseudonym (nor its Message-ID).
        """
        digest = hmac.new(self._pseudonym_key, f"{issue}{_SEP}{recipient_secret}".encode(),
                          hashlib.sha256).digest()
        return _b64(digest[:_PSEUDONYM_BYTES])


def parse_key_setting(value: str) -> tuple[dict[str, bytes], str]:
    """Parse ``NEWSLETTER_SECRET_KEY``: ``kid:secret[,kid:secret...]`` or a bare secret."""
    keys: dict[str, bytes] = {}
    first = ""
    for index, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
        kid, sep, secret = part.partition(":")
        if not sep:
            kid, secret = f"env{index}", part
        keys[kid] = secret.encode("utf-8")
        first = first or kid
    return keys, first


def new_secret() -> str:
    """A fresh random key, for a database that has none yet."""
    return secrets.token_urlsafe(32)


def signer_from_setting(value: str) -> Signer | None:
    """A signer from the ``NEWSLETTER_SECRET_KEY`` setting, or None when it is unset."""
    if not value.strip():
        return None
    keys, current = parse_key_setting(value.strip())
    return Signer(keys, current)


def signer_for(database: Database, secret_key: str = "") -> Signer:
    """The signer every command uses: ``secret_key`` (the ``NEWSLETTER_SECRET_KEY`` setting)
    if set, else the database's key.

    The database key is created once, on first use, so a project works with no setup; set the
    environment variable to share one key between hosts or to rotate keys.
    """
    import sqlalchemy as sa

    from newsletter import db as dbmod

    from_setting = signer_from_setting(secret_key)
    if from_setting is not None:
        return from_setting
    table = dbmod.signing_keys
    query = sa.select(table.c.kid, table.c.secret).order_by(table.c.created_at.desc())
    with database.engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        try:
            with database.engine.begin() as conn:
                conn.execute(table.insert().values(kid="k1", secret=new_secret(),
                                                   created_at=dbmod.now()))
        except sa.exc.IntegrityError:
            pass  # another process created the first key at the same moment: use theirs
        with database.engine.connect() as conn:
            rows = conn.execute(query).all()
    keys = {kid: secret.encode("utf-8") for kid, secret in rows}
    return Signer(keys, rows[0][0])
