"""The public archive (/ and /v/) and its Atom feed: what is listed, in what order, and how."""

from __future__ import annotations

from pathlib import Path

import feedparser
import lxml.html
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import AsgiClient

from newsletter import db
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.tracking.public import Site
from newsletter.tracking.server import create_app

PUBLIC = "https://news.example.org"


def add_issue(project: Path, slug: str, date: str, edition: str, extra: str = "") -> None:
    """Another issue like the sample, with its own slug, date and edition."""
    text = (project / "issues" / "2026-spring.yaml").read_text(encoding="utf-8")
    text = (text.replace("slug: 2026-spring", f"slug: {slug}")
            .replace("date: 2026-03-17", f"date: {date}")
            .replace("edition: Spring 2026", f"edition: {edition}")
            .replace("preheader: Prevent is safeguarding.", f"preheader: {edition} news."))
    (project / "issues" / f"{slug}.yaml").write_text(text + extra, encoding="utf-8")


def send(*args: str) -> None:
    result = CliRunner().invoke(main, ["send", *args, "--yes"])
    assert result.exit_code == 0, result.output


@pytest.fixture
def public(send_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLIC)
    return send_project


def client(project: Path, site: Site | None = None) -> AsgiClient:
    app = create_app("sqlite:///" + str(project / "newsletter.db"), site=site or Site(PUBLIC),
                     cache_seconds=0)
    return AsgiClient(app)


@pytest.fixture
def sent(public: Path) -> Path:
    """Three issues sent (spring 2026, autumn 2026, spring 2025), one hidden, one only tested."""
    add_issue(public, "2026-autumn", "2026-09-15", "Autumn 2026")
    add_issue(public, "2025-spring", "2025-03-18", "Spring 2025")
    add_issue(public, "2026-staff", "2026-06-01", "Staff special", "archive: false\n")
    add_issue(public, "2026-draft", "2026-12-01", "Winter 2026")
    for slug in ("2026-spring", "2025-spring", "2026-autumn", "2026-staff"):
        send(slug, "--to", "schools")
    send("2026-draft", "--test", "editor@example.org")
    return public


def archive_items(html: str) -> list[tuple[str, str, str, str]]:
    page = lxml.html.document_fromstring(html)
    return [(item.xpath("string(.//h2/a)"), item.xpath("string(.//h2/a/@href)"),
             item.xpath("string(.//time/@datetime)"), item.xpath("string(.//p[last()])"))
            for item in page.xpath("//ol[@class='issues']/li")]


@pytest.mark.parametrize("path", ["/", "/v/"])
def test_the_archive_lists_every_sent_issue_newest_first(sent: Path, path: str) -> None:
    response = client(sent).get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert archive_items(response.text) == [
        ("Prevent Partner Newsletter: Autumn 2026", f"{PUBLIC}/v/2026-autumn", "2026-09-15",
         "Autumn 2026 news. Our learning event, the Small Steps project, and how to make a "
         "referral."),
        ("Prevent Partner Newsletter: Spring 2026", f"{PUBLIC}/v/2026-spring", "2026-03-17",
         "Prevent is safeguarding. Our learning event, the Small Steps project, and how to make "
         "a referral."),
        ("Prevent Partner Newsletter: Spring 2025", f"{PUBLIC}/v/2025-spring", "2025-03-18",
         "Spring 2025 news. Our learning event, the Small Steps project, and how to make a "
         "referral."),
    ]
    assert "Tuesday 15 September 2026" in response.text


def test_an_issue_with_archive_false_is_left_out_but_still_answers(sent: Path) -> None:
    tracker = client(sent)
    assert "Staff special" not in tracker.get("/").text
    assert "Staff special" not in tracker.get("/feed.xml").text
    assert tracker.get("/v/2026-staff").status_code == 200


def test_an_issue_only_sent_as_a_test_is_not_listed(sent: Path) -> None:
    assert "Winter 2026" not in client(sent).get("/").text


def test_an_issue_nobody_has_received_yet_is_not_listed(public: Path) -> None:
    send("2026-spring", "--to", "schools")
    database = open_db("sqlite:///" + str(public / "newsletter.db"))
    try:
        with database.engine.begin() as conn:
            conn.execute(db.deliveries.update().values(status="deferred"))
    finally:
        database.close()
    assert archive_items(client(public).get("/").text) == []


