"""The ledger remembers when a recipient may have two copies (an attempt went unanswered)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fake_providers import Mailgun
from helpers import ledger_rows

from newsletter import db, ledger
from newsletter import send as sending
from newsletter.adapters.base import AdapterSettings
from newsletter.adapters.http import HttpAdapter
from newsletter.cli import main
from newsletter.db import create_db_engine, open_db
from newsletter.migrations import m001_initial, m002_report_indexes, m060_repeat_possible


def _delivery(conn, rid: int, status: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute(db.recipients.insert().values(id=rid, address=f"r{rid}@school.example",
                                               pseudonym=f"p{rid}", created_at=1.0))
    conn.execute(sa.text("INSERT INTO deliveries (issue, recipient_id, status, message_id, "
                         "updated_at) VALUES ('spring', :rid, :status, :mid, 1.0)"),
                 {"rid": rid, "status": status, "mid": f"<m{rid}@example.org>"})


def test_the_migration_flags_rows_already_unknown(storage_url: str) -> None:
    engine = create_db_engine(storage_url)
    try:
        with engine.begin() as conn:
            m001_initial(conn)
            m002_report_indexes(conn)
            _delivery(conn, 1, "unknown")
            _delivery(conn, 2, "sent")
            m060_repeat_possible(conn)
            flags = dict(conn.execute(sa.text("SELECT recipient_id, repeat_possible "
                                              "FROM deliveries")).all())
        assert {k: bool(v) for k, v in flags.items()} == {1: True, 2: False}
    finally:
        engine.dispose()


def test_a_row_sent_after_an_unanswered_attempt_stays_marked(storage_url: str) -> None:
    database = open_db(storage_url)
    try:
        with database.engine.begin() as conn:
            _delivery(conn, 1, "pending")
            _delivery(conn, 2, "pending")
        (first, second) = ledger.claim(database, "spring", "t1", 10)
        ledger.record(database, "spring", "t1", [
            ledger.Result(first.recipient_id, "unknown", "no answer"),
            ledger.Result(second.recipient_id, "sent", provider_id="x")])
        assert ledger.possible_repeats(database, "spring") == 0     # not sent yet
        (again,) = ledger.claim(database, "spring", "t2", 10)
        ledger.record(database, "spring", "t2", [ledger.Result(again.recipient_id, "sent")])
        assert ledger.possible_repeats(database, "spring") == 1
    finally:
        database.close()


def test_a_sender_that_died_leaves_its_rows_marked(storage_url: str) -> None:
    database = open_db(storage_url)
    try:
        with database.engine.begin() as conn:
            _delivery(conn, 1, "pending")
        ledger.claim(database, "spring", "elsewhere:1:x", 10)
        assert ledger.recover_stale(database, "spring", lease=-1) == 1
        with database.engine.connect() as conn:
            assert conn.execute(sa.select(db.deliveries.c.repeat_possible)).scalar_one()
    finally:
        database.close()


def test_send_says_who_may_have_two_copies(send_project: Path, http_server,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Mailgun()
    fake.slow, fake.slow_seconds, fake.events_hidden = 1, 1.0, 100
    for name, value in (("MAILGUN_API_KEY", "key-test"), ("MAILGUN_DOMAIN", "mg.example.org"),
                        ("MAILGUN_API_URL", http_server(fake.app()))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(HttpAdapter, "confirm_waits", (0.1,))
    monkeypatch.setattr(sending, "AdapterSettings",
                        functools.partial(AdapterSettings, timeout=0.3))
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--to",
                                       "councils", "--adapter", "mailgun", "--yes",
                                       "--retry-delay", "0", "--allow-local-tracking"])
    assert result.exit_code == 0, result.output
    assert "1 recipient(s) may have two copies" in result.output
    marked = [a for a, row in ledger_rows(send_project).items() if row["repeat_possible"]]
    assert len(marked) == 1 and fake.recipients.count(marked[0]) == 2
