"""Read the bounce mailbox: an IMAP folder over TLS, a local Maildir, or an mbox file.

Each reader yields every message not yet marked done as raw bytes, and marks one done when
asked. What was processed is recorded in the database by the message's Message-ID (see
``bounces.fetch``), which is what makes a second run change nothing; on IMAP the message is
also given the keyword ``$NewsletterProcessed`` so the next run does not even download it.
Local Maildir and mbox files are only ever read, never changed.

IMAP settings::

    NEWSLETTER_BOUNCE_IMAP_URL       imaps://USER@HOST[:993][/FOLDER]   (TLS from the start)
                                     imap://USER@HOST[:143][/FOLDER]    (STARTTLS, required)
    NEWSLETTER_BOUNCE_IMAP_PASSWORD  the password (never in the URL)
    NEWSLETTER_BOUNCE_IMAP_CA_FILE   PEM file of CA certificates to trust instead of the
                                     system's (a private CA)

The folder defaults to INBOX. A plain-text IMAP connection is never made.
"""

from __future__ import annotations

import imaplib
import mailbox as stdlib_mailbox
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from newsletter.errors import ConfigurationError, NewsletterError

URL_SETTING = "NEWSLETTER_BOUNCE_IMAP_URL"
PASSWORD_SETTING = "NEWSLETTER_BOUNCE_IMAP_PASSWORD"
CA_SETTING = "NEWSLETTER_BOUNCE_IMAP_CA_FILE"
DONE_KEYWORD = "$NewsletterProcessed"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Fetched:
    """One message from the mailbox: where it is there, and its bytes."""

    key: str
    raw: bytes


class Mailbox:
    """What every reader offers."""

    def describe(self) -> str:
        """Where the messages come from, for the summary (never a password)."""
        raise NotImplementedError

    def messages(self) -> Iterator[Fetched]:
        """Every message not yet marked done, oldest first."""
        raise NotImplementedError

    def mark_done(self, key: str) -> None:
        """Remember on the server that ``key`` was processed (a no-op for local files)."""

    def close(self) -> None:
        """Release the connection or file."""

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- local files ---------------------------------------------------------------------------------


class MaildirMailbox(Mailbox):
    """A Maildir folder (``cur/``, ``new/``, ``tmp/``) that a local relay delivers into."""

    def __init__(self, path: Path) -> None:
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise NewsletterError(
                f"--maildir {path}: not a Maildir (it needs the folders cur/ and new/)",
                hint="give the folder the mail server delivers bounces into, e.g. "
                "--maildir /var/mail/bounces/Maildir")
        self.path = path
        self._box = stdlib_mailbox.Maildir(str(path), factory=None, create=False)

    def describe(self) -> str:
        return f"Maildir {self.path}"

    def messages(self) -> Iterator[Fetched]:
        for key in sorted(self._box.keys(), key=_delivery_order):
            try:
                raw = self._box.get_bytes(key)
            except (OSError, KeyError):
                continue        # removed by someone else meanwhile
            yield Fetched(key, raw)


def _delivery_order(key: str) -> tuple[int, int, str]:
    """Oldest first: a Maildir name starts with the delivery time in seconds, and most
    servers add ``M`` and the microseconds (not zero-padded, so compared as numbers)."""
    seconds = re.match(r"(\d+)", key)
    micro = re.search(r"\.M(\d+)", key)
    return (int(seconds.group(1)) if seconds else 0, int(micro.group(1)) if micro else 0, key)


