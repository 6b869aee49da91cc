"""`newsletter send`: plan, confirmation, ledger, resume, test copies, and every user error."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import SEND_ADDRESSES

from newsletter import db
from newsletter.cli import main
from newsletter.db import open_db


def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["send", "2026-spring", *args], input=input)


def maildir_messages(root: Path) -> list[email.message.EmailMessage]:
    folder = root / "maildir" / "new"
    if not folder.is_dir():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in sorted(folder.iterdir())]


def ledger_rows(root: Path) -> list:  # type: ignore[type-arg]
    database = open_db("sqlite:///" + str(root / "newsletter.db"))
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(db.recipients.c.address, db.deliveries)
                                .join(db.recipients,
                                      db.recipients.c.id == db.deliveries.c.recipient_id)).all()
    finally:
        database.close()


def test_sends_to_the_union_once_each_and_resumes(send_project: Path) -> None:
    result = invoke("--to", "schools", "--to", "councils", "--yes")
    assert result.exit_code == 0, result.output
    assert "Adapter:  maildir " in result.output
    assert "  schools                           3  Schools" in result.output
    assert "Recipients: 5 (on more than one list: 1; suppressed: 0)" in result.output
    assert "Subject:  Prevent in Kent and Medway: Spring 2026 partner update" in result.output
    assert "sent 5, deferred 0, failed 0, unknown 0, pending 0" in result.output
    messages = maildir_messages(send_project)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(SEND_ADDRESSES)
    rows = ledger_rows(send_project)
    assert {r.status for r in rows} == {"sent"}
    assert {r.message_id for r in rows} == {m["Message-ID"] for m in messages}
    # Running again sends nobody a second copy.
    again = invoke("--to", "schools", "--to", "councils", "--yes")
    assert again.exit_code == 0
    assert "Already in the ledger: sent 5 (this send resumes; nobody gets a second copy)" \
        in again.output
    assert "Nothing left to send" in again.output
    assert "this run sent 0" in again.output
    assert len(maildir_messages(send_project)) == 5


def test_asks_before_sending(send_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("newsletter.cli.send._can_ask", lambda: True)
    result = invoke("--to", "schools", input="n\n")
    assert "Send 2026-spring to 3 recipient(s)? [y/N]" in result.output
    assert result.exit_code == 1
    assert maildir_messages(send_project) == []
    result = invoke("--to", "schools", input="y\n")
    assert result.exit_code == 0
    assert len(maildir_messages(send_project)) == 3


def test_no_terminal_and_no_yes_refuses(send_project: Path) -> None:
    result = invoke("--to", "schools")
    assert result.exit_code == 1
    assert "not sending without confirmation\n    hint: add --yes" in result.output
    assert maildir_messages(send_project) == []


def test_dry_run_sends_and_records_nothing(send_project: Path) -> None:
    result = invoke("--to", "schools", "--to", "councils", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run: 5 message(s) made and checked; nothing sent or recorded." in result.output
    assert maildir_messages(send_project) == []
    assert ledger_rows(send_project) == []


def test_test_copy_goes_to_one_address_and_records_nothing(send_project: Path) -> None:
    result = invoke("--test", "Editor@Example.org")
    assert result.exit_code == 0, result.output
    assert "Sent a test copy to Editor@Example.org via maildir" in result.output
    (message,) = maildir_messages(send_project)
    assert message["To"].addresses[0].addr_spec == "editor@example.org"
    assert message["Subject"].startswith("[TEST] ")
    assert message["X-Newsletter-Test"] == "yes"
    assert ledger_rows(send_project) == []


def test_test_copy_through_smtp(send_project: Path, smtp_server,  # type: ignore[no-untyped-def]
                                monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    result = invoke("--test", "editor@example.org", "--adapter", "smtp", "--allow-local-tracking")
    assert result.exit_code == 0, result.output
    assert "Sent a test copy to editor@example.org via smtp smtp://127.0.0.1:" in result.output
    assert "(2.0.0 queued as 1)" in result.output
    (raw,) = recorder.messages
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "editor@example.org"
    assert message["X-Newsletter-Test"] == "yes"
    assert ledger_rows(send_project) == []


def test_test_copy_refused_says_why(send_project: Path, smtp_server,  # type: ignore[no-untyped-def]
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, url = smtp_server()
    recorder.faults["editor@example.org"] = ["451 4.7.1 greylisted"]
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    result = invoke("--test", "editor@example.org", "--adapter", "smtp", "--allow-local-tracking")
    assert result.exit_code == 1
    assert "the test message to editor@example.org was not sent (deferred): RCPT TO " \
        "editor@example.org: 451 4.7.1 greylisted" in result.output
    assert recorder.attempts["editor@example.org"] == 1     # tried once, not retried
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("--test", "not an address"), "--test 'not an address' is not a valid email address"),
    (("--to", "nope", "--yes"), "there is no list called 'nope' in audiences.yaml\n"
                                "    hint: the lists are: councils, schools"),
    (("--to", "schools", "--adapter", "pigeon"), "there is no mail adapter called 'pigeon'"),
    (("--to", "schools", "--adapter", "smtp"),
     "the SMTP server is not set: set the environment variable NEWSLETTER_SMTP_URL"),
    (("--test", "a@b.example", "--dry-run"), "--test cannot be used with --dry-run"),
    ((), "choose at least one list with --to LIST"),
])
def test_user_errors(send_project: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output
    assert maildir_messages(send_project) == []


def test_unknown_issue(send_project: Path) -> None:
    result = CliRunner().invoke(main, ["send", "2031-winter", "--to", "schools"])
    assert result.exit_code == 1
    assert "no issue '2031-winter': neither a file nor issues/2031-winter.yaml" in result.output
    assert "hint: the issues are: 2026-spring" in result.output


def test_bad_audiences_stop_everything_before_the_ledger(send_project: Path) -> None:
    with (send_project / "audiences" / "councils.csv").open("a") as handle:
        handle.write('"eve@council.example",Eve,"Line\nbreak"\n')
    path = send_project / "audiences.yaml"
    path.write_text(path.read_text().replace("  councils:\n",
                                             "      - {email: bad@@x}\n  councils:\n"))
    result = invoke("--to", "schools", "--yes")
    assert result.exit_code == 1
    assert "audiences.yaml:8:17: error: 'bad@@x' is not a valid email address" in result.output
    assert "audiences/councils.csv:5:3: error: organisation contains control characters " \
           "('\\n')" in result.output
    assert not (send_project / "newsletter.db").exists()
    assert maildir_messages(send_project) == []


def test_suppressed_addresses_are_left_out(send_project: Path) -> None:
    database = open_db("sqlite:///" + str(send_project / "newsletter.db"))
    with database.engine.begin() as conn:
        conn.execute(db.suppressions.insert().values(address="bob@school.example",
                                                     reason="unsubscribed", created_at=0))
    database.close()
    result = invoke("--to", "schools", "--yes")
    assert result.exit_code == 0, result.output
    assert "Recipients: 2 (on more than one list: 0; suppressed: 1 (unsubscribed 1))" \
        in result.output
    assert "bob@school.example" not in {m["To"].addresses[0].addr_spec
                                         for m in maildir_messages(send_project)}


def test_smtp_failures_exit_1_and_resend_failed_retries(send_project: Path, smtp_server,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, url = smtp_server()
    # A permanent refusal that is not about the address (5.7.26: the message's
    # authentication): failed, not suppressed (test_bounces_at_send.py has the 5.1.1 case).
    recorder.faults["bob@school.example"] = ["550 5.7.26 unauthenticated mail is prohibited"]
    recorder.faults["cat@council.example"] = ["451 4.7.1 greylisted"]
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    args = ("--to", "schools", "--to", "councils", "--adapter", "smtp", "--yes",
            "--allow-local-tracking",
            "--retry-delay", "0", "--concurrency", "2")
    result = invoke(*args)
    assert result.exit_code == 1
    assert "sent 4, deferred 0, failed 1" in result.output
    assert "failed   bob@school.example: RCPT TO bob@school.example: 550 5.7.26 " \
           "unauthenticated mail is prohibited" in result.output
    assert "hint: run the same command again" in result.output
    assert "add --resend-failed" in result.output
    assert recorder.attempts["cat@council.example"] == 2          # 451, then accepted
    assert len(recorder.messages) == 4
    again = invoke(*args)
    assert again.exit_code == 1 and len(recorder.messages) == 4   # failed ones wait
    final = invoke(*args, "--resend-failed")
    assert final.exit_code == 0, final.output
    assert sorted(recorder.message_ids()) == sorted(r.message_id
                                                    for r in ledger_rows(send_project))


def test_plain_progress_lines_without_a_terminal(send_project: Path) -> None:
    result = invoke("--to", "schools", "--to", "councils", "--yes")
    assert "Sending 5 message(s)..." in result.output
    assert "  5/5: sent 5  deferred 0  failed 0  unknown 0" in result.output


def test_commands_have_help_with_an_example() -> None:
    runner = CliRunner()
    for command in (["send"], ["audiences"], ["audiences", "check"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output


def test_docs_describe_every_send_option_and_adapter() -> None:
    from newsletter.adapters.base import builtin_names
    from newsletter.cli.send import send

    docs = (Path(__file__).resolve().parent.parent / "docs" / "sending.md").read_text()
    for option in send.params:
        for name in option.opts:
            if name.startswith("--"):
                assert name in docs, f"{name} is not in docs/sending.md"
    for adapter in builtin_names():
        assert f"`{adapter}`" in docs


def test_send_and_resume_on_sqlite_and_postgresql(send_project: Path, storage_url: str) -> None:
    args = ("--to", "schools", "--to", "councils", "--yes", "--db", storage_url)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    again = invoke(*args)
    assert again.exit_code == 0 and "Nothing left to send" in again.output
    messages = maildir_messages(send_project)
    assert len(messages) == 5
    database = open_db(storage_url)
    try:
        with database.engine.connect() as conn:
            ids = {r[0] for r in conn.execute(sa.select(db.deliveries.c.message_id)
                                              .where(db.deliveries.c.status == "sent"))}
            lists = conn.execute(sa.select(sa.func.count())
                                 .select_from(db.delivery_lists)).scalar()
    finally:
        database.close()
    assert ids == {m["Message-ID"] for m in messages}
    assert lists == 6                      # shared@council.example was reached through both


def test_database_that_cannot_be_opened(send_project: Path) -> None:
    result = invoke("--to", "schools", "--yes", "--db", str(send_project / "no" / "such" / "x.db"))
    assert result.exit_code == 1
    assert "cannot open database" in result.output and "unable to open database file" \
        in result.output
    assert "hint: check the path or server is reachable (--db or NEWSLETTER_DB)" in result.output


def test_database_of_an_unsupported_kind(send_project: Path) -> None:
    result = invoke("--to", "schools", "--yes", "--db", "mysql://user@db.example.org/news")
    assert result.exit_code == 1
    assert "cannot use database 'mysql://user@db.example.org/news': only SQLite and " \
        "PostgreSQL are supported" in result.output
    assert "Traceback" not in result.output


def test_maildir_that_cannot_be_created(send_project: Path) -> None:
    (send_project / "a-file").write_text("not a folder")
    result = invoke("--to", "schools", "--yes", "--maildir", "a-file/mail")
    assert result.exit_code == 1
    assert "cannot create the maildir a-file/mail: Not a directory" in result.output
    assert "hint: choose another folder with --maildir or NEWSLETTER_MAILDIR" in result.output
    assert {row.status for row in ledger_rows(send_project)} == {"pending"}
