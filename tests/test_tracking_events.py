"""Scanner classification, the batched event writer and retention (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import TRACKING_SENT_AT

from newsletter import db
from newsletter.cli import main
from newsletter.errors import NewsletterError
from newsletter.settings import Settings
from newsletter.tracking import classify
from newsletter.tracking.events import EventWriter, Hit, parse_age, purge, store

T = TRACKING_SENT_AT


def rows(database) -> list:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return list(conn.execute(sa.select(db.events).order_by(db.events.c.id)))


def test_hit_reasons_each_rule() -> None:
    rules = classify.Rules()
    person = "Mozilla/5.0 (Macintosh) Safari/605.1.15"
    assert classify.hit_reasons(rules, method="GET", user_agent=person, ip="81.2.69.160") == []
    assert classify.hit_reasons(rules, method="HEAD", user_agent=person, ip="") == ["head"]
    assert classify.hit_reasons(rules, method="GET", user_agent="", ip="") == ["no-agent"]
    assert classify.hit_reasons(rules, method="GET", user_agent="Mozilla/5.0 BingPreview/1.0b",
                                ip="") == ["scanner-agent"]
    assert classify.hit_reasons(rules, method="GET", user_agent=person,
                                ip="40.107.22.5") == ["scanner-network"]
    assert classify.hit_reasons(rules, method="GET", user_agent=person, ip="",
                                link_kind="honeypot") == ["honeypot"]


def test_extra_scanner_networks_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.load(tmp_path, {"NEWSLETTER_SCANNER_NETWORKS":
                                        "198.51.100.0/24, 2001:db8::/32"})
    rules = classify.Rules(networks=classify.scanner_networks(settings.scanner_networks))
    assert rules.scanner_network("198.51.100.9")
    assert not rules.scanner_network("198.51.101.9")


def test_ip_is_stored_only_as_a_keyed_hash() -> None:
    first = classify.hash_ip(b"key-one", "81.2.69.160")
    assert len(first) == 16 and "81.2" not in first
    assert first == classify.hash_ip(b"key-one", "81.2.69.160")
    assert first != classify.hash_ip(b"key-two", "81.2.69.160")


def test_writer_marks_three_links_soon_after_delivery_not_one(tracking_db) -> None:  # type: ignore[no-untyped-def]
    agent = "Mozilla/5.0 Firefox/140.0"
    store(tracking_db, [
        Hit(at=T + 5, issue="spring", kind="click", link_id="a1", pseudonym="p1",
            user_agent=agent, ip_hash="gw"),
        Hit(at=T + 9, issue="spring", kind="click", link_id="d1", pseudonym="p1",
            user_agent=agent, ip_hash="gw"),
        Hit(at=T + 20, issue="spring", kind="click", link_id="a1", pseudonym="p2",
            user_agent=agent, ip_hash="home"),   # an eager reader: one link
        Hit(at=T + 30, issue="spring", kind="click", link_id="e1", pseudonym="p1",
            user_agent=agent, ip_hash="gw"),
    ])
    assert [(r.pseudonym, r.scanner, r.reasons, r.classifier) for r in rows(tracking_db)] == [
        ("p1", True, "after-delivery", classify.VERSION),
        ("p1", True, "after-delivery", classify.VERSION),
        ("p2", False, "", classify.VERSION), ("p1", True, "after-delivery", classify.VERSION)]


def test_a_later_verdict_updates_hits_stored_in_earlier_batches(tracking_db) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    agent = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"
    for i, link in enumerate(("a1", "d1")):
        writer.add(Hit(at=T + 900 + i * 7, issue="spring", kind="click", link_id=link,
                       pseudonym="p3", user_agent=agent, ip_hash="sandbox"))
    writer.add(Hit(at=T + 910, issue="spring", kind="view", user_agent=agent,
                   ip_hash="sandbox"))
    writer.flush()
    assert [r.scanner for r in rows(tracking_db)] == [False, False, False]
    # minutes later the same client fetches the hidden link: its earlier hits were a scanner's
    writer.add(Hit(at=T + 1200, issue="spring", kind="click", link_id="hp", pseudonym="p3",
                   user_agent=agent, ip_hash="sandbox", reasons=["honeypot"]))
    writer.close()
    assert [(r.kind, r.scanner, r.reasons) for r in rows(tracking_db)] == [
        ("click", True, "same-client"), ("click", True, "same-client"),
        ("view", True, "same-client"), ("click", True, "honeypot")]
    assert writer.stored == 4


def test_writer_marks_bursts_of_aggregate_senders_across_batches(tracking_db) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    agent = "Mozilla/5.0 Firefox/140.0"
    # Aggregate issue: no recipient, so the client is the IP hash and user agent.
    for i, link in enumerate(("a1", "d1", "e1")):
        writer.add(Hit(at=T + 900 + i * 0.3, issue="autumn", kind="click", link_id=link,
                       list_key="schools", user_agent=agent, ip_hash="aaaa"))
    writer.flush()  # three links are no burst yet: people open three tabs
    writer.add(Hit(at=T + 901, issue="autumn", kind="click", link_id="a1", list_key="schools",
                   user_agent=agent, ip_hash="bbbb", method="HEAD", reasons=["head"]))
    writer.add(Hit(at=T + 901.2, issue="autumn", kind="click", link_id="x9", list_key="schools",
                   user_agent=agent, ip_hash="aaaa"))
    writer.close()
    assert [(r.ip_hash, r.scanner, r.reasons) for r in rows(tracking_db)] == [
        ("aaaa", True, "burst"), ("aaaa", True, "burst"), ("aaaa", True, "burst"),
        ("bbbb", True, "head"), ("aaaa", True, "burst")]


def test_a_failed_batch_is_classified_once_and_its_updates_kept(tracking_db,  # type: ignore[no-untyped-def]
                                                                 monkeypatch) -> None:
    writer = EventWriter(tracking_db)
    agent = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"
    writer.add(Hit(at=T + 900, issue="spring", kind="click", link_id="a1", pseudonym="p3",
                   user_agent=agent, ip_hash="sandbox"))
    writer.flush()
    real = writer._update_earlier
    calls = []

    def failing_once(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return real(*args)

    monkeypatch.setattr(writer, "_update_earlier", failing_once)
    writer.add(Hit(at=T + 905, issue="spring", kind="click", link_id="hp", pseudonym="p3",
                   user_agent=agent, ip_hash="sandbox", reasons=["honeypot"]))
    with pytest.raises(sa.exc.OperationalError):
        writer.flush()
    assert writer.flush() == 1
    assert [(r.link_id, r.reasons) for r in rows(tracking_db)] == [
        ("a1", "same-client"), ("hp", "honeypot")]


def test_events_stored_before_the_classifier_version_count_as_version_1(storage_url) -> None:  # type: ignore[no-untyped-def]
    database = db.open_db(storage_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO events (at, issue, kind) VALUES (1, 'old', 'view')"))
        [row] = rows(database)
        assert row.classifier == 1
    finally:
        database.close()


def test_purge_deletes_only_older_events(tracking_db) -> None:  # type: ignore[no-untyped-def]
    now = db.now()
    store(tracking_db, [Hit(at=now - 200 * 86400, issue="spring", kind="click", link_id="a1"),
                        Hit(at=now - 10 * 86400, issue="spring", kind="click", link_id="a1"),
                        Hit(at=now - 300 * 86400, issue="autumn", kind="view")])
    assert purge(tracking_db, parse_age("180d"), issue="spring") == (1, 0)
    assert len(rows(tracking_db)) == 2
    assert purge(tracking_db, parse_age("180d")) == (1, 0)
    assert [r.at for r in rows(tracking_db)] == [now - 10 * 86400]


@pytest.mark.parametrize(("text", "seconds"), [("180d", 180 * 86400), ("12h", 43200),
                                               ("2w", 14 * 86400), ("90 s", 90), ("1.5d", 129600)])
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["180", "d", "180x", "-3d", "", "180 days"])
def test_parse_age_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(NewsletterError) as caught:
        parse_age(text)
    assert caught.value.message == f"--older-than {text!r} is not an age"
    assert "e.g. 180d" in caught.value.hint


def test_parse_age_rejects_zero() -> None:
    with pytest.raises(NewsletterError, match="must be more than zero"):
        parse_age("0d")


def test_purge_command(tracking_db, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    store(tracking_db, [Hit(at=db.now() - 400 * 86400, issue="spring", kind="click")])
    result = runner.invoke(main, ["track", "purge", "--older-than", "180d",
                                  "--db", tracking_db.url])
    assert result.exit_code == 0, result.output
    assert result.output == "Deleted 1 event(s) and 0 feedback comment(s) older than 180d.\n"
    bad = runner.invoke(main, ["track", "purge", "--older-than", "six months",
                               "--db", tracking_db.url])
    assert bad.exit_code == 1
    assert "--older-than 'six months' is not an age" in bad.output
    assert "Traceback" not in bad.output


def test_a_failed_write_keeps_the_hits_queued_for_the_next_flush(tracking_db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    real_write = writer._write
    calls = []

    def failing_once(batch, *rest):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real_write(batch, *rest)

    monkeypatch.setattr(writer, "_write", failing_once)
    for i in range(3):
        writer.add(Hit(at=T + 3600 + i, issue="spring", kind="view"))
    with pytest.raises(sa.exc.OperationalError):
        writer.flush()
    assert writer.pending == 3 and rows(tracking_db) == []
    assert writer.flush() == 3
    assert len(rows(tracking_db)) == 3 and writer.pending == 0


def test_several_processes_can_open_a_fresh_database_at_once(storage_url) -> None:  # type: ignore[no-untyped-def]
    """Several tracker instances (or two sends) starting together must not race the migrations."""
    import subprocess
    import sys

    code = "import sys; from newsletter.db import open_db; open_db(sys.argv[1]).close()"
    processes = [subprocess.Popen([sys.executable, "-c", code, storage_url],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors


def test_close_saves_events_to_a_file_when_the_database_cannot_take_them(
        tracking_db, monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    settings = Settings.load(tmp_path, {"NEWSLETTER_SPILL_DIR": str(tmp_path)})
    writer = EventWriter(tracking_db, spill_dir=settings.spill_dir)

    def down(batch, *rest):  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(writer, "_write", down)
    for i in range(2):
        writer.add(Hit(at=T + i, issue="spring", kind="click", link_id="a1", pseudonym="p1"))
    writer.close()
    [saved] = list(tmp_path.glob("events-unsaved-*.jsonl"))
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(e["issue"], e["link_id"], e["pseudonym"], e["at"]) for e in lines] == [
        ("spring", "a1", "p1", T), ("spring", "a1", "p1", T + 1)]
    assert "could not store 2 event(s)" in capsys.readouterr().err
    assert writer.pending == 0
