"""POST /hooks/{provider} on the tracker, in-process, against SQLite and PostgreSQL: signed
requests are stored once; forged, stale and replayed ones are refused and store nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import (
    CORPUS_RECIPIENTS,
    basic_auth,
    mailgun_body,
    public_key_setting,
    seed_corpus_sends,
    sendgrid_request,
)

from newsletter import db, suppressions
from newsletter.db import Database, open_db
from newsletter.tracking.server import create_app

MAILGUN_KEY = "route-test-signing-key"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
ENV = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
       "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_setting(SENDGRID_KEY),
       "POSTMARK_WEBHOOK_USER": "hooks", "POSTMARK_WEBHOOK_PASSWORD": "pm-secret"}
DSL = CORPUS_RECIPIENTS[2]


@pytest.fixture
def database(storage_url: str) -> Iterator[Database]:
    database = open_db(storage_url)
    seed_corpus_sends(database)
    yield database
    database.close()


def post(app, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker.test") as c:
            return await c.post(path, content=body, headers={
                "content-type": "application/json", **(headers or {})})
    return asyncio.run(go())


@pytest.fixture
def app(database: Database):  # type: ignore[no-untyped-def]
    application = create_app(database=database, webhook_env=ENV)
    yield application
    application.close()


def counts(database: Database) -> tuple[int, ...]:
    with database.engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                     for t in (db.delivery_events, db.suppressions, db.webhook_requests))


def failed(address: str = DSL) -> dict:
    return {"event": "failed", "severity": "permanent", "reason": "bounce",
            "recipient": address, "timestamp": time.time(),
            "message": {"headers": {"message-id": "2026-spring.p0002@"
                                                  "prevent-newsletter.example.org"}},
            "delivery-status": {"code": 550, "message": "5.1.1 mailbox does not exist"}}


def test_a_mailgun_hard_bounce_suppresses_with_its_issue(app, database: Database) -> None:  # type: ignore[no-untyped-def]
    response = post(app, "/hooks/mailgun", mailgun_body(failed(), key=MAILGUN_KEY,
                                                        timestamp=time.time()))
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0, "skipped": 0}
    found = suppressions.get(database, DSL)
    assert (found.reason, found.source, found.issue) == ("bounced-hard", "webhook",
                                                         "2026-spring")
    assert found.detail == "5.1.1 5.1.1 mailbox does not exist"
    with database.engine.connect() as conn:
        raw = conn.execute(sa.select(db.delivery_events.c.raw)).scalar()
    assert json.loads(raw)["event-data"]["recipient"] == DSL


def test_a_replayed_mailgun_request_is_refused_and_stores_nothing(app, database) -> None:  # type: ignore[no-untyped-def]
    body = mailgun_body(failed(), key=MAILGUN_KEY, timestamp=time.time())
    assert post(app, "/hooks/mailgun", body).status_code == 200
    before = counts(database)
    response = post(app, "/hooks/mailgun", body)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert counts(database) == before


@pytest.mark.parametrize("body", [
    mailgun_body(failed(), key="not the key", timestamp=time.time()),
    mailgun_body(failed(), key=MAILGUN_KEY, timestamp=time.time() - 3600),
    b'{"event-data": {}}',
    b"not even json",
])
def test_an_unauthenticated_mailgun_request_gets_401_and_stores_nothing(app, database,  # type: ignore[no-untyped-def]
                                                                         body: bytes) -> None:
    assert post(app, "/hooks/mailgun", body).status_code == 401
    assert counts(database) == (0, 0, 0)


def test_a_sendgrid_batch_is_stored_once(app, database: Database) -> None:  # type: ignore[no-untyped-def]
    events = [{"email": DSL, "timestamp": int(time.time()), "event": "spamreport",
               "sg_event_id": "e1"},
              {"email": CORPUS_RECIPIENTS[1], "timestamp": int(time.time()),
               "event": "delivered", "sg_event_id": "e2"},
              {"email": CORPUS_RECIPIENTS[1], "event": "open", "sg_event_id": "e3"}]
    headers, body = sendgrid_request(SENDGRID_KEY, events, timestamp=time.time())
    response = post(app, "/hooks/sendgrid", body, headers)
    assert response.json() == {"stored": 2, "duplicates": 0, "skipped": 1}
    assert suppressions.get(database, DSL).reason == "complained"
    # SendGrid re-signs a retry: the same events again are duplicates, not new.
    headers, body = sendgrid_request(SENDGRID_KEY, events, timestamp=time.time() + 1)
    assert post(app, "/hooks/sendgrid", body, headers).json() == {
        "stored": 0, "duplicates": 2, "skipped": 1}


def test_a_forged_sendgrid_request_stores_nothing(app, database: Database) -> None:  # type: ignore[no-untyped-def]
    other = ec.generate_private_key(ec.SECP256R1())
    headers, body = sendgrid_request(other, [{"email": DSL, "event": "spamreport",
                                              "timestamp": 1, "sg_event_id": "x"}],
                                     timestamp=time.time())
    assert post(app, "/hooks/sendgrid", body, headers).status_code == 401
    assert counts(database) == (0, 0, 0)


def test_an_authenticated_malformed_body_is_a_400_and_stores_nothing(app, database) -> None:  # type: ignore[no-untyped-def]
    import base64

    from cryptography.hazmat.primitives import hashes

    body = b'{"this": "is not an array"}'
    stamp = str(int(time.time()))
    signature = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    response = post(app, "/hooks/sendgrid", body, {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": stamp})
    assert response.status_code == 400
    assert counts(database) == (0, 0, 0)


def test_postmark_with_basic_auth(app, database: Database) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"RecordType": "Bounce", "ID": 99, "Type": "HardBounce", "Email": DSL,
                       "Details": "smtp;550 5.1.1 no such user",
                       "BouncedAt": "2026-04-14T09:12:05Z"}).encode()
    assert post(app, "/hooks/postmark", body, basic_auth("hooks", "wrong")).status_code == 401
    assert counts(database) == (0, 0, 0)
    assert post(app, "/hooks/postmark", body, basic_auth("hooks", "pm-secret")).json() == {
        "stored": 1, "duplicates": 0, "skipped": 0}
    assert post(app, "/hooks/postmark", body, basic_auth("hooks", "pm-secret")).json() == {
        "stored": 0, "duplicates": 1, "skipped": 0}
    assert suppressions.get(database, DSL).reason == "bounced-hard"


def test_a_provider_without_settings_refuses_everything(database: Database) -> None:
    app = create_app(database=database, webhook_env={})
    try:
        body = mailgun_body(failed(), key="", timestamp=time.time())
        assert post(app, "/hooks/mailgun", body).status_code == 401
        assert counts(database) == (0, 0, 0)
    finally:
        app.close()


def test_unknown_provider_wrong_method_and_huge_body(app) -> None:  # type: ignore[no-untyped-def]
    assert post(app, "/hooks/ses", b"{}").status_code == 404

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/hooks/mailgun")
    assert asyncio.run(get()).status_code == 405
    assert post(app, "/hooks/mailgun", b"x" * (1024 * 1024 + 1)).status_code == 413


def test_the_unsubscribe_page_records_source_and_issue(database: Database) -> None:
    from newsletter.tracking.tokens import signer_for

    app = create_app(database=database)
    try:
        token = signer_for(database).unsubscribe("2026-spring", "p0002")
        assert post(app, f"/u/{token}", b"List-Unsubscribe=One-Click").status_code == 200
    finally:
        app.close()
    found = suppressions.get(database, DSL)
    assert (found.reason, found.source, found.issue) == ("unsubscribed", "tracker",
                                                         "2026-spring")
