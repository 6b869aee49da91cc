"""VERP: a per-recipient envelope sender, so that a bounce says whom it is about.

With ``bounce_address: bounces@news.example.org`` each message goes out with the envelope
sender (and so the Return-Path) ``bounces+TAG@news.example.org``. Every bounce, however late
and in whatever format, comes back to that address, and the tag names the issue and the
recipient without reading the bounce's body.

The tag is 39 characters of lowercase base32 (local parts may be case-folded on the way back):

* 16 bytes: AES-128 of (8 bytes naming the issue, 8 bytes the recipient's row id). One block
  of a block cipher under one key, so two tags look unrelated, even for the same person in two
  issues; no address and no pseudonym is in it.
* 8 bytes: HMAC-SHA256 of those 16 bytes, truncated: a tag cannot be forged or altered.

Both keys are derived from the project's signing keys (``NEWSLETTER_SECRET_KEY`` or the
database's), so rotating those keys rotates these too; tags made with any listed key still read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher

    from newsletter.tracking.tokens import Signer

TAG_LENGTH = 39
_CONTEXT = b"newsletter VERP tag v1"
_MAC_BYTES = 8
# RFC 5321 4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64


class InvalidTag(Exception):
    """A tag that is malformed, forged, or made with a key no longer listed."""


@dataclass(frozen=True)
class Tagged:
    """What a verified tag says."""

    issue: str
    recipient_id: int


class VerpCodec:
    """Makes and reads tags with a set of signing keys; the first one makes new tags."""

    def __init__(self, keys: Mapping[str, bytes] | Iterable[bytes]) -> None:
        secrets = list(keys.values()) if isinstance(keys, Mapping) else list(keys)
        if not secrets:
            raise ValueError("a VERP codec needs at least one key")
        self._keys = [_derive(secret) for secret in secrets]
        # One message, one tag: made once per codec, the cipher and the issue's digest cost
        # nothing per message (the send loop's threads share them under a lock).
        self._lock = threading.Lock()
        self._encryptor = _aes(self._keys[0][0]).encryptor()
        self._digests: dict[str, bytes] = {}
        self._mac = hmac.new(self._keys[0][1], digestmod=hashlib.sha256)

    def tag(self, issue: str, recipient_id: int) -> str:
        """The tag for ``recipient_id``'s message of ``issue``."""
        _, mac = self._keys[0]
        digest = self._digests.get(issue)
        if digest is None:
            digest = self._digests[issue] = _issue_digest(mac, issue)
        block = digest + int(recipient_id).to_bytes(8, "big")
        with self._lock:
            sealed = self._encryptor.update(block)
        signature = self._mac.copy()
        signature.update(sealed)
        data = sealed + signature.digest()[:_MAC_BYTES]
        return base64.b32encode(data).decode("ascii").rstrip("=").lower()

    def read(self, tag: str, issues: Iterable[str]) -> Tagged:
        """Verify ``tag`` and say which of ``issues`` and which recipient it names."""
        text = tag.strip().upper()
        if len(text) != TAG_LENGTH:
            raise InvalidTag("not a tag of ours (wrong length)")
        try:
            data = base64.b32decode(text + "=" * (-len(text) % 8))
        except ValueError as exc:
            raise InvalidTag("not a tag of ours (not base32)") from exc
        sealed, given = data[:16], data[16:]
        for enc, mac in self._keys:
            if not hmac.compare_digest(given,
                                       hmac.new(mac, sealed, hashlib.sha256).digest()[:_MAC_BYTES]):
                continue
            block = _aes(enc).decryptor().update(sealed)
            digest, recipient_id = block[:8], int.from_bytes(block[8:], "big")
            for issue in issues:
                if hmac.compare_digest(digest, _issue_digest(mac, issue)):
                    return Tagged(issue, recipient_id)
            raise InvalidTag("the tag's issue is not in this database")
        raise InvalidTag("signature does not verify")


def verp_address(bounce_address: str, tag: str) -> str:
    """``bounces@news.example.org`` + tag -> ``bounces+TAG@news.example.org``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def tag_in(address: str, bounce_address: str) -> str | None:
    """The tag in ``address`` if it is ``bounce_address`` with a tag, else None."""
    local, _, domain = bounce_address.lower().rpartition("@")
    their_local, _, their_domain = address.strip().lower().rpartition("@")
    prefix = local + "+"
    if their_domain != domain or not their_local.startswith(prefix):
        return None
    return their_local[len(prefix):] or None


def check_bounce_address(bounce_address: str) -> str:
    """An error message if ``bounce_address`` cannot carry a tag, else ``""``."""
    from email_validator import EmailNotValidError, validate_email

    try:   # syntax only (no DNS), as the sender's and members' addresses are checked
        validate_email(bounce_address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return f"{bounce_address!r} is not an email address"
    local = bounce_address.rpartition("@")[0]
    if "+" in local:
        return f"{bounce_address!r} already has a '+' in it; the tag goes after a '+'"
    if len(local) + 1 + TAG_LENGTH > MAX_LOCAL_PART:
        return (f"the part before '@' in {bounce_address!r} is too long to add a "
                f"{TAG_LENGTH}-character tag (at most {MAX_LOCAL_PART - 1 - TAG_LENGTH} "
                "characters)")
    return ""


def _derive(secret: bytes) -> tuple[bytes, bytes]:
    key = hmac.new(secret, _CONTEXT, hashlib.sha256).digest()
    return key[:16], key[16:]


def _issue_digest(mac_key: bytes, issue: str) -> bytes:
    return hmac.new(mac_key, b"issue\x1f" + issue.encode("utf-8"), hashlib.sha256).digest()[:8]


def _aes(key: bytes) -> Cipher:
    # Imported here: settings checks bounce_address through this module on every command,
    # and only a send needs the cipher.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    # One 16-byte block, one key, and no two blocks alike (the issue digest and id differ):
    # ECB on a single block is the plain block cipher, a pseudorandom permutation.
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def codec_for(signer: Signer) -> VerpCodec:
    """The codec for a project: its key is derived from the signer's current key, the way the
    tracker derives its IP-hash key, so it needs no setting of its own."""
    return VerpCodec([signer.sign("o", "\x00verp-key").encode("utf-8")])
