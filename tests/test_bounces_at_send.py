"""Bounces at send time: a real SMTP server refuses a recipient with 550 5.1.1; the ledger
records it, the address is suppressed at once, and the next send's plan leaves it out."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import envelope_smtp

from newsletter import suppressions
from newsletter.cli import main
from newsletter.db import open_db

BOB = "bob@school.example"


def send(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--adapter",
                                     "smtp", "--retry-delay", "0", "--allow-local-tracking",
                                     *args], input=input)


def suppression(project: Path):  # type: ignore[no-untyped-def]
    database = open_db("sqlite:///" + str(project / "newsletter.db"))
    try:
        return suppressions.get(database, BOB)
    finally:
        database.close()


def test_550_5_1_1_at_rcpt_suppresses_at_once(send_project: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with envelope_smtp() as (recorder, url):
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
        recorder.refuse[BOB] = "550 5.1.1 <bob@school.example>: Recipient address rejected: " \
                               "User unknown in virtual mailbox table"
        result = send("--yes")
        assert result.exit_code == 0, result.output      # nothing is left to send
        assert "suppressed 1" in result.output
        assert ("Suppressed 1 address(es) the server refused for good (no later issue goes to "
                "them; see `newsletter suppressions list`):\n  bounced-hard bob@school.example: "
                "5.1.1 RCPT TO bob@school.example: 550 5.1.1") in result.output
        found = suppression(send_project)
        assert (found.reason, found.source, found.issue) == ("bounced-hard", "send",
                                                             "2026-spring")
        assert found.detail == ("5.1.1 RCPT TO bob@school.example: 550 5.1.1 "
                                "<bob@school.example>: Recipient address rejected: User unknown "
                                "in virtual mailbox table")
        plan = send(input="n\n")
        assert "Recipients: 2 (on more than one list: 0; suppressed: 1 (bounced-hard 1))" \
            in plan.output
        listed = CliRunner().invoke(main, ["suppressions", "list", "--format", "csv"])
        assert f"{BOB},bounced-hard,send," in listed.output
        # The next send resumes and does not try the suppressed address again.
        again = send("--yes", "--resend-failed")
        assert again.exit_code == 0, again.output
        assert [rcpt for _, rcpt, _ in recorder.accepted].count(BOB) == 0


def test_a_temporary_refusal_stays_deferred(send_project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with envelope_smtp() as (recorder, url):
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
        recorder.refuse[BOB] = "450 4.2.1 mailbox busy, try later"
        result = send("--yes", "--pause-after", "1")
        assert "deferred 1" in result.output
        assert suppression(send_project) is None


def test_a_soft_permanent_refusal_counts_but_does_not_suppress(
        send_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with envelope_smtp() as (recorder, url):
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
        recorder.refuse[BOB] = "550 5.7.26 unauthenticated mail is prohibited"
        result = send("--yes")
        assert result.exit_code == 1
        assert suppression(send_project) is None
        database = open_db("sqlite:///" + str(send_project / "newsletter.db"))
        try:
            import sqlalchemy as sa

            from newsletter import db

            with database.engine.connect() as conn:
                rows = conn.execute(sa.select(db.delivery_events.c.type,
                                              db.delivery_events.c.source)).all()
        finally:
            database.close()
        assert [tuple(r) for r in rows] == [("bounced-soft", "send")]
