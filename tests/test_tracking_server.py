"""The tracking server in-process: redirects, recording, refusals, unsubscribe (SQLite and PG)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa

from newsletter import db
from newsletter.tracking.server import create_app
from newsletter.tracking.tokens import Signer, signer_for


@pytest.fixture
def app(tracking_db):  # type: ignore[no-untyped-def]
    application = create_app(database=tracking_db)
    yield application
    application.close()


class Client:
    """A synchronous front to httpx's in-process ASGI transport (one event loop per request)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.headers = {"user-agent": "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("203.0.113.7", 50123))
            async with httpx.AsyncClient(transport=transport, base_url="http://tracker.test",
                                         headers=self.headers) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(app) -> Client:  # type: ignore[no-untyped-def]
    return Client(app)


@pytest.fixture
def signer(tracking_db):  # type: ignore[no-untyped-def]
    return signer_for(tracking_db)


def stored(app, **where) -> list:  # type: ignore[no-untyped-def]
    app.flush()
    query = sa.select(db.events).order_by(db.events.c.id)
    for name, value in where.items():
        query = query.where(db.events.c[name] == value)
    with app.database.engine.connect() as conn:
        return list(conn.execute(query))


def test_click_redirects_to_registered_url_and_is_recorded(app, client, signer) -> None:
    response = client.get(f"/c/{signer.click('spring', 'a1', pseudonym='p1')}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.org/review"
    [event] = stored(app)
    assert (event.issue, event.kind, event.link_id, event.pseudonym) == ("spring", "click", "a1",
                                                                         "p1")
    assert event.method == "GET" and not event.scanner and event.reasons == ""
    assert event.user_agent.startswith("Mozilla/5.0")
    assert event.ip_hash and "203.0.113" not in event.ip_hash


def test_aggregate_click_records_the_list_and_no_recipient(app, client, signer) -> None:
    response = client.get(f"/c/{signer.click('autumn', 'd1', list_key='schools')}")
    assert response.headers["location"] == "https://example.org/autumn.pdf"
    [event] = stored(app)
    assert (event.pseudonym, event.list_key) == ("", "schools")


def test_responses_carry_privacy_headers(client, signer) -> None:
    for path in (f"/c/{signer.click('spring', 'a1')}", "/c/nonsense", "/v/spring", "/healthz"):
        headers = client.get(path).headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-robots-tag"] == "noindex"


def test_forged_truncated_unknown_and_wrong_tokens_get_404_and_nothing_recorded(
        app, client, signer) -> None:
    good = signer.click("spring", "a1", pseudonym="p1")
    middle = len(good) // 2
    flipped = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1:]
    legacy = "azEfYx9zcHJpbmcfYTEfcjpwMQ.RueMNXFzSD_EkIgV"   # the old format, key b"secret"
    bad = [
        flipped,                                          # changed in transit or forged
        good[:-3],                                        # truncated
        good[:22],                                        # hardly anything left
        Signer({"k9": b"other"}, "k9").click("spring", "a1", pseudonym="p1"),  # another key
        legacy,                                           # old format, another key
        legacy.split(".")[0] + ".AAAAAAAAAAAAAAAA",       # old format, forged signature
        signer.click("spring", "zz"),                     # made right, but no such link
        signer.click("autumn", "e1"),                     # a link of another issue
        signer.click("nope", "a1"),                       # an issue never registered
        signer.unsubscribe("spring", "p1"),               # a token for something else
        "x.y",
        "AAAA",
    ]
    for token in bad:
        response = client.get(f"/c/{token}")
        assert response.status_code == 404, token
        assert "location" not in response.headers
        assert "This link is not valid" in response.text
    assert stored(app) == []