class MboxMailbox(Mailbox):
    """An mbox file (one file, messages separated by ``From `` lines)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise NewsletterError(f"--mbox {path}: no such file",
                                  hint="give the mbox file the mail server delivers bounces "
                                  "into, e.g. --mbox /var/mail/bounces")
        self.path = path
        self._box = stdlib_mailbox.mbox(str(path), factory=None, create=False)

    def describe(self) -> str:
        return f"mbox {self.path}"

    def messages(self) -> Iterator[Fetched]:
        self._box.lock()
        try:
            for key in self._box.iterkeys():
                yield Fetched(str(key), self._box.get_bytes(key))
        finally:
            self._box.unlock()

    def close(self) -> None:
        self._box.close()


# --- IMAP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapSettings:
    """A parsed ``NEWSLETTER_BOUNCE_IMAP_URL``."""

    host: str
    port: int
    implicit_tls: bool
    username: str
    folder: str

    @classmethod
    def parse(cls, url: str) -> ImapSettings:
        """Read the URL, or say what is wrong with it."""
        hint = (f"set {URL_SETTING} to imaps://USER@HOST/FOLDER, e.g. "
                "imaps://bounces%40news.example.org@imap.example.org/INBOX; "
                f"the password goes in {PASSWORD_SETTING}")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"{URL_SETTING} is not a valid URL: {exc}",
                                     hint=hint) from exc
        if parts.scheme not in ("imaps", "imap"):
            raise ConfigurationError(
                f"{URL_SETTING} must start with imaps:// (or imap:// for STARTTLS), "
                f"not {parts.scheme or '(nothing)'}://", hint=hint)
        if not parts.hostname:
            raise ConfigurationError(f"{URL_SETTING} has no server name", hint=hint)
        if parts.password is not None:
            raise ConfigurationError(
                f"{URL_SETTING} contains a password; keep it out of the URL",
                hint=f"put the password in {PASSWORD_SETTING} and use imaps://USER@HOST/FOLDER")
        if not parts.username:
            raise ConfigurationError(f"{URL_SETTING} has no user name", hint=hint)
        implicit = parts.scheme == "imaps"
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        return cls(parts.hostname, port or (993 if implicit else 143), implicit,
                   unquote(parts.username), folder)

    @property
    def where(self) -> str:
        scheme = "imaps" if self.implicit_tls else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.folder}"


class ImapMailbox(Mailbox):
    """One folder of an IMAP server, over TLS; read-only when ``read_only`` (a dry run)."""

    def __init__(self, url: str, password: str, *, ca_file: str | None = None,
                 read_only: bool = False, timeout: float = TIMEOUT) -> None:
        self.settings = ImapSettings.parse(url)
        if not password:
            raise ConfigurationError(
                f"the bounce mailbox password is not set: set the environment variable "
                f"{PASSWORD_SETTING}",
                hint=f"e.g. `export {PASSWORD_SETTING}=...` in the shell or the service's "
                "environment; it is never read from newsletter.yaml")
        self.read_only = read_only
        self._keywords = False
        self._conn = self._connect(password, ca_file, timeout)

    def describe(self) -> str:
        return self.settings.where

    def _context(self, ca_file: str | None) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{CA_SETTING} cannot be used as trusted certificates: {ca_file}: {exc}",
                hint=f"point {CA_SETTING} at a readable PEM file of CA certificates, or unset "
                "it to trust the system's authorities") from exc

    def _connect(self, password: str, ca_file: str | None,
                 timeout: float) -> imaplib.IMAP4:
        s = self.settings
        context = self._context(ca_file)
        try:
            if s.implicit_tls:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=context,
                                                        timeout=timeout)
            else:
                conn = imaplib.IMAP4(s.host, s.port, timeout=timeout)
                if "STARTTLS" not in conn.capabilities:
                    conn.shutdown()
                    raise ConfigurationError(
                        f"the bounce mailbox at {s.host}:{s.port} does not offer STARTTLS, "
                        "and the password is never sent in clear",
                        hint=f"use imaps:// (port 993) in {URL_SETTING}")
                conn.starttls(ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            trusted = f"the CA certificates in {ca_file}" if ca_file else \
                "the system's trusted authorities"
            raise ConfigurationError(
                f"the bounce mailbox at {s.host}:{s.port} has a certificate not signed by "
                f"{trusted}: {exc.verify_message}",
                hint=f"check the server name in {URL_SETTING}; for a private CA set "
                f"{CA_SETTING} to its PEM file") from exc
        except (ssl.SSLError, imaplib.IMAP4.error) as exc:
            raise ConfigurationError(
                f"cannot start TLS with the bounce mailbox at {s.host}:{s.port}: {exc}",
                hint=f"check the port in {URL_SETTING}: imaps:// is TLS from the start "
                "(usually port 993), imap:// uses STARTTLS (port 143)") from exc
        except OSError as exc:      # refused, unreachable, timed out
            raise ConfigurationError(
                f"cannot reach the bounce mailbox at {s.host}:{s.port}: "
                f"{exc.strerror or exc}",
                hint=f"check the server name and port in {URL_SETTING}") from exc
        try:
            conn.login(s.username, password)
        except imaplib.IMAP4.error as exc:
            _close_quietly(conn)
            raise ConfigurationError(
                f"the bounce mailbox at {s.host} refused the login for {s.username}: "
                f"{_text(exc)}",
                hint=f"check {PASSWORD_SETTING} and the user name in {URL_SETTING}") from exc
        try:
            status, data = conn.select(_quote(s.folder), readonly=self.read_only)
        except imaplib.IMAP4.error as exc:
            status, data = "NO", [str(exc).encode()]
        if status != "OK":
            _close_quietly(conn)
            raise ConfigurationError(
                f"the bounce mailbox has no folder {s.folder!r}: "
                f"{_text(data[0] if data else '')}",
                hint=f"the folder is the path at the end of {URL_SETTING} (default INBOX)")
        flags = b" ".join(f for f in conn.untagged_responses.get("PERMANENTFLAGS", [])
                          if isinstance(f, bytes))
        self._keywords = b"\\*" in flags and not self.read_only
        return conn

    def messages(self) -> Iterator[Fetched]:
        criteria = ["UNKEYWORD", DONE_KEYWORD] if self._keywords else ["ALL"]
        status, data = self._conn.uid("SEARCH", *criteria)
        if status != "OK":
            raise NewsletterError(f"the bounce mailbox refused to list its messages: "
                                  f"{_text(data[0] if data else '')}")
        uids = [u for u in (data[0] or b"").split() if u]
        for uid in uids:
            status, parts = self._conn.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
            raw = next((p[1] for p in parts or [] if isinstance(p, tuple)), None)
            if status != "OK" or raw is None:
                continue        # expunged meanwhile
            yield Fetched(uid.decode("ascii"), raw)

    def mark_done(self, key: str) -> None:
        if self._keywords:
            self._conn.uid("STORE", key, "+FLAGS", f"({DONE_KEYWORD})")

    def close(self) -> None:
        _close_quietly(self._conn)


def _close_quietly(conn: imaplib.IMAP4) -> None:
    try:
        if conn.state == "SELECTED":
            conn.close()
        conn.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    found = re.match(r"^b?['\"](.*)['\"]$", text)
    return found.group(1) if found else text


def open_mailbox(*, maildir: Path | None = None, mbox: Path | None = None,
                 imap_url: str = "", imap_password: str = "", ca_file: str | None = None,
                 read_only: bool = False) -> Mailbox:
    """The mailbox to read: ``--maildir``, ``--mbox``, or the IMAP URL setting."""
    if maildir is not None and mbox is not None:
        raise NewsletterError("--maildir cannot be used with --mbox: choose one mailbox")
    if maildir is not None:
        return MaildirMailbox(maildir)
    if mbox is not None:
        return MboxMailbox(mbox)
    if not imap_url:
        raise ConfigurationError(
            "no bounce mailbox to read: give --maildir PATH or --mbox PATH, or set "
            f"{URL_SETTING}",
            hint=f"e.g. `export {URL_SETTING}=imaps://bounces@imap.example.org/INBOX` and "
            f"{PASSWORD_SETTING}")
    return ImapMailbox(imap_url, imap_password, ca_file=ca_file, read_only=read_only)
