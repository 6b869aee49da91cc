"""Unsubscribes scanners cannot make: RFC 8058 one-click and a person's press work at once, a
scanner submitting the page's form changes nothing (the tracker in-process, SQLite and PG).

The fixture (``helpers.seed_tracking``): issue ``spring`` sent to p1..p5; p3 is
cat@police.example.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from newsletter import db
from newsletter.tracking import unsubscribe
from newsletter.tracking.server import create_app
from newsletter.tracking.tokens import signer_for

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
FORM = "application/x-www-form-urlencoded"
PRESSED = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate",
           "sec-fetch-dest": "document", "sec-fetch-user": "?1"}
START = 1_780_100_000.0


class Tracker:
    """The app with a clock the test moves, and a browser-like client at one address."""

    def __init__(self, database) -> None:  # type: ignore[no-untyped-def]
        self.now = START
        self.app = create_app(database=database, clock=lambda: self.now)
        self.token = signer_for(database).unsubscribe("spring", "p3")

    def request(self, method: str, path: str, *, agent: str = BROWSER, ip: str = "203.0.113.7",
                **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(ip, 50123))
            async with httpx.AsyncClient(transport=transport, base_url="http://t.test",
                                         headers={"user-agent": agent}) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(go())

    def page(self, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        return self.request("GET", f"/u/{self.token}", **kwargs)

    def post(self, fields: list[tuple[str, str]] | bytes, headers: dict | None = None,
             content_type: str = FORM, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
        return self.request("POST", f"/u/{self.token}", content=body,
                            headers={"content-type": content_type, **(headers or {})}, **kwargs)


@pytest.fixture
def tracker(tracking_db):  # type: ignore[no-untyped-def]
    t = Tracker(tracking_db)
    yield t
    t.app.close()


def suppressed(database) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    s = db.suppressions
    with database.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(s.c.address, s.c.detail))]


def page_fields(html: str) -> list[tuple[str, str]]:
    """What a script that posts a page's form sends: its inputs, not its button."""
    return re.findall(r'<input type=hidden name=(\w+) value="([^"]*)"', html)


def button(html: str) -> tuple[str, str]:
    [found] = re.findall(r"<button type=submit name=(\w+) value=(\w+)>", html)
    return found


