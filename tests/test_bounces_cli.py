"""`newsletter bounces fetch` as a person runs it, on a Maildir and on a real Dovecot."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import CORPUS_BOUNCE_ADDRESS, ImapServer, corpus_with_tags, seed_corpus_sends

from newsletter import suppressions
from newsletter.bounces.verp import codec_for
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.tracking.tokens import signer_for


@pytest.fixture
def bounce_project(project: Path) -> Iterator[Path]:
    """The sample project with bounce_address set and the corpus's recipients sent an issue."""
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + f"bounce_address: {CORPUS_BOUNCE_ADDRESS}\n")
    database = open_db("sqlite:///" + str(project / "newsletter.db"))
    try:
        seed_corpus_sends(database)
        codec = codec_for(signer_for(database))
    finally:
        database.close()
    box = mailbox.Maildir(project / "bounces", create=True)
    for raw in corpus_with_tags(codec):
        box.add(raw)
    yield project


def fetch(*args: str, env: dict | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["bounces", "fetch", *args], env=env)


def test_fetch_from_a_maildir_records_and_reports(bounce_project: Path) -> None:
    result = fetch("--maildir", "bounces")
    assert result.exit_code == 0, result.output
    assert ("hard bounce        safeguarding-lead@school1.example.org (2026-spring): delivery "
            "status notification (RFC 3464); found by VERP tag -> suppressed (bounced-hard)"
            ) in result.output
    assert ("hard bounce        adult-safeguarding@care1.example.org (2026-spring): "
            "non-standard bounce (flufl.bounce); found by VERP tag -> suppressed (bounced-hard)"
            ) in result.output
    assert ("soft bounce        dsl@academy2.example.org (2026-spring): delivery status "
            "notification (RFC 3464); found by VERP tag; 1 of 3 in a row") in result.output
    assert "ignored           : auto-reply: automatic reply (Auto-Submitted: auto-generated)" \
        in result.output
    assert result.output.splitlines()[-1] == (
        "Maildir bounces: 12 message(s): 1 complaint, 5 hard bounce, 5 ignored, 1 soft bounce; "
        "6 address(es) suppressed.")
    again = fetch("--maildir", "bounces")
    assert again.output.splitlines()[-1] == (
        "Maildir bounces: 12 message(s): 12 already processed; 0 address(es) suppressed.")


def test_a_dry_run_changes_nothing(bounce_project: Path) -> None:
    result = fetch("--maildir", "bounces", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "-> would be suppressed (bounced-hard)" in result.output
    assert result.output.splitlines()[-1].endswith(
        "6 address(es) would be suppressed. Dry run: nothing was recorded or marked.")
    database = open_db("sqlite:///" + str(bounce_project / "newsletter.db"))
    try:
        assert suppressions.all_suppressions(database) == []
    finally:
        database.close()


def test_without_a_mailbox_it_says_how_to_give_one(project: Path) -> None:
    result = fetch(env={"NEWSLETTER_BOUNCE_IMAP_URL": ""})
    assert result.exit_code == 1
    assert result.output == (
        "no bounce mailbox to read: give --maildir PATH or --mbox PATH, or set "
        "NEWSLETTER_BOUNCE_IMAP_URL\n    hint: e.g. `export NEWSLETTER_BOUNCE_IMAP_URL=imaps://"
        "bounces@imap.example.org/INBOX` and NEWSLETTER_BOUNCE_IMAP_PASSWORD\n")


def test_a_missing_maildir_says_so(project: Path) -> None:
    result = fetch("--maildir", "nowhere")
    assert result.exit_code == 1
    assert result.output.startswith("--maildir nowhere: not a Maildir (it needs the folders "
                                    "cur/ and new/)\n")


def test_fetch_from_imap_then_again_changes_nothing(bounce_project: Path,
                                                    imap: ImapServer) -> None:
    folder = imap.new_folder("cli")
    for key in sorted(mailbox.Maildir(bounce_project / "bounces").keys()):
        imap.append(mailbox.Maildir(bounce_project / "bounces").get_bytes(key), folder)
    env = {"NEWSLETTER_BOUNCE_IMAP_URL": imap.url(folder),
           "NEWSLETTER_BOUNCE_IMAP_PASSWORD": imap.password,
           "NEWSLETTER_BOUNCE_IMAP_CA_FILE": imap.ca_file}
    result = fetch(env=env)
    assert result.exit_code == 0, result.output
    assert "12 message(s): 1 complaint, 5 hard bounce, 5 ignored, 1 soft bounce; 6 address(es)" \
        in result.output
    assert fetch(env=env).output.splitlines()[-1].endswith(
        "0 message(s); 0 address(es) suppressed.")


def test_a_refused_imap_login_names_the_settings_to_check(project: Path,
                                                         imap: ImapServer) -> None:
    result = fetch(env={"NEWSLETTER_BOUNCE_IMAP_URL": imap.url(),
                        "NEWSLETTER_BOUNCE_IMAP_PASSWORD": "wrong",
                        "NEWSLETTER_BOUNCE_IMAP_CA_FILE": imap.ca_file})
    assert result.exit_code == 1
    assert result.output.startswith("the bounce mailbox at 127.0.0.1 refused the login for "
                                    "bounces: ")
    assert result.output.endswith("    hint: check NEWSLETTER_BOUNCE_IMAP_PASSWORD and the user "
                                  "name in NEWSLETTER_BOUNCE_IMAP_URL\n")
