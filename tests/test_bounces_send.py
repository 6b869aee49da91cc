"""The bounce address at send time: a VERP envelope sender per recipient, read back from a
real SMTP server's envelope; and what send says without one."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import BOUNCE_CORPUS, EnvelopeRecorder, envelope_smtp

from newsletter.bounces.verp import codec_for, tag_in
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.tracking.tokens import signer_for

BOUNCES = "bounces@news.example.org"


@pytest.fixture
def smtp(send_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EnvelopeRecorder]:
    with envelope_smtp() as (recorder, url):
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
        yield recorder


def with_bounce_address(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + f"bounce_address: {BOUNCES}\n")


def send(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["send", "2026-spring", "--adapter", "smtp", "--yes",
                                     "--allow-local-tracking", *args])


def test_each_recipient_gets_its_own_verp_envelope_sender(send_project: Path,
                                                          smtp: EnvelopeRecorder) -> None:
    with_bounce_address(send_project)
    result = send("--to", "schools")
    assert result.exit_code == 0, result.output
    assert "bounce_address is not set" not in result.output
    database = open_db("sqlite:///" + str(send_project / "newsletter.db"))
    try:
        codec = codec_for(signer_for(database))
        from newsletter.bounces.record import by_recipient_id

        with database.engine.connect() as conn:
            for mail_from, rcpt, _ in smtp.accepted:
                tag = tag_in(mail_from, BOUNCES)
                assert tag is not None, mail_from
                tagged = codec.read(tag, ["2026-spring"])
                assert by_recipient_id(conn, tagged.recipient_id) == rcpt.lower()
    finally:
        database.close()
    senders = {mail_from for mail_from, _, _ in smtp.accepted}
    assert len(senders) == len(smtp.accepted) == 3
    assert not any("school" in s for s in senders)   # no address in the tag


def test_a_late_bounce_to_the_verp_address_suppresses_for_the_next_send(
        send_project: Path, smtp: EnvelopeRecorder) -> None:
    with_bounce_address(send_project)
    assert send("--to", "schools").exit_code == 0
    [(mail_from, rcpt, _)] = [a for a in smtp.accepted if a[1] == "bob@school.example"]
    # bob's server accepted the message, then bounced it: a Postfix DSN to the VERP address,
    # which names no recipient we know (the mailbox was an alias) and quotes no Message-ID.
    raw = (BOUNCE_CORPUS / "postfix-user-unknown.eml").read_text()
    old = "bounces+gtnsmewdlll6nmpj6rtqysxywcplzqkbegvyney@prevent-newsletter.example.org"
    raw = raw.replace(old, mail_from).replace("safeguarding-lead@school1.example.org",
                                              "alias-target@school.example")
    raw = raw.replace("<2026-spring.p0001@prevent-newsletter.example.org>", "<x@y>")
    box = mailbox.Maildir(send_project / "bounces", create=True)
    box.add(raw.encode())
    fetched = CliRunner().invoke(main, ["bounces", "fetch", "--maildir", "bounces"])
    assert "hard bounce        bob@school.example (2026-spring)" in fetched.output
    plan = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--adapter",
                                     "smtp", "--allow-local-tracking"], input="n\n")
    assert "suppressed: 1" in plan.output


def test_without_a_bounce_address_send_says_what_is_lost(send_project: Path,
                                                         smtp: EnvelopeRecorder) -> None:
    result = send("--to", "schools")
    assert result.exit_code == 0, result.output
    assert ("warning: bounce_address is not set: bounces and out-of-office replies go to "
            in result.output)
    assert ("hint: set bounce_address in newsletter.yaml to a mailbox of its own (e.g. "
            "bounces@news.example.org) and run `newsletter bounces fetch` after each send"
            in result.output)
    sender = {mail_from for mail_from, _, _ in smtp.accepted}
    assert len(sender) == 1 and "+" not in sender.pop()


def test_the_maildir_adapter_does_not_warn(send_project: Path) -> None:
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--yes"])
    assert "bounce_address" not in result.output
