"""`newsletter doctor` against real parts: an SMTP server, the tracker, a DNS server, all on
127.0.0.1. First everything is ready; then each check fails once, on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import DnsStub, free_port

from newsletter import db
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.tracking.server import create_app

DNS_READY = {"example.org": ["v=spf1 ip4:192.0.2.10 -all"],
             "_dmarc.example.org": ["v=DMARC1; p=quarantine"]}


@pytest.fixture
def ready(send_project: Path, smtp_server, http_server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A project whose every check passes: a tracker on its database, a mail server with a
    login, published images. Returns (project, the tracker's app, the SMTP recorder)."""
    recorder, url = smtp_server(auth=("newsletter", "s3cret"))
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url.replace("smtp://", "smtp://newsletter:s3cret@"))
    app = create_app("sqlite:///" + str(send_project / "newsletter.db"))
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", http_server(app))
    assert CliRunner().invoke(main, ["publish", "2026-spring"]).exit_code == 0
    yield send_project, app, recorder
    app.close()


def doctor(*args: str, records: dict[str, list[str]] | None = None,
           local: bool = True):  # type: ignore[no-untyped-def]
    with DnsStub(DNS_READY if records is None else records) as dns:
        options = ["--adapter", "smtp", "--nameserver", dns.address, "--timeout", "2"]
        if local:
            options.append("--allow-local-tracking")
        return CliRunner().invoke(main, ["doctor", "2026-spring", *options, *args])


def lines(result, status: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for line in result.output.splitlines() if line.startswith(status)]


def test_everything_ready(ready) -> None:  # type: ignore[no-untyped-def]
    _project, _app, recorder = ready
    result = doctor()
    assert result.exit_code == 0, result.output
    assert lines(result, "problem") == []
    ok = "\n".join(lines(result, "ok"))
    assert "newsletter.yaml read" in ok
    assert "issues/2026-spring.yaml builds" in ok
    assert "the tracker answers at http://127.0.0.1:" in ok
    assert "the tracker reads this database and verifies this project's signatures" in ok
    assert "all 2 image(s) answer at http://127.0.0.1:" in ok
    assert "accepted the login as newsletter; we greeted it as " in ok
    assert "SPF for example.org: v=spf1 ip4:192.0.2.10 -all" in ok
    assert "DMARC for example.org: v=DMARC1; p=quarantine" in ok
    assert "unsubscribe by mail: newsletter-unsubscribe@example.org" in ok
    assert "Ready for a real send" in result.output
    assert recorder.messages == []                    # nothing was sent


def test_a_missing_settings_file(ready) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    (project / "newsletter.yaml").unlink()
    result = doctor()
    assert result.exit_code == 1
    assert "problem  settings" in result.output
    assert f"no newsletter.yaml in {project}: every setting is a default" in result.output
    assert "what to do: create newsletter.yaml with tracking_url, list_id and " \
           "unsubscribe_mailto" in result.output


def test_an_issue_with_errors(ready, sample_issue: Path, sample_yaml: str) -> None:  # type: ignore[no-untyped-def]
    sample_issue.write_text(sample_yaml.replace("subject:", "subjekt:"))
    result = doctor()
    assert result.exit_code == 1
    assert "issues/2026-spring.yaml has 2 error(s)" in result.output \
        or "issues/2026-spring.yaml has 1 error(s)" in result.output
    assert "what to do: run `newsletter check issues/2026-spring.yaml` and fix them" \
        in result.output


def test_a_local_http_tracking_url_blocks_a_real_send(ready) -> None:  # type: ignore[no-untyped-def]
    result = doctor(local=False)
    assert result.exit_code == 1
    assert "it is not https, which RFC 8058 one-click unsubscribe requires" in result.output
    assert "is this machine (a loopback address)" in result.output
    assert "1 problem(s) block a real send" in result.output


