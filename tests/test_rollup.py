"""The counts kept as events are written (newsletter.tracking.rollup) equal a full recount of
the events after every kind of change: new hits, later verdicts, purges, old databases
(SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import TRACKING_SENT_AT

from newsletter import db
from newsletter.cli import main
from newsletter.db import create_db_engine
from newsletter.migrations import MIGRATIONS
from newsletter.tracking import rollup
from newsletter.tracking.events import EventWriter, Hit, parse_age, purge, store

T = TRACKING_SENT_AT
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"


def _kept_and_right(database) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return rollup.stored(conn), rollup.recount(conn)


def _agree(database) -> dict:  # type: ignore[no-untyped-def]
    kept, right = _kept_and_right(database)
    assert kept == right
    return kept


def _mixed_hits(at: float) -> list[Hit]:
    """People, a scanner caught at once, and a gateway caught a minute later."""
    hits = [Hit(at=at + 1000 * i, issue="spring", kind="click", link_id="a1",
                pseudonym=f"p{i % 3 + 1}", list_key="schools", user_agent=AGENT,
                ip_hash=f"home{i}") for i in range(5)]
    hits += [Hit(at=at + 10 + 60 * i, issue="autumn", kind="view", outlet=o, user_agent=AGENT,
                 ip_hash=f"reader{i}") for i, o in enumerate(("email", "facebook", "kelsi"))]
    hits.append(Hit(at=at + 20, issue="spring", kind="click", link_id="d1", pseudonym="p4",
                    user_agent="python-requests/2.31", ip_hash="bot",
                    reasons=["scanner-agent"]))
    hits.append(Hit(at=at + 30, issue="spring", kind="feedback", link_id="yes", list_key="police",
                    user_agent=AGENT, ip_hash="answer"))
    return hits


def test_counts_kept_as_hits_are_stored_equal_a_recount(tracking_db) -> None:  # type: ignore[no-untyped-def]
    store(tracking_db, _mixed_hits(T + 86400))
    kept = _agree(tracking_db)
    day = int((T + 86400) / 86400)
    counts = kept["event_counts"]
    assert counts[("spring", "click", False, day, "a1", "email", "schools")] == 5
    assert counts[("autumn", "view", False, day, "", "facebook", "")] == 1
    assert kept["event_reasons"] == {("spring", "scanner-agent"): 1}
    assert kept["event_people"][("spring", "click", False, "p1", "a1")] == 2


def test_a_later_verdict_moves_earlier_hits_on_the_counts(tracking_db) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    for i, link in enumerate(("a1", "d1")):
        writer.add(Hit(at=T + 900 + i * 7, issue="spring", kind="click", link_id=link,
                       pseudonym="p3", user_agent=AGENT, ip_hash="sandbox"))
    writer.add(Hit(at=T + 910, issue="spring", kind="view", user_agent=AGENT, ip_hash="sandbox"))
    writer.flush()
    assert _agree(tracking_db)["event_reasons"] == {}
    writer.add(Hit(at=T + 1200, issue="spring", kind="click", link_id="hp", pseudonym="p3",
                   user_agent=AGENT, ip_hash="sandbox", reasons=["honeypot"]))
    writer.close()
    kept = _agree(tracking_db)
    assert kept["event_reasons"] == {("spring", "same-client"): 3, ("spring", "honeypot"): 1}
    assert not any(key[2] is False for key in kept["event_counts"])


def test_a_verdict_on_a_hit_the_writer_forgot_reads_it_back(tracking_db) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    writer.add(Hit(at=T + 900, issue="spring", kind="click", link_id="a1", pseudonym="p3",
                   user_agent=AGENT, ip_hash="sandbox"))
    writer.flush()
    writer._stored_as.clear()   # as after pruning: what it was stored with is read back
    writer.add(Hit(at=T + 950, issue="spring", kind="click", link_id="hp", pseudonym="p3",
                   user_agent=AGENT, ip_hash="sandbox", reasons=["honeypot"]))
    writer.close()
    assert _agree(tracking_db)["event_reasons"] == {("spring", "same-client"): 1,
                                                     ("spring", "honeypot"): 1}


def test_a_failed_transaction_leaves_the_counts_as_the_events(tracking_db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    writer.add(Hit(at=T + 900, issue="spring", kind="click", link_id="a1", pseudonym="p3",
                   user_agent=AGENT, ip_hash="sandbox"))
    writer.flush()
    real = rollup.apply
    calls = []

    def failing_once(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args)

    monkeypatch.setattr(rollup, "apply", failing_once)
    writer.add(Hit(at=T + 905, issue="spring", kind="click", link_id="hp", pseudonym="p3",
                   user_agent=AGENT, ip_hash="sandbox", reasons=["honeypot"]))
    with pytest.raises(sa.exc.OperationalError):
        writer.flush()
    assert _agree(tracking_db)["event_reasons"] == {}
    assert writer.flush() == 1
    assert _agree(tracking_db)["event_reasons"] == {("spring", "same-client"): 1,
                                                     ("spring", "honeypot"): 1}


def test_purge_takes_what_it_deletes_off_the_counts(tracking_db) -> None:  # type: ignore[no-untyped-def]
    now = db.now()
    store(tracking_db, _mixed_hits(now - 200 * 86400) + _mixed_hits(now - 10 * 86400))
    assert purge(tracking_db, parse_age("180d"), issue="autumn") == (3, 0)
    _agree(tracking_db)
    assert purge(tracking_db, parse_age("180d")) == (7, 0)
    kept = _agree(tracking_db)
    assert sum(kept["event_counts"].values()) == 10


def test_the_migration_counts_the_events_of_an_older_database(storage_url: str) -> None:
    names = [m.__name__ for m in MIGRATIONS]
    at = names.index("m072_event_counts")
    engine = create_db_engine(storage_url)
    try:
        with engine.begin() as conn:
            for step in MIGRATIONS[:at]:
                step(conn)
            conn.execute(db.events.insert(), [
                {"at": T + i * 3600, "issue": "spring", "kind": kind, "link_id": link,
                 "pseudonym": person, "scanner": bool(reasons), "reasons": reasons,
                 "outlet": "email"}
                for i, (kind, link, person, reasons) in enumerate([
                    ("click", "a1", "p1", ""), ("click", "a1", "p1", ""),
                    ("view", "", "", "head"), ("click", "d1", "", "burst")])])
            MIGRATIONS[at](conn)
            kept, right = rollup.stored(conn), rollup.recount(conn)
    finally:
        engine.dispose()
    assert kept == right
    assert kept["event_reasons"] == {("spring", "head"): 1, ("spring", "burst"): 1}


def test_recount_command_corrects_counts_that_went_wrong(tracking_db, runner, tmp_path,  # type: ignore[no-untyped-def]
                                                        monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store(tracking_db, _mixed_hits(T + 86400))
    result = runner.invoke(main, ["track", "recount", "--db", tracking_db.url])
    assert result.exit_code == 0, result.output
    assert result.output == "Recounted every issue: every count was right.\n"
    with tracking_db.engine.begin() as conn:   # events restored from a backup, say
        conn.execute(db.events.delete().where(db.events.c.issue == "autumn"))
    result = runner.invoke(main, ["track", "recount", "--issue", "autumn",
                                  "--db", tracking_db.url])
    assert result.exit_code == 0, result.output
    assert result.output == ("Recounted issue autumn: 3 count(s) were wrong and are now "
                             "corrected.\n")
    _agree(tracking_db)
