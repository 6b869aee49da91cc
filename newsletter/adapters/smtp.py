"""Plain SMTP: the council's relay, Postfix, or any submission server.

Settings come from ``NEWSLETTER_SMTP_URL`` (for TLS also ``NEWSLETTER_SMTP_CA_FILE``, below)::

    smtp://user:password@relay.example.org:587?starttls=true
    smtps://user:password@smtp.example.org            (TLS from the start, port 465)
    smtp://127.0.0.1:2525?timeout=10                  (seconds for every command; default 30)
    smtp://relay.example.org:587?helo=news.example.org (the name we greet the server with)

The greeting (EHLO) names this machine by its fully qualified name; where it has none (a bare
host name, as in many containers) the newsletter's own domain (``list_id_domain``) stands in,
never an address literal such as ``[127.0.0.1]``, which many servers count against a sender.

The server's certificate is checked against the system's trusted authorities or, when
``NEWSLETTER_SMTP_CA_FILE`` is set, only against the CA certificates in that PEM file (a path
relative to the project folder is fine): for a relay whose certificate comes from a private
CA. A certificate that fails the check stops the run.

One connection per worker, reused for every message (``--concurrency N`` opens N). Each
message is its own transaction (MAIL, RCPT, DATA) so one refusal touches one recipient.

What the server says decides the row (RFC 5321): 2xx sent; 4xx and 552 deferred; other 5xx
failed; a connection that drops or stalls before the data is complete is deferred; one that
drops or stalls after the data but before the reply is ``unknown`` (the server may have taken
it), retried later with the same Message-ID.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.adapters.base import (
    Adapter,
    AdapterSettings,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from newsletter.errors import ConfigurationError
from newsletter.message import OutgoingMessage

SETTING = "NEWSLETTER_SMTP_URL"
CA_SETTING = "NEWSLETTER_SMTP_CA_FILE"
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpSettings:
    """A parsed ``NEWSLETTER_SMTP_URL``."""

    host: str
    port: int
    tls: bool
    starttls: bool
    username: str
    password: str
    timeout: float
    helo: str = ""

    def describe(self) -> str:
        scheme = "smtps" if self.tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}" + ("?starttls=true"
                                                            if self.starttls else "")


def parse_smtp_url(url: str, default_timeout: float = 30.0) -> SmtpSettings:
    """Parse the URL, with errors that say what is wrong and where the setting lives."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError(
            f"{SETTING} must look like smtp://user:password@host:port, not {parts.scheme!r}:...",
            hint="schemes: smtp:// (add ?starttls=true to upgrade) or smtps:// (TLS at once)")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout", "helo"}
    if unknown:
        raise ConfigurationError(f"{SETTING} has unknown options: {', '.join(sorted(unknown))}",
                                 hint="the options are starttls=true, timeout=SECONDS and "
                                 "helo=NAME")
    helo = query.get("helo", "").strip().lower()
    if "helo" in query and not _is_host_name(helo):
        raise ConfigurationError(f"{SETTING} ?helo={query['helo']!r} is not a host name",
                                 hint="give this machine's full name as the server knows it, "
                                 "e.g. ?helo=news.example.org")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
        timeout = float(query.get("timeout", default_timeout))
    except ValueError as exc:
        raise ConfigurationError(f"{SETTING} has a bad port or timeout: {exc}") from None
    starttls = query.get("starttls", "").lower() in TRUE
    if starttls and parts.scheme == "smtps":
        raise ConfigurationError(f"{SETTING} asks for TLS twice: smtps:// and ?starttls=true",
                                 hint="use smtps://host (port 465) or "
                                 "smtp://host:587?starttls=true, not both")
    return SmtpSettings(
        host=parts.hostname, port=port, tls=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username or ""), password=unquote(parts.password or ""),
        timeout=timeout, helo=helo)


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _is_host_name(name: str) -> bool:
    """A dotted name of letters, digits and hyphens (RFC 1123), not an address."""
    labels = name.rstrip(".").split(".")
    return (len(labels) >= 2 and all(_HOST_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


def greeting_name(chosen: str = "", fallback: str = "") -> str:
    """The name for EHLO: ``chosen`` (``?helo=``), else this machine's fully qualified name,
    else ``fallback`` (the newsletter's domain), else the bare host name; never an address."""
    if chosen:
        return chosen
    fqdn = socket.getfqdn().lower()
    if _is_host_name(fqdn) and not fqdn.startswith("localhost"):
        return fqdn
    if fallback and _is_host_name(fallback.lower()):
        return fallback.lower()
    return socket.gethostname() or "localhost"


def _login_hint(code: int, reply: str) -> str:
    """What to change when the server refuses our login (530 "STARTTLS first" is not a
    password problem: the connection needs TLS)."""
    if code == 530 and "starttls" in reply.lower():
        return f"the server wants TLS first: add ?starttls=true to {SETTING}"
    return f"check the user and password in {SETTING}"

def _text(reply: bytes | str) -> str:
    """A server's reply as text."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class _Closing(TransientError):
    """421: the server is closing the connection (RFC 5321 3.8); try later, on a new one."""


def _classify(code: int, reply: bytes | str, what: str, recipient: bool = False) -> Exception:
    text = _text(reply)
    message = f"{what}: {code} {text}".strip()
    if code == 421:
        return _Closing(message)
    # RFC 5321 4.5.3.1.10: 552 (storage exceeded) is to be treated as temporary.
    if 400 <= code < 500 or code == 552:
        return TransientError(message)
    if code in (530, 534, 535, 538):
        return ConfigurationError(f"the SMTP server refused our login: {message}",
                                  hint=_login_hint(code, text))
    # A refusal at RCPT TO is about the address: a bounce at send time (bounces.record).
    return PermanentError(message, recipient_problem=recipient)


class SmtpAdapter(Adapter):
    """Sends through an SMTP server, one reused connection per worker."""

    name = "smtp"

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.smtp = parse_smtp_url(settings.require(SETTING, "the SMTP server",
                                                    "smtp://user:password@host:587?starttls=true"),
                                   settings.timeout)
        self.helo = greeting_name(self.smtp.helo, settings.domain)
        self.ca_file = settings.env.get(CA_SETTING, "").strip() or None
        if self.ca_file is not None:
            ca = Path(self.ca_file)
            if not ca.is_absolute():
                ca = settings.root / ca
            self.ca_file = str(ca)
        self._tls_context: ssl.SSLContext | None = None
        self._conn: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        """The TLS context for this adapter's connections (made once, on first use)."""
        if self._tls_context is None:
            try:
                self._tls_context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"{CA_SETTING} cannot be used as trusted certificates: {self.ca_file}: {exc}",
                    hint=f"point {CA_SETTING} at a readable PEM file of CA certificates, "
                    "or unset it to trust the system's authorities") from exc
        return self._tls_context

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> ConfigurationError:
        s = self.smtp
        trusted = f"the CA certificates in {self.ca_file}" if self.ca_file else \
            "the system's trusted authorities"
        return ConfigurationError(
            f"the SMTP server {s.host}:{s.port} sent a TLS certificate we do not trust "
            f"(certificate verify failed: {exc.verify_message or exc})",
            hint=f"it was checked against {trusted}; if the relay uses a private CA, set "
            f"{CA_SETTING} to that CA's certificate (PEM); check the host name in {SETTING} "
            "matches the certificate")

    @classmethod
    def check_settings(cls, settings: AdapterSettings) -> None:
        super().check_settings(settings)
        adapter = cls(settings)
        if adapter.ca_file is not None:
            adapter._context()

    def describe(self) -> str:
        return f"smtp {self.smtp.describe()}"

    def _connect(self) -> smtplib.SMTP:
        s = self.smtp
        context = self._context() if s.tls or s.starttls else None
        try:
            if s.tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                      context=context,
                                                      local_hostname=self.helo)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout,
                                    local_hostname=self.helo)
        except ssl.SSLCertVerificationError as exc:
            raise self._untrusted(exc) from exc
        except smtplib.SMTPConnectError as exc:
            raise TransientError(f"connecting to {s.host}:{s.port}: {exc.smtp_code} "
                                 f"{_text(exc.smtp_error)}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"connecting to {s.host}:{s.port}: {exc}") from exc
        try:
            conn.ehlo()
            if s.starttls:
                conn.starttls(context=context)
                conn.ehlo()
            if s.username:
                conn.login(s.username, s.password)
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise self._untrusted(exc) from exc
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            reply = _text(exc.smtp_error)
            raise ConfigurationError(
                f"the SMTP server refused our login: {exc.smtp_code} {reply}",
                hint=_login_hint(exc.smtp_code, reply)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            conn.close()
            no_auth = "AUTH" in str(exc)
            raise ConfigurationError(
                f"the SMTP server cannot do what {SETTING} asks: {exc}",
                hint=(f"this server takes no login: remove user:password from {SETTING}, "
                      "or use the port that offers one (often 587)" if no_auth
                      else "remove ?starttls=true or use smtps://")) from exc
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise TransientError(f"greeting {s.host}:{s.port}: {exc}") from exc
        return conn

    def verify_login(self) -> str:
        """Connect, greet, start TLS and log in as a send would, then say goodbye: nothing is
        sent. Returns what was checked; raises as a send's first connection would."""
        conn = self._connect()
        try:
            code, _reply = conn.noop()
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        s = self.smtp
        steps = ["answered"] + (["TLS"] if s.tls or s.starttls else []) + (
            [f"accepted the login as {s.username}"] if s.username else ["(no login asked)"])
        return (f"{s.describe()} " + ", ".join(steps) + f"; we greeted it as {self.helo} "
                "(nothing sent)")

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            conn.close()

    def send(self, message: OutgoingMessage) -> str:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            if conn.has_extn("pipelining"):
                self._envelope_pipelined(conn, message)
            else:
                self._envelope(conn, message)
            conn.send(message.smtp_data)
        except (TransientError, PermanentError, ConfigurationError) as exc:
            self._after_refusal(exc)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            # Nothing complete reached the server: it cannot have accepted the message.
            self._drop()
            raise TransientError(f"connection lost before the message was sent: {exc}") from exc
        try:
            code, reply = conn.getreply()
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise OutcomeUnknown(
                f"no answer after the message data ({exc}); it may have been delivered") from exc
        if 200 <= code < 300:
            return reply.decode("utf-8", "replace")
        if not 400 <= code < 600:
            # Not an SMTP reply we can read (smtplib gives -1 for a line without a code): the
            # server may well have taken the message, so it is neither sent nor failed. The
            # conversation is out of step: start the next message on a new connection.
            self._drop()
            text = reply.decode("utf-8", "replace")[:200]
            raise OutcomeUnknown(f"the answer after the message data could not be read "
                                 f"({text!r}); it may have been delivered")
        error = _classify(code, reply, "end of DATA")
        self._after_refusal(error)
        raise error

    @staticmethod
    def _envelope(conn: smtplib.SMTP, message: OutgoingMessage) -> None:
        # Addresses were validated when the lists were loaded; skip smtplib's re-parsing.
        code, reply = conn.docmd("MAIL", f"FROM:<{message.envelope_from}>")
        if code != 250:
            raise _classify(code, reply, "MAIL FROM")
        code, reply = conn.docmd("RCPT", f"TO:<{message.to}>")
        if code not in (250, 251):
            raise _classify(code, reply, f"RCPT TO {message.to}", recipient=True)
        code, reply = conn.docmd("DATA")
        if code != 354:
            raise _classify(code, reply, "DATA")

    @staticmethod
    def _envelope_pipelined(conn: smtplib.SMTP, message: OutgoingMessage) -> None:
        # RFC 2920: one write for MAIL, RCPT and DATA, then their three replies in order.
        conn.send(f"MAIL FROM:<{message.envelope_from}>\r\nRCPT TO:<{message.to}>\r\n"
                  "DATA\r\n".encode("ascii"))
        (mail, mail_reply), (rcpt, rcpt_reply), (data, data_reply) = \
            conn.getreply(), conn.getreply(), conn.getreply()
        refused = mail != 250 or rcpt not in (250, 251)
        if data == 354 and refused:
            # A server that took DATA anyway gets an empty message ended at once.
            conn.send(b".\r\n")
            conn.getreply()
        if mail != 250:
            raise _classify(mail, mail_reply, "MAIL FROM")
        if rcpt not in (250, 251):
            raise _classify(rcpt, rcpt_reply, f"RCPT TO {message.to}", recipient=True)
        if data != 354:
            raise _classify(data, data_reply, "DATA")

    def _after_refusal(self, error: Exception) -> None:
        # 421 means the server is closing the connection; otherwise reset and reuse it.
        if isinstance(error, _Closing):
            self._drop()
            return
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()
