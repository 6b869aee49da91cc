"""Reach beyond the inbox: views of the web version and its links, counted per outlet.

The sample issue as ``send`` registers it (the ``published`` fixture, SQLite and PostgreSQL),
visited through each outlet's link on the tracker in-process, and once through the real
tracker (`newsletter track serve`).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from helpers import PUBLISHED_URL, TrackerClient, free_port, start_tracker, stop_group

from newsletter import db
from newsletter.outlets import Outlet, register
from newsletter.tracking.events import Hit, store
from newsletter.tracking.server import create_app
from newsletter.tracking.tokens import signer_for

LEAFLET = "https://www.example.org/prevent/downloads/what-is-prevent.pdf"
SENT_AT = 1_780_000_000.0       # when the published fixture's messages went out


@pytest.fixture
def app(published):  # type: ignore[no-untyped-def]
    database, _built = published
    application = create_app(database=database)
    yield application
    application.close()


def _events(database, **where) -> list:  # type: ignore[no-untyped-def]
    query = sa.select(db.events).order_by(db.events.c.id)
    for name, value in where.items():
        query = query.where(db.events.c[name] == value)
    with database.engine.connect() as conn:
        return list(conn.execute(query))


def _link_to(page: str, label: str, base: str = PUBLISHED_URL) -> str:
    """The path of the tracked link around ``label`` in a served page."""
    found = re.search(r'<a href="' + re.escape(base) + r'(/c/[^"]+)"[^>]*>'
                      + re.escape(label) + "</a>", page)
    assert found, f"no tracked link to {label!r}"
    return found.group(1)


def test_views_count_for_the_outlet_whose_link_was_followed(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    client = TrackerClient(app)
    for path in ("/v/2026-spring/kscmp-newsletter", "/v/2026-spring", "/v/2026-spring/email",
                 "/v/2026-spring/KELSI", "/v/2026-spring/gp-surgeries/"):
        assert client.get(path).status_code == 200, path
    app.flush()
    assert [e.outlet for e in _events(database, kind="view")] == [
        "kscmp-newsletter", "direct", "email", "kelsi", "gp-surgeries"]


@pytest.mark.parametrize("path", [
    "/v/2026-spring/no-such-outlet", "/v/2026-spring/kscmp-newsletter/extra",
    "/v/2026-spring/%3Cscript%3E", "/v/2026-spring/" + "x" * 1500,
    "/v/2026-spring/unknown", "/v/2026-spring/..%2F..%2Fetc",
])
def test_an_unknown_outlet_is_counted_as_such_never_an_error(app, published, path: str) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    response = TrackerClient(app).get(path)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "Was this newsletter useful?" in response.text
    app.flush()
    [view] = _events(database)
    assert (view.kind, view.outlet) == ("view", "unknown")


def test_the_web_versions_links_name_the_outlet_and_nobody(app, published) -> None:  # type: ignore[no-untyped-def]
    database, built = published
    signer = signer_for(database)
    client = TrackerClient(app)
    page = client.get("/v/2026-spring/facebook").text
    tokens = re.findall(re.escape(PUBLISHED_URL) + r"/c/([A-Za-z0-9_-]+)", page)
    tracked = {link.id for link in built.links if link.tracked and link.kind != "honeypot"}
    assert {signer.verify(t).link for t in tokens} == tracked
    for token in tokens:
        data = signer.verify(token)
        assert (data.outlet, data.pseudonym, data.list) == ("facebook", None, None)
    response = client.get(_link_to(page, "What is Prevent? Rapid read leaflet"))
    assert (response.status_code, response.headers["location"]) == (302, LEAFLET)
    app.flush()
    [click] = _events(database, kind="click")
    assert (click.outlet, click.pseudonym, click.list_key) == ("facebook", "", "")


def test_each_outlets_page_is_its_own_card(app, published) -> None:  # type: ignore[no-untyped-def]
    client = TrackerClient(app)
    base = f"{PUBLISHED_URL}/v/2026-spring"
    for path, card in (("/v/2026-spring/facebook", f"{base}/facebook"),
                       ("/v/2026-spring", base), ("/v/2026-spring/nobody", base)):
        page = client.get(path).text
        # a reshared card links back to the outlet's own address; the canonical stays plain
        assert f'<meta property="og:url" content="{card}">' in page
        assert f'<link rel="canonical" href="{base}">' in page


def test_an_outlet_registered_later_counts_without_a_restart(published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    app = create_app(database=database, cache_seconds=0)
    try:
        client = TrackerClient(app)
        client.get("/v/2026-spring/parish-magazine")
        with database.engine.begin() as conn:
            register(conn, [Outlet("parish-magazine", "Parish magazine", "print")])
        client.get("/v/2026-spring/parish-magazine")
        app.flush()
        assert [e.outlet for e in _events(database)] == ["unknown", "parish-magazine"]
    finally:
        app.close()


def test_a_reshared_view_during_a_send_is_not_taken_for_a_gateway(published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    agent = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"
    store(database, [Hit(at=SENT_AT + 5, issue="2026-spring", kind="view", outlet=outlet,
                         user_agent=agent, ip_hash=f"reader-{outlet}")
                     for outlet in ("email", "direct", "knet", "facebook")])
    assert {e.outlet: e.reasons for e in _events(database)} == {
        "email": "after-delivery", "direct": "after-delivery", "knet": "", "facebook": ""}


def test_scanners_through_an_outlet_are_classified_like_the_emails(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    bot = TrackerClient(app, client="198.51.100.20", agent="facebookexternalhit/1.1")
    page = bot.get("/v/2026-spring/facebook").text
    bot.get(_link_to(page, "What is Prevent? Rapid read leaflet"))
    app.flush()
    assert [(e.kind, e.outlet, e.scanner, e.reasons) for e in _events(database)] == [
        ("view", "facebook", True, "scanner-agent"), ("click", "facebook", True,
                                                      "scanner-agent")]


def test_each_outlets_link_through_the_real_tracker(project: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every outlet's link on `newsletter track serve` (granian): the page, then a download
    from it; each counted for its outlet."""
    from newsletter.build import build_issue
    from newsletter.ledger import register_issue
    from newsletter.project import Project

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", base)
    project_settings = Project.load(project)
    built = build_issue(project / "issues" / "2026-spring.yaml", project_settings)
    url = "sqlite:///" + str(tmp_path / "tracker.db")
    database = db.open_db(url)
    try:
        register_issue(database, built)
    finally:
        database.close()
    visits = {o.id: f"/v/2026-spring/{o.id}" for o in project_settings.settings.outlets}
    visits.update({"email": "/v/2026-spring/email", "direct": "/v/2026-spring",
                   "unknown": "/v/2026-spring/a-partner-we-never-listed"})
    process = start_tracker(url, tmp_path, port)
    try:
        with httpx.Client(base_url=base, follow_redirects=False, headers={
                "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}) as http:
            for outlet, path in visits.items():
                page = http.get(path)
                assert page.status_code == 200, outlet
                download = http.get(_link_to(page.text, "What is Prevent? Rapid read leaflet",
                                             base))
                assert (download.status_code, download.headers["location"]) == (302, LEAFLET)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        stop_group(process)
    database = db.open_db(url)
    try:
        leaflet = next(link.id for link in built.links if link.url == LEAFLET)
        seen = {(e.kind, e.outlet, e.link_id) for e in _events(database) if not e.scanner}
        assert len(_events(database)) == 2 * len(visits)
        assert seen == {("view", o, "") for o in visits} | {("click", o, leaflet)
                                                              for o in visits}
    finally:
        database.close()