@pytest.mark.parametrize("path", [
    "/c/abc%2Fdef",                       # encoded slash
    "/c//evil.example",                   # protocol-relative destination
    "/c/https://evil.example/",           # a URL where the token goes
    "/c/%2F%2Fevil.example",
    "/c/tok%00en",
    "/v/..%2F..%2Fetc",
])
def test_malformed_paths_get_400(app, client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "not valid" in response.text
    assert stored(app) == []


def test_destination_never_comes_from_the_request(app, client, signer) -> None:
    token = signer.click("spring", "a1")
    for suffix in ("?url=https://evil.example", "?next=//evil.example",
                   "?redirect=https%3A%2F%2Fevil.example"):
        response = client.get(f"/c/{token}{suffix}")
        assert response.headers["location"] == "https://example.org/review"


def test_head_is_redirected_and_recorded_as_a_scanner(app, client, signer) -> None:
    response = client.head(f"/c/{signer.click('spring', 'a1', pseudonym='p2')}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.org/review"
    [event] = stored(app)
    assert event.method == "HEAD" and event.scanner and event.reasons == "head"


def test_honeypot_and_scanner_agents_are_classified_never_blocked(app, client, signer) -> None:
    honeypot = client.get(f"/c/{signer.click('spring', 'hp', pseudonym='p3')}")
    assert honeypot.status_code == 302
    curl = client.get(f"/c/{signer.click('spring', 'e1', pseudonym='p4')}",
                      headers={"user-agent": "curl/8.5.0"})
    assert curl.status_code == 302
    anonymous = client.get(f"/c/{signer.click('spring', 'e1', pseudonym='p5')}",
                           headers={"user-agent": ""})
    assert anonymous.status_code == 302
    reasons = [(e.pseudonym, e.scanner, e.reasons) for e in stored(app)]
    assert reasons == [("p3", True, "honeypot"), ("p4", True, "scanner-agent"),
                       ("p5", True, "no-agent")]


def test_a_scanners_whole_pass_is_marked_once_it_fetches_the_hidden_link(tracking_db,
                                                                          signer) -> None:
    now = [1_780_100_000.0]
    app = create_app(database=tracking_db, clock=lambda: now[0])
    client = Client(app)
    try:
        for link in ("a1", "d1", "e1"):  # a link every few seconds: no burst, could be a person
            assert client.get(f"/c/{signer.click('spring', link, pseudonym='p1')}"
                              ).status_code == 302
            now[0] += 5
        assert client.get("/v/spring").status_code == 200
        assert [e.scanner for e in stored(app)] == [False] * 4
        now[0] += 60  # a minute later, in another batch, the same client fetches the hidden link
        client.get(f"/c/{signer.click('spring', 'hp', pseudonym='p1')}")
        client.get(f"/c/{signer.click('spring', 'a1', pseudonym='p2')}",
                   headers={"user-agent": "Mozilla/5.0 (iPhone) Safari/604.1"})
        assert [(e.pseudonym, e.kind, e.scanner, e.reasons) for e in stored(app)] == [
            ("p1", "click", True, "same-client"), ("p1", "click", True, "same-client"),
            ("p1", "click", True, "same-client"), ("", "view", True, "same-client"),
            ("p1", "click", True, "honeypot"), ("p2", "click", False, "")]
    finally:
        app.close()


def test_web_version_is_served_and_counted_as_a_view(app, client) -> None:
    response = client.get("/v/spring")
    assert response.status_code == 200
    assert "<h1>The spring issue</h1>" in response.text
    assert client.get("/v/never-sent-issue").status_code == 404
    [event] = stored(app)
    assert (event.kind, event.issue, event.pseudonym) == ("view", "spring", "")


def test_open_pixel_only_when_the_issue_turns_opens_on(app, client, signer) -> None:
    response = client.get(f"/o/{signer.open('spring', pseudonym='p1')}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    off = client.get(f"/o/{signer.open('autumn', list_key='schools')}")
    assert off.status_code == 404
    assert [(e.kind, e.pseudonym) for e in stored(app)] == [("open", "p1")]


ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def suppressions(database) -> list:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(db.suppressions.c.address, db.suppressions.c.reason))]


def test_unsubscribe_get_changes_nothing_post_suppresses_idempotently(
        app, client, signer, tracking_db) -> None:
    token = signer.unsubscribe("spring", "p3")
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert "<form method=post>" in page.text
    assert suppressions(tracking_db) == []
    for _ in range(2):  # RFC 8058 one-click, then the button again: same result
        done = client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200
        assert "You are unsubscribed" in done.text
    assert suppressions(tracking_db) == [("cat@police.example", "unsubscribed")]
    assert stored(app) == []  # an unsubscribe is never a click


def test_unsubscribe_refuses_bad_tokens(client, signer, tracking_db) -> None:
    assert client.post(f"/u/{signer.click('spring', 'a1', pseudonym='p1')}").status_code == 404
    assert client.post(f"/u/{signer.unsubscribe('spring', 'nobody')}").status_code == 404
    assert client.get("/u/not-a-token").status_code == 404
    assert client.post("/u/bad%2Ftoken").status_code == 400
    assert suppressions(tracking_db) == []


def test_unsubscribe_finds_the_recipient_only_through_the_issues_ledger(
        client, signer, tracking_db) -> None:
    # The pseudonym is per issue: the tracker looks it up in that issue's deliveries, never
    # in the recipients table and never in another issue's rows.
    with tracking_db.engine.begin() as conn:
        conn.execute(db.deliveries.update().where(db.deliveries.c.issue == "spring",
                                                  db.deliveries.c.recipient_id == 3)
                     .values(pseudonym="Spring3Only"))
    assert client.post(f"/u/{signer.unsubscribe('spring', 'p3')}").status_code == 404
    assert client.post(f"/u/{signer.unsubscribe('autumn', 'Spring3Only')}").status_code == 404
    assert client.post(f"/u/{signer.unsubscribe('draft', 'p1')}").status_code == 404
    assert suppressions(tracking_db) == []
    assert client.post(f"/u/{signer.unsubscribe('spring', 'Spring3Only')}",
                       content=ONE_CLICK, headers=FORM).status_code == 200
    assert suppressions(tracking_db) == [("cat@police.example", "unsubscribed")]


def test_request_limits(client, signer) -> None:
    token = signer.unsubscribe("spring", "p1")
    assert client.post(f"/u/{token}", content=b"x" * 10_000).status_code == 413
    assert client.get("/healthz", headers={"x-big": "y" * 9000}).status_code == 431
    assert client.get("/c/" + "a" * 3000).status_code == 414
    response = client.post(f"/c/{signer.click('spring', 'a1')}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_healthz_and_unknown_paths(client) -> None:
    assert client.get("/healthz").text == "ok 0\n"
    assert client.head("/healthz").status_code == 200
    refused = client.post("/healthz")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    missing = client.get("/nothing-here")
    assert missing.status_code == 404
    assert "Traceback" not in missing.text


def test_healthz_counts_hits_waiting_and_answers_503_over_the_limit(tracking_db, signer,
                                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(database=tracking_db, journal_dir=tmp_path, max_backlog=2)
    try:
        client = Client(app)
        app.writer.replay()  # what the writer thread does first when the server starts
        for link in ("a1", "d1"):
            assert client.get(f"/c/{signer.click('spring', link)}").status_code == 302
        assert client.get("/healthz").text == "ok 2\n"
        client.get(f"/c/{signer.click('spring', 'e1')}")
        full = client.get("/healthz")
        assert full.status_code == 503
        assert full.text == "unwell 3: 3 hits waiting to be stored, over the limit of 2\n"
        app.flush()
        assert client.get("/healthz").text == "ok 0\n"
    finally:
        app.close()


def test_healthz_answers_503_until_an_earlier_run_journal_is_stored(tracking_db,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(database=tracking_db, journal_dir=tmp_path)
    try:
        client = Client(app)
        starting = client.get("/healthz")
        assert starting.status_code == 503
        assert "storing the hits an earlier run left in the journal" in starting.text
        app.writer.replay()
        assert client.get("/healthz").status_code == 200
    finally:
        app.close()


def test_a_database_outage_gets_503_and_a_line_without_values(app, client, signer, tracking_db,
                                                              capfd) -> None:  # type: ignore[no-untyped-def]
    token = signer.click("spring", "a1", pseudonym="p1")
    with tracking_db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE links RENAME TO links_away"))
    try:
        response = client.get(f"/c/{token}")
    finally:
        with tracking_db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE links_away RENAME TO links"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "Please try the link again" in response.text
    err = capfd.readouterr().err
    assert "tracker: database unavailable (" in err
    assert "Traceback" not in err and "spring" not in err and "SELECT" not in err
    assert client.get(f"/c/{token}").status_code == 302


def test_unsubscribed_address_is_left_out_of_the_next_send(client, signer, tracking_db,
                                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    from newsletter.audiences import load_audiences, plan_send
    from newsletter.ledger import suppressed_addresses

    (tmp_path / "audiences.yaml").write_text(
        "lists:\n  police:\n    name: Police\n    members:\n"
        "      - {email: cat@police.example, name: Cat, organisation: County Police}\n"
        "      - {email: dan@police.example, name: Dan, organisation: County Police}\n")
    audiences = load_audiences(tmp_path / "audiences.yaml")
    assert client.post(f"/u/{signer.unsubscribe('spring', 'p3')}", content=ONE_CLICK,
                       headers=FORM).status_code == 200
    plan = plan_send(audiences, ["police"], suppressed_addresses(tracking_db))
    assert [r.address for r in plan.recipients] == ["dan@police.example"]
    assert plan.suppressed == ["cat@police.example"]


def test_web_version_of_an_untracked_issue_is_served_but_not_counted(app, client,
                                                                      tracking_db) -> None:  # type: ignore[no-untyped-def]
    with tracking_db.engine.begin() as conn:
        conn.execute(db.issues.insert().values(
            slug="quiet", subject="Quiet", tracking="off", opens=True, web_html="<h1>Quiet</h1>",
            created_at=0, updated_at=0))
    assert client.get("/v/quiet").text == "<h1>Quiet</h1>"
    assert stored(app) == []


def proxied_request(app, peer: str, forwarded: str | bytes | None,  # type: ignore[no-untyped-def]
                    path: str) -> httpx.Response:
    """One GET through ``behind_proxies`` (trusting 127.0.0.1) from socket address ``peer``."""
    from newsletter.tracking.server import behind_proxies

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=behind_proxies(app, "127.0.0.1"),
                                        client=(peer, 50123))
        headers = {"user-agent": "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"}
        if forwarded is not None:
            headers["x-forwarded-for"] = forwarded
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test",
                                     headers=headers) as http:
            return await http.get(path)

    return asyncio.run(go())


def test_forwarded_for_from_the_trusted_proxy_names_the_client(app, signer) -> None:  # type: ignore[no-untyped-def]
    from newsletter.tracking import classify

    path = f"/c/{signer.click('spring', 'a1', pseudonym='p1')}"
    assert proxied_request(app, "127.0.0.1", "40.107.22.5", path).status_code == 302
    [event] = stored(app)
    assert event.ip_hash == classify.hash_ip(app._ip_key, "40.107.22.5")
    assert event.reasons == "scanner-network"


def test_forged_forwarded_for_from_anyone_else_is_ignored(app, signer) -> None:  # type: ignore[no-untyped-def]
    from newsletter.tracking import classify

    path = f"/c/{signer.click('spring', 'a1', pseudonym='p1')}"
    # A client claiming to be a gateway address (or hiding behind one) is the address it comes from.
    assert proxied_request(app, "203.0.113.7", "40.107.22.5", path).status_code == 302
    [event] = stored(app)
    assert event.ip_hash == classify.hash_ip(app._ip_key, "203.0.113.7")
    assert event.reasons == ""


@pytest.mark.parametrize("forwarded", ["not-an-address", ", ,", "::::::", "1.2.3.4, x" * 50,
                                       "\u00e9t\u00e9".encode("latin-1"), ""])
def test_nothing_in_forwarded_for_stops_a_redirect(app, signer, forwarded: str | bytes) -> None:  # type: ignore[no-untyped-def]
    path = f"/c/{signer.click('spring', 'a1', pseudonym='p1')}"
    for peer in ("127.0.0.1", "203.0.113.7"):
        response = proxied_request(app, peer, forwarded, path)
        assert response.status_code == 302
        assert response.headers["location"] == "https://example.org/review"
    assert len(stored(app)) == 2
