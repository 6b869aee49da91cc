"""The ledger on SQLite and PostgreSQL: rows before sending, atomic claims, recovery."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from helpers import make_built

from newsletter import db, ledger
from newsletter.audiences import PlannedRecipient, SendPlan
from newsletter.db import open_db
from newsletter.tracking.tokens import Signer

SIGNER = Signer({"k1": b"secret"}, "k1")

def plan(n: int, lists: tuple[str, ...] = ("a",)) -> SendPlan:
    people = [PlannedRecipient(f"r{i}@x.example", f"R {i}", "Org", lists) for i in range(n)]
    return SendPlan(lists, people, dict.fromkeys(lists, n), 0, [])


@pytest.fixture
def database(storage_url: str):  # type: ignore[no-untyped-def]
    database = open_db(storage_url)
    yield database
    database.close()


def rows(database) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return {r.address: r._asdict() for r in conn.execute(
            sa.select(db.recipients.c.address, db.recipients.c.pseudonym.label("secret"),
                      db.deliveries)
            .join(db.deliveries, db.deliveries.c.recipient_id == db.recipients.c.id))}


def test_plan_rows_are_written_once_with_fixed_message_ids(database) -> None:  # type: ignore[no-untyped-def]
    assert ledger.write_plan(database, "spring", plan(3, ("a", "b")), "news.example.org",
                             SIGNER.pseudonym) == 3
    first = rows(database)
    assert {r["status"] for r in first.values()} == {"pending"}
    for r in first.values():
        assert r["pseudonym"] == SIGNER.pseudonym("spring", r["secret"])
        assert r["message_id"] == f"<spring.{r['pseudonym']}@news.example.org>"
    # Running again adds nothing and changes no pseudonym or Message-ID.
    assert ledger.write_plan(database, "spring", plan(4, ("a", "b")), "news.example.org",
                             SIGNER.pseudonym) == 1
    second = rows(database)
    for address, r in first.items():
        assert (second[address]["pseudonym"], second[address]["message_id"]) == \
            (r["pseudonym"], r["message_id"])
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.delivery_lists)).scalar() \
            == 8


def test_claims_never_overlap(storage_url: str) -> None:
    setup = open_db(storage_url)
    ledger.write_plan(setup, "spring", plan(200), "d", SIGNER.pseudonym)
    setup.close()
    taken: list[list[int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        # Each worker has its own engine, as a separate `send` process would.
        mine: list[int] = []
        database = open_db(storage_url)
        try:
            while True:
                token = ledger.worker_token()
                claimed = ledger.claim(database, "spring", token, 7)
                if not claimed:
                    break
                mine += [c.recipient_id for c in claimed]
                ledger.record(database, "spring", token,
                              [ledger.Result(c.recipient_id, "sent") for c in claimed])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            database.close()
            taken.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everyone = [rid for mine in taken for rid in mine]
    assert len(everyone) == 200 and len(set(everyone)) == 200


def test_record_release_and_counts(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(4), "d", SIGNER.pseudonym)
    claimed = ledger.claim(database, "spring", "t1", 3)
    assert len(claimed) == 3 and all(c.previous_status == "pending" for c in claimed)
    assert ledger.claim(database, "spring", "t2", 10)[0].recipient_id not in \
        {c.recipient_id for c in claimed}
    ledger.release(database, "spring", "t2")
    ledger.record(database, "spring", "t1", [
        ledger.Result(claimed[0].recipient_id, "sent", provider_id="abc"),
        ledger.Result(claimed[1].recipient_id, "failed", "550 no such user"),
        ledger.Result(claimed[2].recipient_id, "deferred", "451 later", next_attempt_at=2e12),
    ])
    counts = ledger.status_counts(database, "spring")
    assert {k: v for k, v in counts.items() if v} == {"sent": 1, "failed": 1, "deferred": 1,
                                                      "pending": 1}
    # The deferred row is not due; failed rows are claimable only when asked for.
    assert [c.previous_status for c in ledger.claim(database, "spring", "t3", 10)] == ["pending"]
    ledger.make_due(database, "spring", ("deferred",))
    again = ledger.claim(database, "spring", "t4", 10, ledger.RETRYABLE + ("failed",))
    assert sorted(c.previous_status for c in again) == ["deferred", "failed"]
    state = rows(database)
    assert state["r0@x.example"]["provider_message_id"] == "abc"
    assert state["r0@x.example"]["sent_at"] is not None


def test_a_row_held_too_long_becomes_unknown(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(2), "d", SIGNER.pseudonym)
    ledger.claim(database, "spring", "somewhere-else:1:x:1", 1)
    assert ledger.recover_stale(database, "spring", lease=3600) == 0
    assert ledger.recover_stale(database, "spring", lease=-1) == 1
    state = rows(database)["r0@x.example"]
    assert (state["status"], state["attempts"], state["claimed_by"]) == ("unknown", 1, "")
    assert "may have been delivered" in state["last_error"]


def test_a_dead_senders_rows_become_unknown_at_once(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(1), "d", SIGNER.pseudonym)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = ledger.worker_token().split(":")[0]
    ledger.claim(database, "spring", f"{host}:{dead}:abcd:1", 1)
    assert ledger.recover_stale(database, "spring", lease=3600) == 1


def test_suppressed_addresses_are_never_claimed(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(2), "d", SIGNER.pseudonym)
    with database.engine.begin() as conn:
        conn.execute(db.suppressions.insert().values(address="r1@x.example",
                                                     reason="unsubscribed", created_at=0))
    assert ledger.suppressed_addresses(database) == {"r1@x.example": "unsubscribed"}
    assert [c.address for c in ledger.claim(database, "spring", "t", 10)] == ["r0@x.example"]
    assert ledger.status_counts(database, "spring")["suppressed"] == 1


def test_register_issue_adds_and_updates_links(database) -> None:  # type: ignore[no-untyped-def]
    built = make_built(tracking="individual", opens=True)
    ledger.register_issue(database, built)
    built.links = built.links[:1]
    built.issue.subject = "New subject"
    ledger.register_issue(database, built)
    with database.engine.connect() as conn:
        issue = conn.execute(sa.select(db.issues)).one()
        links = conn.execute(sa.select(db.links.c.link_id, db.links.c.url)
                             .order_by(db.links.c.link_id)).all()
    assert (issue.slug, issue.subject, issue.tracking, issue.opens, issue.web_html) == \
        ("spring", "New subject", "individual", True, "<h1>web</h1>")
    # Links are never removed: messages already out still point at them.
    assert [tuple(link) for link in links] == [("aaa111", "https://example.org/review"),
                                               ("bbb222", "https://example.org/guide.pdf")]


def test_each_issue_gives_a_recipient_another_pseudonym_and_message_id(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(3), "d", SIGNER.pseudonym)
    ledger.write_plan(database, "summer", plan(3), "d", SIGNER.pseudonym)
    with database.engine.connect() as conn:
        found = conn.execute(sa.select(db.deliveries.c.issue, db.deliveries.c.recipient_id,
                                       db.deliveries.c.pseudonym, db.deliveries.c.message_id,
                                       db.recipients.c.pseudonym.label("secret"))
                             .join(db.recipients)).all()
    by_issue = {issue: {r.recipient_id: r for r in found if r.issue == issue}
                for issue in ("spring", "summer")}
    assert len(by_issue["spring"]) == len(by_issue["summer"]) == 3
    for rid, spring in by_issue["spring"].items():
        summer = by_issue["summer"][rid]
        assert spring.pseudonym != summer.pseudonym
        assert spring.message_id != summer.message_id
        # The recipient's own secret goes into no message.
        assert spring.secret not in spring.message_id + summer.message_id
    assert len({r.pseudonym for r in found}) == 6


def test_a_new_key_changes_no_pseudonym_or_message_id_already_written(database) -> None:  # type: ignore[no-untyped-def]
    ledger.write_plan(database, "spring", plan(2), "d", SIGNER.pseudonym)
    before = rows(database)
    rotated = Signer({"k2": b"new secret", "k1": b"secret"}, "k2")
    assert ledger.write_plan(database, "spring", plan(3), "d", rotated.pseudonym) == 1
    after = rows(database)
    for address, row in before.items():
        assert (after[address]["pseudonym"], after[address]["message_id"]) == \
            (row["pseudonym"], row["message_id"])
