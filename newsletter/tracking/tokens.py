"""Signed, opaque tokens for tracked links, open pixels and unsubscribe URLs.

A token names what it is for (click, open, unsubscribe), the issue, the link's click ID, and
*who*: a recipient pseudonym (``r:...``, individual tracking and every unsubscribe token), the
list the message went through (``l:...``, aggregate tracking), or nobody. It never names an
address or a person. Tokens are signed with HMAC-SHA256; the key id inside lets keys rotate:
old tokens verify while their key is still listed.

Keys come from ``NEWSLETTER_SECRET_KEY`` (``kid:secret[,kid:secret...]``, the first signs) or,
when that is unset, from one key created once and kept in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from newsletter.db import Database

TokenKind = Literal["c", "o", "u"]
_SEP = "\x1f"
_MAC_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenData:
    """What a verified token says."""

    kind: TokenKind
    issue: str
    link: str
    pseudonym: str | None = None
    list: str | None = None


class InvalidToken(Exception):
    """A token that is malformed, forged, or signed with an unknown key."""


class Signer:
    """Makes and verifies tokens with a set of keys; the first key signs."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._keys = dict(keys)
        self._current = current

    def _mac(self, kid: str, payload: bytes) -> bytes:
        return hmac.new(self._keys[kid], payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(
        self,
        kind: TokenKind,
        issue: str,
        link: str = "",
        *,
        pseudonym: str | None = None,
        list_key: str | None = None,
    ) -> str:
        """A token for ``kind`` on ``issue``'s ``link``, naming a pseudonym, a list or neither."""
        who = f"r:{pseudonym}" if pseudonym else (f"l:{list_key}" if list_key else "")
        payload = _SEP.join((self._current, kind, issue, link, who)).encode("utf-8")
        return _b64(payload) + "." + _b64(self._mac(self._current, payload))

    def click(self, issue: str, link: str, *, pseudonym: str | None = None,
              list_key: str | None = None) -> str:
        """Token for a tracked link."""
        return self.sign("c", issue, link, pseudonym=pseudonym, list_key=list_key)

    def open(self, issue: str, *, pseudonym: str | None = None, list_key: str | None = None) -> str:
        """Token for the open pixel."""
        return self.sign("o", issue, pseudonym=pseudonym, list_key=list_key)

    def unsubscribe(self, issue: str, pseudonym: str) -> str:
        """Token for the unsubscribe URL: always names the recipient by pseudonym."""
        return self.sign("u", issue, pseudonym=pseudonym)

    def verify(self, token: str, kind: TokenKind | None = None) -> TokenData:
        """Check the signature and return what the token says, or raise :class:`InvalidToken`."""
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
            given = _unb64(mac)
            kid, tkind, issue, link, who = payload.decode("utf-8").split(_SEP)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidToken("malformed token") from exc
        if kid not in self._keys or not hmac.compare_digest(given, self._mac(kid, payload)):
            raise InvalidToken("signature does not verify")
        if tkind not in ("c", "o", "u") or (kind and tkind != kind):
            raise InvalidToken("token is for something else")
        pseudonym = who[2:] if who.startswith("r:") else None
        list_key = who[2:] if who.startswith("l:") else None
        return TokenData(tkind, issue, link, pseudonym, list_key)  # type: ignore[arg-type]


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