def test_no_tracker_at_the_tracking_url(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", f"http://127.0.0.1:{free_port()}")
    result = doctor()
    assert result.exit_code == 1
    assert "no answer from http://127.0.0.1:" in result.output
    assert "/healthz: connection refused" in result.output
    assert "skipped  tracker database" in result.output


def test_a_tracker_on_another_database(ready, http_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       monkeypatch) -> None:
    other = create_app("sqlite:///" + str(tmp_path / "other.db"),
                       secret_key="k1:" + "same-key-on-both" * 2)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "k1:" + "same-key-on-both" * 2)
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", http_server(other))
    try:
        result = doctor()
    finally:
        other.close()
    assert result.exit_code == 1
    assert "the tracker reads another database than sqlite:///" in result.output
    assert "start the tracker with the same --db / NEWSLETTER_DB as send" in result.output


def test_a_tracker_with_another_signing_key(ready, http_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    other = create_app("sqlite:///" + str(project / "newsletter.db"),
                       secret_key="k9:" + "another-key" * 4)
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", http_server(other))
    try:
        result = doctor()
    finally:
        other.close()
    assert result.exit_code == 1
    assert "the tracker signs with another key than this project" in result.output


def test_the_challenge_is_removed_afterwards(ready) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    assert doctor().exit_code == 0
    database = open_db("sqlite:///" + str(project / "newsletter.db"))
    try:
        with database.engine.connect() as conn:
            keys = conn.execute(sa.select(db.meta.c.key)).scalars().all()
    finally:
        database.close()
    assert not [k for k in keys if k.startswith("doctor-challenge:")]


def test_images_missing_from_the_cdn(ready, http_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    project, _app, _recorder = ready
    (tmp_path / "cdn").mkdir()
    cdn = http_server(Starlette(routes=[Mount("/news", StaticFiles(directory=tmp_path / "cdn"))]))
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + f"assets_url: {cdn}/news/\n")
    result = doctor()
    assert result.exit_code == 1
    assert "2 image(s) do not load where the email says:" in result.output
    assert "404 text/plain" in result.output
    assert "what to do: upload the files `newsletter publish 2026-spring` lists to" \
        in result.output


def test_a_refused_smtp_login(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    url = os.environ["NEWSLETTER_SMTP_URL"].replace("s3cret", "wrong")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    result = doctor()
    assert result.exit_code == 1
    assert "problem  mail server" in result.output
    assert "the SMTP server refused our login: 535" in result.output
    assert "check the user and password in NEWSLETTER_SMTP_URL" in result.output


def test_no_mail_server_listening(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{free_port()}?timeout=1")
    result = doctor()
    assert result.exit_code == 1
    assert "problem  mail server" in result.output
    assert "connecting to 127.0.0.1:" in result.output


def test_no_spf_record(ready) -> None:  # type: ignore[no-untyped-def]
    result = doctor(records={"example.org": [], "_dmarc.example.org": ["v=DMARC1; p=none"]})
    assert result.exit_code == 1
    assert "example.org has no SPF record" in result.output
    assert "DMARC for example.org: v=DMARC1; p=none" in result.output


def test_no_dmarc_record(ready) -> None:  # type: ignore[no-untyped-def]
    result = doctor(records={"example.org": ["v=spf1 -all"]})
    assert result.exit_code == 1
    assert "example.org has no DMARC record" in result.output
    assert "publish a TXT record at _dmarc.example.org" in result.output


def test_without_dns_the_domain_checks_are_skipped_with_a_note(ready) -> None:  # type: ignore[no-untyped-def]
    with DnsStub({}) as unused:
        closed = unused.address
    result = CliRunner().invoke(main, ["doctor", "2026-spring", "--adapter", "smtp",
                                       "--allow-local-tracking", "--nameserver", closed,
                                       "--timeout", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped  sender domain" in result.output
    assert "SPF and DMARC of example.org not checked (no network here?)" in result.output


def test_the_default_unsubscribe_address(ready) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    settings = project / "newsletter.yaml"
    settings.write_text("\n".join(line for line in settings.read_text().splitlines()
                                  if not line.startswith("unsubscribe_mailto")) + "\n")
    result = doctor()
    assert result.exit_code == 1
    assert "unsubscribe_mailto is not set" in result.output


def test_the_default_list_id(ready) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    settings = project / "newsletter.yaml"
    settings.write_text("\n".join(line for line in settings.read_text().splitlines()
                                  if not line.startswith(("list_id", "list_id_domain"))) + "\n")
    result = doctor()
    assert result.exit_code == 1
    assert "the List-Id is the default <newsletter.example.org>, not yours" in result.output


def test_the_smtp_greeting_is_a_name_not_an_address(ready) -> None:  # type: ignore[no-untyped-def]
    _project, _app, recorder = ready
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--adapter",
                                       "smtp", "--yes", "--allow-local-tracking"])
    assert result.exit_code == 0, result.output
    assert recorder.greetings and all(not name.startswith("[") and "." in name
                                      for name in recorder.greetings)


def test_helo_chooses_the_greeting(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    _project, _app, recorder = ready
    monkeypatch.setenv("NEWSLETTER_SMTP_URL",
                       os.environ["NEWSLETTER_SMTP_URL"] + "&helo=news.example.org")
    result = doctor()
    assert result.exit_code == 0, result.output
    assert "we greeted it as news.example.org" in result.output
    assert recorder.greetings == ["news.example.org"]


def test_a_helo_that_is_not_a_name(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    monkeypatch.setenv("NEWSLETTER_SMTP_URL",
                       os.environ["NEWSLETTER_SMTP_URL"] + "&helo=[127.0.0.1]")
    result = doctor()
    assert result.exit_code == 1
    assert "NEWSLETTER_SMTP_URL ?helo='[127.0.0.1]' is not a host name" in result.output


# SPF is checked on the bounce address's domain when there is one
DNS_WITH_BOUNCES = {**DNS_READY, "news.example.org": ["v=spf1 ip4:192.0.2.10 -all"]}


def with_bounce_address(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "bounce_address: bounces@news.example.org\n")


def test_no_bounce_address_is_a_warning_that_says_what_is_lost(ready) -> None:  # type: ignore[no-untyped-def]
    result = doctor()
    assert result.exit_code == 0, result.output
    [warning] = [line for line in lines(result, "warning") if "bounce address" in line]
    assert ("no bounce_address: bounces and out-of-office replies go to the sender's own "
            "inbox") in warning
    assert "set bounce_address in newsletter.yaml" in result.output


def test_a_bounce_address_without_a_mailbox_to_read(ready) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    with_bounce_address(project)
    result = doctor(records=DNS_WITH_BOUNCES)
    assert result.exit_code == 0, result.output
    assert "bounces go to bounces@news.example.org" in result.output
    assert "no bounce mailbox to read" in result.output


def test_the_bounce_mailbox_accepts_the_login(ready, imap, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    with_bounce_address(project)
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_URL", imap.url())
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_PASSWORD", imap.password)
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_CA_FILE", imap.ca_file)
    result = doctor(records=DNS_WITH_BOUNCES)
    assert result.exit_code == 0, result.output
    assert f"the bounce mailbox {imap.url()} accepts the login" in result.output


def test_a_bounce_mailbox_refusing_the_login_is_a_warning(ready, imap, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project, _app, _recorder = ready
    with_bounce_address(project)
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_URL", imap.url())
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_PASSWORD", "wrong")
    monkeypatch.setenv("NEWSLETTER_BOUNCE_IMAP_CA_FILE", imap.ca_file)
    result = doctor(records=DNS_WITH_BOUNCES)
    assert result.exit_code == 0, result.output      # bounces are read after a send
    assert "refused the login for bounces" in result.output
    assert "check NEWSLETTER_BOUNCE_IMAP_PASSWORD" in result.output


def test_the_maildir_adapter_is_a_warning_that_nothing_is_sent(ready) -> None:  # type: ignore[no-untyped-def]
    result = doctor("--adapter", "maildir")
    warning = "\n".join(lines(result, "warning"))
    assert ("the adapter is maildir: messages are written to a folder on this machine, not "
            "sent to anyone") in warning
    assert "--adapter smtp (or mailgun, postmark, sendgrid), or NEWSLETTER_ADAPTER" in result.output