# --- RFC 8058 one-click -------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [FORM, "multipart/form-data; boundary=xyz"])
def test_one_click_from_a_mail_program_unsubscribes_at_once(tracker, tracking_db,  # type: ignore[no-untyped-def]
                                                            content_type: str) -> None:
    body = (b"List-Unsubscribe=One-Click" if content_type == FORM else
            b'--xyz\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            b"One-Click\r\n--xyz--\r\n")
    # a provider's server: no page loaded, no browser headers, often no user agent at all
    done = tracker.post(body, content_type=content_type, agent="", ip="209.85.220.41")
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert suppressed(tracking_db) == [("cat@police.example",
                                        "one-click unsubscribe (RFC 8058)")]


# --- the page's button ----------------------------------------------------------------------

def test_the_page_changes_nothing_and_its_form_is_not_a_one_click_post(tracker,  # type: ignore[no-untyped-def]
                                                                        tracking_db) -> None:
    page = tracker.page()
    assert page.status_code == 200
    assert "List-Unsubscribe" not in page.text
    assert [name for name, _ in page_fields(page.text)] == ["confirm"]
    assert button(page.text) == ("unsubscribe", "yes")
    assert suppressed(tracking_db) == []


def test_a_person_pressing_the_button_is_unsubscribed_at_once(tracker, tracking_db) -> None:  # type: ignore[no-untyped-def]
    page = tracker.page()
    tracker.now += 4  # reading the page
    done = tracker.post([*page_fields(page.text), button(page.text)], PRESSED)
    assert "You are unsubscribed" in done.text
    assert suppressed(tracking_db) == [("cat@police.example",
                                        "the unsubscribe page's button (/u/)")]


def test_a_browser_without_fetch_metadata_pressing_the_button_is_unsubscribed(tracker,  # type: ignore[no-untyped-def]
                                                                               tracking_db) -> None:
    page = tracker.page()
    tracker.now += 3
    assert "You are unsubscribed" in tracker.post([*page_fields(page.text),
                                                   button(page.text)]).text


def test_a_press_too_quick_for_a_person_asks_again_and_the_second_press_counts(  # type: ignore[no-untyped-def]
        tracker, tracking_db) -> None:
    page = tracker.page()
    tracker.now += 0.4
    again = tracker.post([*page_fields(page.text), button(page.text)], PRESSED)
    assert again.status_code == 200 and "Press the button to confirm" in again.text
    assert suppressed(tracking_db) == []
    tracker.now += 2
    done = tracker.post([*page_fields(again.text), button(again.text)], PRESSED)
    assert "You are unsubscribed" in done.text


@pytest.mark.parametrize(("what", "headers"), [
    ("a script posting the form's fields", {}),
    ("a headless browser calling form.submit()", {"sec-fetch-site": "same-origin",
                                                  "sec-fetch-mode": "navigate"}),
])
def test_a_scanner_submitting_the_form_unsubscribes_nobody(tracker, tracking_db, what: str,  # type: ignore[no-untyped-def]
                                                           headers: dict) -> None:
    page = tracker.page(agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36")
    tracker.now += 2  # even one that waits
    answer = tracker.post(page_fields(page.text), headers,
                          agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36")
    assert answer.status_code == 200 and "Press the button to confirm" in answer.text, what
    assert suppressed(tracking_db) == []


def test_a_navigation_no_person_started_is_not_a_press(tracker, tracking_db) -> None:  # type: ignore[no-untyped-def]
    page = tracker.page()
    tracker.now += 2
    headers = {**PRESSED}
    del headers["sec-fetch-user"]
    answer = tracker.post([*page_fields(page.text), button(page.text)], headers)
    assert "Press the button to confirm" in answer.text and suppressed(tracking_db) == []


@pytest.mark.parametrize("agent", ["curl/8.5.0", "", "Mozilla/5.0 HeadlessChrome/126.0"])
def test_a_scanners_agent_pressing_the_button_is_not_a_person(tracker, tracking_db,  # type: ignore[no-untyped-def]
                                                               agent: str) -> None:
    page = tracker.page(agent=agent)
    tracker.now += 2
    answer = tracker.post([*page_fields(page.text), button(page.text)], PRESSED, agent=agent)
    assert "Press the button to confirm" in answer.text and suppressed(tracking_db) == []


def test_an_address_and_browser_the_tracker_judged_a_scanner_cannot_press(tracker,  # type: ignore[no-untyped-def]
                                                                           tracking_db) -> None:
    sandbox = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"
    hidden = signer_for(tracking_db).click("spring", "hp", pseudonym="p3")
    assert tracker.request("GET", f"/c/{hidden}", agent=sandbox,
                           ip="3.8.10.20").status_code == 302  # it fetched the hidden link
    page = tracker.page(agent=sandbox, ip="3.8.10.20")
    tracker.now += 3
    answer = tracker.post([*page_fields(page.text), button(page.text)], PRESSED, agent=sandbox,
                          ip="3.8.10.20")
    assert "Press the button to confirm" in answer.text and suppressed(tracking_db) == []
    # the person, from their own address, the same minute
    page = tracker.page()
    tracker.now += 3
    done = tracker.post([*page_fields(page.text), button(page.text)], PRESSED)
    assert "You are unsubscribed" in done.text


def test_a_press_by_a_browser_judged_a_scanner_minutes_later_is_withdrawn(tracker,  # type: ignore[no-untyped-def]
                                                                          tracking_db) -> None:
    # A sandbox that opens the page first, waits, presses the button with real input events,
    # and only then fetches the message's other links, hidden one included.
    sandbox, ip = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36", "3.8.10.20"
    page = tracker.page(agent=sandbox, ip=ip)
    tracker.now += 3
    done = tracker.post([*page_fields(page.text), button(page.text)], PRESSED, agent=sandbox,
                        ip=ip)
    assert "You are unsubscribed" in done.text  # nothing gave it away yet
    assert suppressed(tracking_db) == [("cat@police.example",
                                        "the unsubscribe page's button (/u/)")]
    tracker.now += 120
    hidden = signer_for(tracking_db).click("spring", "hp", pseudonym="p3")
    tracker.request("GET", f"/c/{hidden}", agent=sandbox, ip=ip)
    tracker.app.flush()
    assert suppressed(tracking_db) == []
    log = db.suppression_log
    with tracking_db.engine.connect() as conn:
        actions = [(r.action, r.note) for r in conn.execute(
            sa.select(log.c.action, log.c.note).order_by(log.c.id))]
    assert actions[-1][0] == "removed" and "judged a link scanner" in actions[-1][1]


def test_a_persons_press_stays_when_someone_else_turns_out_a_scanner(tracker,  # type: ignore[no-untyped-def]
                                                                     tracking_db) -> None:
    page = tracker.page()
    tracker.now += 3
    tracker.post([*page_fields(page.text), button(page.text)], PRESSED)
    hidden = signer_for(tracking_db).click("spring", "hp", pseudonym="p3")
    tracker.now += 60
    tracker.request("GET", f"/c/{hidden}", agent="Mozilla/5.0 (X11) Chrome/126.0",
                    ip="3.8.10.20")
    tracker.app.flush()
    assert suppressed(tracking_db) == [("cat@police.example",
                                        "the unsubscribe page's button (/u/)")]


def test_a_one_click_unsubscribe_is_never_withdrawn(tracker, tracking_db) -> None:  # type: ignore[no-untyped-def]
    tracker.post(b"List-Unsubscribe=One-Click", ip="40.107.1.2", agent="")
    hidden = signer_for(tracking_db).click("spring", "hp", pseudonym="p3")
    tracker.request("GET", f"/c/{hidden}", ip="40.107.1.2", agent="")
    tracker.app.flush()
    assert suppressed(tracking_db) == [("cat@police.example",
                                        "one-click unsubscribe (RFC 8058)")]


@pytest.mark.parametrize("confirm", ["", "nonsense", "1780100000.000.0123456789abcdef"])
def test_a_form_without_a_nonce_we_signed_is_not_a_press(tracker, tracking_db,  # type: ignore[no-untyped-def]
                                                         confirm: str) -> None:
    tracker.now += 60
    answer = tracker.post([("confirm", confirm), ("unsubscribe", "yes")], PRESSED)
    assert "Press the button to confirm" in answer.text and suppressed(tracking_db) == []


def test_a_page_from_another_recipients_link_or_a_day_old_does_not_count(tracker,  # type: ignore[no-untyped-def]
                                                                          tracking_db) -> None:
    other = Tracker(tracking_db)
    other.token = signer_for(tracking_db).unsubscribe("spring", "p1")
    other.now = tracker.now
    try:
        foreign = other.page()
    finally:
        other.app.close()
    page = tracker.page()
    tracker.now += 86400 + 5
    for fields in (page_fields(foreign.text), page_fields(page.text)):
        answer = tracker.post([*fields, ("unsubscribe", "yes")], PRESSED)
        assert "Press the button to confirm" in answer.text
    assert suppressed(tracking_db) == []


@pytest.mark.parametrize("body", [b"\xff\xfe", b"List-Unsubscribe=Nope", b"", b"a=1&a=2"])
def test_any_other_body_shows_the_page_and_changes_nothing(tracker, tracking_db,  # type: ignore[no-untyped-def]
                                                           body: bytes) -> None:
    answer = tracker.post(body)
    assert answer.status_code == 200 and "Press the button to confirm" in answer.text
    assert suppressed(tracking_db) == []


# --- the decision alone ---------------------------------------------------------------------

def test_a_nonce_says_how_old_its_page_is_only_for_its_own_token() -> None:
    key = unsubscribe.form_key(b"secret")
    value = unsubscribe.nonce(key, "tok", 100.0)
    assert unsubscribe.nonce_age(key, "tok", value, 101.5) == pytest.approx(1.5)
    assert unsubscribe.nonce_age(key, "other", value, 101.5) is None
    assert unsubscribe.nonce_age(unsubscribe.form_key(b"other"), "tok", value, 101.5) is None
    assert unsubscribe.nonce_age(key, "tok", "100.000", 101.5) is None


def test_one_click_needs_the_exact_pair_and_no_page_nonce() -> None:
    key = unsubscribe.form_key(b"secret")

    def decide(body: bytes) -> unsubscribe.Decision:
        return unsubscribe.decide(body, {"content-type": FORM}, key=key, token="tok", now=0.0,
                                  scanner=lambda: False)

    assert decide(b"List-Unsubscribe=One-Click") is unsubscribe.Decision.ONE_CLICK
    assert decide(b"List-Unsubscribe=one-click") is unsubscribe.Decision.CONFIRM
    assert decide(b"List-Unsubscribe=One-Click&confirm=x") is unsubscribe.Decision.CONFIRM


def test_the_scanner_question_is_asked_last_and_only_for_a_press() -> None:
    key = unsubscribe.form_key(b"secret")
    asked = []

    def scanner() -> bool:
        asked.append(1)
        return False

    body = urlencode([("confirm", unsubscribe.nonce(key, "tok", 0.0)),
                      ("unsubscribe", "yes")]).encode()
    assert unsubscribe.decide(body, PRESSED, key=key, token="tok", now=0.2,
                              scanner=scanner) is unsubscribe.Decision.CONFIRM
    assert unsubscribe.decide(b"List-Unsubscribe=One-Click", {}, key=key, token="tok",
                              now=0.2, scanner=scanner) is unsubscribe.Decision.ONE_CLICK
    assert asked == []
    assert unsubscribe.decide(body, PRESSED, key=key, token="tok", now=5.0,
                              scanner=scanner) is unsubscribe.Decision.PRESSED
    assert asked == [1]
