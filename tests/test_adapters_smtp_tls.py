"""The smtp adapter over TLS (smtps:// and ?starttls=true) against a real aiosmtpd server.

A throwaway CA and server certificate for 127.0.0.1 are made per test with ``trustme``; the
adapter trusts that CA through ``NEWSLETTER_SMTP_CA_FILE`` or the standard ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path

import pytest
import trustme
from helpers import Driven, SmtpRecorder, free_port, make_built

from newsletter.adapters.base import AdapterSettings
from newsletter.adapters.smtp import SmtpAdapter
from newsletter.errors import ConfigurationError
from newsletter.message import MessageFactory, Recipient
from newsletter.project import Project
from newsletter.settings import Settings
from newsletter.tracking.tokens import Signer

USER, PASSWORD = "news", "s3cret"


@dataclass
class TlsServer:
    recorder: SmtpRecorder
    port: int
    logins: list[tuple[str, str | None]] = field(default_factory=list)  # (user, TLS version)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator:  # type: ignore[type-arg]
    """``start(mode, ca=None) -> TlsServer``: aiosmtpd on 127.0.0.1 with TLS and AUTH.

    ``mode`` is ``"implicit"`` (TLS from the first byte, as smtps://) or ``"starttls"``
    (plain until STARTTLS, which is required before anything else). The certificate is
    issued for 127.0.0.1 by ``ca`` (default: the test's CA).
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    started: list[Controller] = []

    def start(mode: str, issuer: trustme.CA | None = None) -> TlsServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (issuer or ca).issue_cert("127.0.0.1").configure_cert(context)
        server = TlsServer(SmtpRecorder(), free_port())

        def authenticator(smtp, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
            ssl_object = smtp.transport.get_extra_info("ssl_object")
            ok = isinstance(data, LoginPassword) and \
                (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
            server.logins.append((data.login.decode(),
                                  ssl_object.version() if ssl_object is not None else None))
            return AuthResult(success=ok, handled=False)

        options: dict[str, object] = {"authenticator": authenticator}
        if mode == "implicit":
            # The whole connection is TLS; aiosmtpd's own TLS check only knows STARTTLS.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        controller = Controller(server.recorder, hostname="127.0.0.1", port=server.port,
                                **options)
        controller.start()
        started.append(controller)
        return server

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def factory(tmp_path: Path) -> MessageFactory:
    project = Project(root=tmp_path, settings=Settings(root=tmp_path, env={},
                                                      list_id_domain="news.example.org"))
    return MessageFactory(make_built(), project, Signer({"k1": b"secret"}, "k1"))


def message(factory: MessageFactory, address: str, n: int = 1):  # type: ignore[no-untyped-def]
    return factory.make(Recipient(address, "Ann Lee", f"p{n}", f"<spring.p{n}@news.example.org>",
                                  "schools", n))


def url_for(mode: str, port: int, password: str = PASSWORD) -> str:
    if mode == "implicit":
        return f"smtps://{USER}:{password}@127.0.0.1:{port}?timeout=5"
    return f"smtp://{USER}:{password}@127.0.0.1:{port}?starttls=true&timeout=5"


def adapter(url: str, ca_file: str | None = None, root: Path = Path(".")) -> Driven:
    env = {"NEWSLETTER_SMTP_URL": url}
    if ca_file is not None:
        env["NEWSLETTER_SMTP_CA_FILE"] = ca_file
    return Driven(SmtpAdapter(AdapterSettings(root=root, env=env)))


MODES = pytest.mark.parametrize("mode", ["implicit", "starttls"])


@MODES
@pytest.mark.parametrize("trust", ["NEWSLETTER_SMTP_CA_FILE", "SSL_CERT_FILE"])
def test_sends_over_tls_with_login(tls_server, factory, ca_file: str, mode: str, trust: str,  # type: ignore[no-untyped-def]
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = tls_server(mode)
    if trust == "SSL_CERT_FILE":
        # The standard OpenSSL variable, read by ssl.create_default_context().
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        a = adapter(url_for(mode, server.port))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        a = adapter(url_for(mode, server.port), ca_file=ca_file)
    try:
        first = a.attempt(message(factory, "ann@example.org", 1))
        second = a.attempt(message(factory, "bob@example.org", 2))    # same TLS connection
        conn = a._conn
        assert conn is not None and isinstance(conn.sock, ssl.SSLSocket)
    finally:
        a.close()
    assert (first.status, second.status) == ("sent", "sent"), (first.error, second.error)
    # One login, made once TLS was up (aiosmtpd saw an SSL transport at AUTH).
    assert len(server.logins) == 1
    user, tls_version = server.logins[0]
    assert user == USER
    assert tls_version is not None and tls_version.startswith("TLSv1.")
    assert len(server.recorder.messages) == 2
    parsed = email.message_from_bytes(server.recorder.messages[0], policy=policy.default)
    assert parsed["Message-ID"] == "<spring.p1@news.example.org>"
    assert parsed["To"].addresses[0].addr_spec == "ann@example.org"


def test_starttls_server_refuses_mail_without_tls(tls_server, factory) -> None:  # type: ignore[no-untyped-def]
    """The STARTTLS server really requires it: a plain smtp:// client gets nowhere."""
    server = tls_server("starttls")
    a = adapter(f"smtp://127.0.0.1:{server.port}?timeout=5")
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
    finally:
        a.close()
    assert outcome is None        # 530 stops the run; nobody is marked failed
    reason = a.control.stop_reason
    assert reason is not None and "530" in reason.message and "STARTTLS" in reason.message
    assert reason.hint == "the server wants TLS first: add ?starttls=true to NEWSLETTER_SMTP_URL"
    assert server.recorder.messages == [] and server.logins == []


@MODES
def test_untrusted_certificate_stops_the_run(tls_server, factory, ca_file: str,  # type: ignore[no-untyped-def]
                                             mode: str) -> None:
    server = tls_server(mode, issuer=trustme.CA())   # signed by a CA nobody trusts
    a = adapter(url_for(mode, server.port), ca_file=ca_file)
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
        assert a._conn is None
    finally:
        a.close()
    assert outcome is None, outcome.error     # nobody is marked failed...
    reason = a.control.stop_reason                         # ...and the run stops
    assert isinstance(reason, ConfigurationError)
    assert reason.message.startswith(f"the SMTP server 127.0.0.1:{server.port} sent a TLS "
                                     "certificate we do not trust (certificate verify failed")
    assert ca_file in reason.hint and "NEWSLETTER_SMTP_CA_FILE" in reason.hint
    assert server.logins == [] and server.recorder.messages == []   # no password sent


def test_untrusted_by_the_system_names_the_setting(tls_server, factory,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    server = tls_server("implicit")
    a = adapter(url_for("implicit", server.port))
    try:
        outcome = a.attempt(message(factory, "ann@example.org"))
    finally:
        a.close()
    assert outcome is None
    reason = a.control.stop_reason
    assert reason is not None and "certificate verify failed" in reason.message
    assert "the system's trusted authorities" in reason.hint
    assert "set NEWSLETTER_SMTP_CA_FILE" in reason.hint


def test_send_command_stops_on_an_untrusted_certificate(send_project: Path, tls_server,  # type: ignore[no-untyped-def]
                                                        ca_file: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: exit code 1, the reason printed, every row still pending (none failed)."""
    from click.testing import CliRunner
    from test_send import ledger_rows

    from newsletter.cli import main

    server = tls_server("starttls", issuer=trustme.CA())
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url_for("starttls", server.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_CA_FILE", ca_file)
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--to",
                                       "councils", "--adapter", "smtp", "--yes",
                                       "--allow-local-tracking"])
    assert result.exit_code == 1, result.output
    assert "certificate we do not trust (certificate verify failed" in result.output
    assert "this run sent 0" in result.output
    rows = ledger_rows(send_project)
    assert len(rows) == 5
    assert {r.status for r in rows} == {"pending"}
    assert server.recorder.messages == [] and server.logins == []


def test_relative_ca_file_is_under_the_project(tmp_path: Path, ca: trustme.CA) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
    a = adapter("smtps://127.0.0.1:465", ca_file="relay-ca.pem", root=tmp_path)
    assert a.ca_file == str(tmp_path / "relay-ca.pem")
    SmtpAdapter.check_settings(a.settings)     # loads it


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_bad_ca_file_is_a_configuration_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    settings = AdapterSettings(root=tmp_path, env={"NEWSLETTER_SMTP_URL": "smtps://127.0.0.1",
                                                   "NEWSLETTER_SMTP_CA_FILE": str(path)})
    with pytest.raises(ConfigurationError, match="NEWSLETTER_SMTP_CA_FILE cannot be used") as info:
        SmtpAdapter.check_settings(settings)
    assert "PEM file" in (info.value.hint or "")
