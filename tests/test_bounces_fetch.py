"""Reading the bounce mailbox into events and suppressions: Maildir, mbox and a real Dovecot."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import (
    BOUNCE_CORPUS,
    CORPUS_BOUNCE_ADDRESS,
    CORPUS_KEY,
    CORPUS_RECIPIENTS,
    ImapServer,
    seed_corpus_sends,
)

from newsletter import db, suppressions
from newsletter.bounces.fetch import fetch
from newsletter.bounces.mailbox import DONE_KEYWORD, ImapMailbox, open_mailbox
from newsletter.bounces.verp import VerpCodec
from newsletter.db import Database, open_db

CODEC = VerpCodec([CORPUS_KEY])
CORPUS = sorted(BOUNCE_CORPUS.glob("*.eml"))
HARD = {1: "5.1.1", 3: "5.1.10", 4: "5.1.1", 5: "5.1.1", 6: "5.2.1"}


@pytest.fixture
def database(storage_url: str) -> Iterator[Database]:
    database = open_db(storage_url)
    seed_corpus_sends(database)
    yield database
    database.close()


def maildir_of(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    return path


def run(database: Database, box, dry_run: bool = False):  # type: ignore[no-untyped-def]
    with box:
        return fetch(database, box, codec=CODEC, bounce_address=CORPUS_BOUNCE_ADDRESS,
                     soft_bounce_limit=3, dry_run=dry_run)


def state(database: Database) -> tuple:
    with database.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (db.delivery_events, db.suppressions, db.mailbox_messages,
                               db.suppression_log))


def assert_corpus_recorded(database: Database) -> None:
    found = {s.address: s for s in suppressions.all_suppressions(database)}
    expected = {CORPUS_RECIPIENTS[rid]: "bounced-hard" for rid in HARD}
    expected[CORPUS_RECIPIENTS[7]] = "complained"
    assert {a: s.reason for a, s in found.items()} == expected
    first = found[CORPUS_RECIPIENTS[1]]
    assert (first.source, first.issue) == ("mailbox", "2026-spring")
    assert first.detail == ("5.1.1 550 5.1.1 <safeguarding-lead@school1.example.org>: Recipient "
                            "address rejected: User unknown in virtual mailbox table")
    for rid, status in HARD.items():
        assert found[CORPUS_RECIPIENTS[rid]].detail.startswith(status)
    with database.engine.connect() as conn:
        soft = conn.execute(sa.select(db.delivery_events.c.address, db.delivery_events.c.status)
                            .where(db.delivery_events.c.type == "bounced-soft")).all()
    assert [tuple(row) for row in soft] == [(CORPUS_RECIPIENTS[2], "5.2.2")]


def test_a_maildir_of_the_corpus_is_recorded(database: Database, tmp_path: Path) -> None:
    report = run(database, open_mailbox(maildir=maildir_of(
        tmp_path / "Maildir", [p.read_bytes() for p in CORPUS])))
    assert report.counts == {"hard bounce": 5, "soft bounce": 1, "complaint": 1, "ignored": 5}
    assert_corpus_recorded(database)


def test_processing_a_mailbox_twice_changes_nothing(database: Database, tmp_path: Path) -> None:
    path = maildir_of(tmp_path / "Maildir", [p.read_bytes() for p in CORPUS])
    run(database, open_mailbox(maildir=path))
    before = state(database)
    report = run(database, open_mailbox(maildir=path))
    assert report.counts == {"already processed": len(CORPUS)}
    assert state(database) == before


def test_an_mbox_of_the_corpus_is_recorded(database: Database, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "bounces", create=True)
    for path in CORPUS:
        box.add(path.read_bytes())
    box.close()
    run(database, open_mailbox(mbox=tmp_path / "bounces"))
    assert_corpus_recorded(database)
    before = state(database)
    run(database, open_mailbox(mbox=tmp_path / "bounces"))
    assert state(database) == before


def test_an_imap_mailbox_of_the_corpus_is_recorded_and_flagged(
        database: Database, imap: ImapServer, request: pytest.FixtureRequest) -> None:
    folder = imap.new_folder("f" + str(abs(hash(request.node.nodeid)) % 10**9))
    for path in CORPUS:
        imap.append(path.read_bytes(), folder)
    run(database, ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file))
    assert_corpus_recorded(database)
    assert all(DONE_KEYWORD.encode() in flags for flags in imap.keywords(folder))
    before = state(database)
    report = run(database, ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file))
    assert report.lines == []
    assert state(database) == before


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
        database: Database, imap: ImapServer, request: pytest.FixtureRequest) -> None:
    folder = imap.new_folder("d" + str(abs(hash(request.node.nodeid)) % 10**9))
    for path in CORPUS:
        imap.append(path.read_bytes(), folder)
    before = state(database)
    report = run(database, ImapMailbox(imap.url(folder), imap.password, ca_file=imap.ca_file,
                                       read_only=True), dry_run=True)
    assert report.counts == {"hard bounce": 5, "soft bounce": 1, "complaint": 1, "ignored": 5}
    assert sum(1 for line in report.lines if line.suppressed) == 6
    assert state(database) == before
    assert not any(DONE_KEYWORD.encode() in flags for flags in imap.keywords(folder))


def test_a_bounce_that_names_nobody_of_ours_changes_nothing(database: Database,
                                                           tmp_path: Path) -> None:
    raw = (BOUNCE_CORPUS / "postfix-user-unknown.eml").read_bytes()
    raw = raw.replace(CODEC.tag("2026-spring", 1).encode(), b"x" * 39)
    raw = raw.replace(b"<2026-spring.p0001@", b"<someone-else@")
    report = run(database, open_mailbox(maildir=maildir_of(tmp_path / "M", [raw])))
    [line] = report.lines
    assert line.outcome == "not attributable"
    assert line.note.endswith("no VERP tag or Message-ID of ours in it")
    assert suppressions.all_suppressions(database) == []


def test_a_forged_tag_falls_back_to_the_message_id(database: Database, tmp_path: Path) -> None:
    raw = (BOUNCE_CORPUS / "postfix-user-unknown.eml").read_bytes()
    raw = raw.replace(CODEC.tag("2026-spring", 1).encode(), CODEC.tag("2026-spring", 2)
                      .encode()[:-3] + b"aaa")
    [line] = run(database, open_mailbox(maildir=maildir_of(tmp_path / "M", [raw]))).lines
    assert (line.address, line.note.rsplit("; ", 1)[-1]) == (CORPUS_RECIPIENTS[1],
                                                             "found by Message-ID")


def test_the_verp_tag_wins_over_the_address_in_the_report(database: Database,
                                                         tmp_path: Path) -> None:
    # A forwarding mailbox bounces: the report names the address it was forwarded to.
    raw = (BOUNCE_CORPUS / "qmail-non-standard.eml").read_bytes()
    raw = raw.replace(b"adult-safeguarding@care1.example.org", b"forwarded@elsewhere.example.org")
    [line] = run(database, open_mailbox(maildir=maildir_of(tmp_path / "M", [raw]))).lines
    assert line.address == CORPUS_RECIPIENTS[5]
    assert suppressions.get(database, CORPUS_RECIPIENTS[5]).detail.startswith(
        "5.1.1 reported for forwarded@elsewhere.example.org")


def test_a_malformed_message_is_skipped_and_the_rest_recorded(database: Database,
                                                              tmp_path: Path) -> None:
    path = maildir_of(tmp_path / "M", [b"\x00\xff garbage\n\nno headers at all",
                                       (BOUNCE_CORPUS / "postfix-user-unknown.eml").read_bytes()])
    report = run(database, open_mailbox(maildir=path))
    assert sorted(line.outcome for line in report.lines) == ["hard bounce", "ignored"]
    assert len(suppressions.all_suppressions(database)) == 1


def _soft_bounce(issue: str, rid: int = 2) -> bytes:
    raw = (BOUNCE_CORPUS / "exim-mailbox-full.eml").read_bytes()
    raw = raw.replace(CODEC.tag("2026-spring", 2).encode(), CODEC.tag(issue, rid).encode())
    raw = raw.replace(b"<2026-spring.p0002@", f"<{issue}.p{rid:04d}@".encode())
    return raw.replace(b"Message-Id: <E1w3Kx2", f"Message-Id: <{issue}-E1w3Kx2".encode())


def test_soft_bounces_in_three_issues_in_a_row_suppress(storage_url: str, tmp_path: Path) -> None:
    database = open_db(storage_url)
    try:
        seed_corpus_sends(database, ("2025-autumn", "2026-winter", "2026-spring"))
        path = maildir_of(tmp_path / "M", [_soft_bounce("2025-autumn"),
                                           _soft_bounce("2026-winter")])
        lines = run(database, open_mailbox(maildir=path)).lines
        assert [line.note.rsplit("; ", 1)[-1] for line in lines] == ["1 of 3 in a row",
                                                                     "2 of 3 in a row"]
        assert suppressions.all_suppressions(database) == []
        maildir_of(path, [_soft_bounce("2026-spring")])
        [line] = [x for x in run(database, open_mailbox(maildir=path)).lines
                  if x.outcome == "soft bounce"]
        assert line.suppressed == "bounced-soft"
        found = suppressions.get(database, CORPUS_RECIPIENTS[2])
        assert found.detail.startswith("3 soft bounces in a row; last: 5.2.2")
    finally:
        database.close()


def test_an_issue_without_a_bounce_breaks_the_run(storage_url: str, tmp_path: Path) -> None:
    database = open_db(storage_url)
    try:
        seed_corpus_sends(database, ("2025-autumn", "2026-winter", "2026-spring", "2026-summer"))
        path = maildir_of(tmp_path / "M", [_soft_bounce("2025-autumn"),
                                           _soft_bounce("2026-spring"),
                                           _soft_bounce("2026-summer")])
        lines = run(database, open_mailbox(maildir=path)).lines
        assert lines[-1].note.endswith("2 of 3 in a row")
        assert suppressions.all_suppressions(database) == []
    finally:
        database.close()