def test_the_feed_parses_and_lists_the_same_issues(sent: Path) -> None:
    response = client(sent).get("/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Prevent Partner Newsletter"
    assert feed.feed.id == f"{PUBLIC}/v/"
    assert {(link.rel, link.href) for link in feed.feed.links} == {
        ("self", f"{PUBLIC}/feed.xml"), ("alternate", f"{PUBLIC}/v/")}
    assert [(e.title, e.link, e.id) for e in feed.entries] == [
        (f"Prevent Partner Newsletter: {edition}", f"{PUBLIC}/v/{slug}", f"{PUBLIC}/v/{slug}")
        for slug, edition in (("2026-autumn", "Autumn 2026"), ("2026-spring", "Spring 2026"),
                              ("2025-spring", "Spring 2025"))]
    assert feed.entries[1].summary.startswith("Prevent is safeguarding.")
    assert all(e.author == "Kent and Medway Prevent Team" for e in feed.entries)
    assert all(e.updated_parsed and e.published_parsed for e in feed.entries)


def test_an_empty_archive_says_so_and_its_feed_parses(public: Path) -> None:
    tracker = client(public)
    page = tracker.get("/")
    assert page.status_code == 200
    assert "No issue has been published yet." in page.text
    feed = feedparser.parse(tracker.get("/feed.xml").content)
    assert not feed.bozo and feed.entries == []


def test_a_resumed_send_does_not_mark_the_entry_updated(public: Path) -> None:
    send("2026-spring", "--to", "schools")
    url = "sqlite:///" + str(public / "newsletter.db")

    def updated() -> float:
        database = open_db(url)
        try:
            with database.engine.connect() as conn:
                return conn.execute(sa.select(db.archive.c.updated_at)).scalar_one()
        finally:
            database.close()

    first = updated()
    send("2026-spring", "--to", "schools", "--to", "councils")
    assert updated() == first


def test_the_archive_stays_out_of_search_engines_by_default(sent: Path) -> None:
    response = client(sent).get("/")
    assert response.headers["x-robots-tag"] == "noindex"
    page = lxml.html.document_fromstring(response.text)
    assert page.xpath("//meta[@name='robots']/@content") == ["noindex"]
    assert client(sent).get("/feed.xml").headers["x-robots-tag"] == "noindex"


def test_search_engines_true_lets_them_index_the_archive(sent: Path) -> None:
    response = client(sent, Site(PUBLIC, search_engines=True)).get("/")
    assert "x-robots-tag" not in response.headers
    assert lxml.html.document_fromstring(response.text).xpath("//meta[@name='robots']") == []


def test_the_archive_names_itself_and_its_feed(sent: Path) -> None:
    page = lxml.html.document_fromstring(client(sent).get("/").text)
    assert page.xpath("//link[@rel='canonical']/@href") == [f"{PUBLIC}/v/"]
    assert page.xpath("//link[@type='application/atom+xml']/@href") == [f"{PUBLIC}/feed.xml"]
    assert page.xpath("//h1/text()") == ["Prevent Partner Newsletter: all issues"]
    assert page.xpath("//html/@lang") == ["en-GB"]


def test_text_in_the_archive_is_escaped(public: Path) -> None:
    add_issue(public, "2026-odd", "2026-05-01", "May <b>bold</b> & co")
    send("2026-odd", "--to", "schools")
    response = client(public).get("/")
    assert "May &lt;b&gt;bold&lt;/b&gt; &amp; co" in response.text
    assert not feedparser.parse(client(public).get("/feed.xml").content).bozo


@pytest.mark.parametrize("path", ["/v/no-such-issue", "/v/2026-draft-x", "/feed", "/index.html",
                                  "/v/%2E%2E", "/newsletter.db", "/a/%2E%2E/newsletter.db"])
def test_anything_else_is_not_found(sent: Path, path: str) -> None:
    assert client(sent).get(path).status_code in (400, 404)


def test_the_archive_cannot_be_posted_to(sent: Path) -> None:
    tracker = client(sent)
    assert tracker.post("/").status_code == 405
    assert tracker.post("/feed.xml").status_code == 405
