"""Delivery time that means delivery: what providers report reaches the ledger, and the
tracker's timing rules measure from it (SQLite and PostgreSQL).

The fixture (``helpers.seed_tracking``): issue ``spring`` sent to p1..p5 at T.
"""

from __future__ import annotations

import sqlalchemy as sa
from helpers import TRACKING_SENT_AT as T

from newsletter import db, ledger, migrations
from newsletter.bounces.events import EventType
from newsletter.bounces.record import Event, record
from newsletter.db import create_db_engine
from newsletter.tracking.events import EventWriter, Hit

SCANNER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def delivered_at(database, recipient_id: int) -> float | None:  # type: ignore[no-untyped-def]
    d = db.deliveries
    with database.engine.connect() as conn:
        return conn.execute(sa.select(d.c.delivered_at).where(
            d.c.issue == "spring", d.c.recipient_id == recipient_id)).scalar()


def delivered(database, key: str, address: str, at: float) -> None:  # type: ignore[no-untyped-def]
    """A provider's "delivered" webhook event, recorded the way hooks.store records it."""
    with database.engine.begin() as conn:
        record(conn, Event(key=key, at=at, source="webhook", provider="postmark",
                           type=EventType.DELIVERED, address=address, issue="spring"), 3)


def scan(at: float, link: str, who: str = "p1") -> Hit:
    return Hit(at=at, issue="spring", kind="click", link_id=link, pseudonym=who,
               user_agent=SCANNER, ip_hash="gateway")


def stored(database) -> list[tuple[str, bool, str]]:  # type: ignore[no-untyped-def]
    e = db.events
    with database.engine.connect() as conn:
        return [(r.link_id, r.scanner, r.reasons) for r in conn.execute(
            sa.select(e.c.link_id, e.c.scanner, e.c.reasons).order_by(e.c.id))]


def test_a_delivered_event_sets_delivered_at_and_the_earliest_report_wins(tracking_db) -> None:  # type: ignore[no-untyped-def]
    assert delivered_at(tracking_db, 1) is None
    delivered(tracking_db, "webhook:postmark:1", "ann@school.example", T + 600)
    assert delivered_at(tracking_db, 1) == T + 600
    delivered(tracking_db, "webhook:postmark:2", "ann@school.example", T + 900)  # a repeat
    assert delivered_at(tracking_db, 1) == T + 600
    delivered(tracking_db, "webhook:postmark:3", "ann@school.example", T + 300)
    assert delivered_at(tracking_db, 1) == T + 300
    assert delivered_at(tracking_db, 2) is None


def test_mark_delivered_for_an_address_not_in_the_issue_changes_nothing(tracking_db) -> None:  # type: ignore[no-untyped-def]
    with tracking_db.engine.begin() as conn:
        assert not ledger.mark_delivered(conn, "spring", "nobody@example.org", T)
        assert not ledger.mark_delivered(conn, "no-such-issue", "ann@school.example", T)


def test_scans_after_a_delayed_delivery_count_from_when_it_arrived(tracking_db) -> None:  # type: ignore[no-untyped-def]
    arrived = T + 1200  # greylisted: accepted twenty minutes after we sent it
    delivered(tracking_db, "webhook:postmark:1", "ann@school.example", arrived)
    writer = EventWriter(tracking_db)
    for i, link in enumerate(("a1", "d1", "e1")):
        writer.add(scan(arrived + 3 + i * 10, link))
    writer.close()
    assert stored(tracking_db) == [("a1", True, "after-delivery"), ("d1", True, "after-delivery"),
                                   ("e1", True, "after-delivery")]


def test_without_a_report_the_same_scans_are_measured_from_the_send(tracking_db) -> None:  # type: ignore[no-untyped-def]
    writer = EventWriter(tracking_db)
    for i, link in enumerate(("a1", "d1", "e1")):
        writer.add(scan(T + 1203 + i * 10, link))
    writer.close()
    assert [s for _, s, _ in stored(tracking_db)] == [False, False, False]


def test_a_report_arriving_after_the_first_scans_still_marks_them(tracking_db) -> None:  # type: ignore[no-untyped-def]
    arrived = T + 1200
    writer = EventWriter(tracking_db)
    writer.add(scan(arrived + 2, "a1"))
    writer.add(scan(arrived + 4, "d1"))
    writer.flush()  # stored while only the send time was known
    delivered(tracking_db, "webhook:postmark:1", "ann@school.example", arrived)
    writer.add(scan(arrived + 30, "e1"))
    writer.close()
    assert stored(tracking_db) == [("a1", True, "after-delivery"), ("d1", True, "after-delivery"),
                                   ("e1", True, "after-delivery")]


def test_delivered_at_is_filled_from_events_recorded_before_it_existed(  # type: ignore[no-untyped-def]
        storage_url, monkeypatch) -> None:
    engine = create_db_engine(storage_url)
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", [
            m for m in migrations.MIGRATIONS if m is not migrations.m051_delivered_at])
        migrations.migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO recipients (id, address, pseudonym, created_at) "
                "VALUES (1, 'ann@school.example', 'p1', 0), (2, 'bob@school.example', 'p2', 0)"))
            conn.execute(sa.text(
                "INSERT INTO deliveries (issue, recipient_id, status, message_id, pseudonym, "
                "sent_at, updated_at) VALUES ('spring', 1, 'sent', '<1@x>', 'p1', 100, 100), "
                "('spring', 2, 'sent', '<2@x>', 'p2', 100, 100)"))
            conn.execute(sa.text(
                "INSERT INTO delivery_events (event_key, at, recorded_at, source, type, address, "
                "issue) VALUES ('k1', 160, 170, 'webhook', 'delivered', 'ann@school.example', "
                "'spring'), ('k2', 130, 170, 'webhook', 'delivered', 'ann@school.example', "
                "'spring'), ('k3', 150, 170, 'webhook', 'bounced-soft', 'bob@school.example', "
                "'spring')"))
        monkeypatch.undo()
        assert migrations.migrate(engine) == ["m051_delivered_at"]
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT recipient_id, delivered_at FROM deliveries "
                                        "ORDER BY recipient_id")).all()
        assert [tuple(r) for r in rows] == [(1, 130.0), (2, None)]
    finally:
        engine.dispose()
