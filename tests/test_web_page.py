"""The web version as a public page: card tags, canonical address, indexing, what it links to."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
from helpers import AsgiClient

from newsletter.build import build_issue
from newsletter.db import open_db
from newsletter.ledger import register_issue
from newsletter.project import Project
from newsletter.publish import publish_images
from newsletter.tracking.public import Site
from newsletter.tracking.server import create_app

PUBLIC = "https://news.example.org"


@pytest.fixture
def public_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLIC)
    return project


def built_page(project: Path):  # type: ignore[no-untyped-def]
    """The build's web version, as build/ and the archive keep it (plain links); the tracker
    serves each outlet a copy whose links count for that outlet (tests/test_reach.py)."""
    built = build_issue(project / "issues" / "2026-spring.yaml", Project.load(project))
    return built, lxml.html.document_fromstring(built.files()["web.html"])


def meta(page, attribute: str, name: str) -> str:  # type: ignore[no-untyped-def]
    found = page.xpath(f"//head/meta[@{attribute}=$name]/@content", name=name)
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def test_open_graph_and_twitter_cards_describe_the_issue(public_project: Path) -> None:
    built, page = built_page(public_project)
    photo = next(i for i in built.email_images if i.src == "images/small-steps.png")
    photo_url = f"{PUBLIC}/a/{photo.name}"
    assert meta(page, "property", "og:title") == "Prevent Partner Newsletter: Spring 2026"
    assert meta(page, "property", "og:description") == built.issue.preheader
    assert meta(page, "name", "description") == built.issue.preheader
    assert meta(page, "property", "og:url") == f"{PUBLIC}/v/2026-spring"
    assert meta(page, "property", "og:type") == "article"
    assert meta(page, "property", "og:site_name") == "Prevent Partner Newsletter"
    assert meta(page, "property", "og:locale") == "en_GB"
    assert meta(page, "property", "og:image") == photo_url
    assert meta(page, "property", "og:image:alt") == \
        "Small Steps workshop participants talking in a circle"
    assert (meta(page, "property", "og:image:width"),
            meta(page, "property", "og:image:height")) == ("560", "240")
    assert meta(page, "name", "twitter:card") == "summary_large_image"
    assert meta(page, "name", "twitter:title") == "Prevent Partner Newsletter: Spring 2026"
    assert meta(page, "name", "twitter:description") == built.issue.preheader
    assert meta(page, "name", "twitter:image") == photo_url
    assert page.xpath("//head/link[@rel='canonical']/@href") == [f"{PUBLIC}/v/2026-spring"]
    assert page.xpath("//head/title/text()") == ["Prevent Partner Newsletter: Spring 2026"]


def test_every_address_in_the_head_is_absolute(public_project: Path) -> None:
    _built, page = built_page(public_project)
    urls = page.xpath("//head/link/@href") + [
        element.get("content") for element in page.xpath("//head/meta")
        if (element.get("property") or element.get("name") or "").endswith(
            (":url", ":image"))]
    assert len(urls) == 5
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc == "news.example.org", url


def test_without_an_article_image_the_card_shows_the_logo(public_project: Path,
                                                          sample_issue: Path,
                                                          sample_yaml: str) -> None:
    start = sample_yaml.index("    image:\n")
    end = sample_yaml.index("    body:", start)
    sample_issue.write_text(sample_yaml[:start] + sample_yaml[end:])
    built, page = built_page(public_project)
    logo = next(i for i in built.email_images if i.src == "images/logo.png")
    assert meta(page, "property", "og:image") == f"{PUBLIC}/a/{logo.name}"
    assert meta(page, "property", "og:image:alt") == "Kent and Medway Prevent Partnership"
    assert meta(page, "name", "twitter:card") == "summary"


def test_the_page_links_to_the_archive_and_its_feed(public_project: Path) -> None:
    _built, page = built_page(public_project)
    assert page.xpath("//a[normalize-space()='All issues of Prevent Partner Newsletter']/@href") \
        == [f"{PUBLIC}/v/"]
    assert page.xpath("//head/link[@rel='alternate'][@type='application/atom+xml']/@href") == \
        [f"{PUBLIC}/feed.xml"]


def test_every_link_on_the_page_goes_straight_to_its_destination(public_project: Path) -> None:
    built, page = built_page(public_project)
    hrefs = page.xpath("//body//a/@href")
    assert hrefs
    destinations = {link.url for link in built.links}
    for href in hrefs:
        assert "{{" not in href and "/c/" not in href and "/u/" not in href, href
        assert urlsplit(href).scheme in ("https", "mailto", "tel"), href
        # the archive, and the feedback question's answers (the page itself)
        assert href in destinations or href in (f"{PUBLIC}/v/", f"{PUBLIC}/v/2026-spring"), href


def test_web_versions_stay_out_of_search_engines_by_default(public_project: Path) -> None:
    _built, page = built_page(public_project)
    assert meta(page, "name", "robots") == "noindex"


def test_search_engines_true_lets_them_index(public_project: Path) -> None:
    settings = public_project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "search_engines: true\n")
    _built, page = built_page(public_project)
    assert page.xpath("//head/meta[@name='robots']") == []


def test_search_engines_must_be_true_or_false(public_project: Path, runner) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    settings = public_project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "search_engines: sometimes\n")
    line = len(settings.read_text().splitlines())
    result = runner.invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert (f"newsletter.yaml:{line}:17: error: 'search_engines' must be true or false, not "
            "'sometimes'" in result.output)
    assert "hint: write 'search_engines: true' or 'search_engines: false'" in result.output


def served(project: Path, site: Site):  # type: ignore[no-untyped-def]
    built = build_issue(project / "issues" / "2026-spring.yaml", Project.load(project))
    database = open_db("sqlite:///" + str(project / "newsletter.db"))
    register_issue(database, built)
    publish_images(database, built)
    app = create_app(database=database, site=site)
    try:
        return AsgiClient(app).get("/v/2026-spring"), built
    finally:
        app.close()
        database.close()


def test_the_tracker_serves_the_web_version_as_a_locked_down_page(public_project: Path) -> None:
    response, built = served(public_project, Site(PUBLIC))
    assert response.status_code == 200
    # the page as built, its links' tokens filled in for the outlet (here: direct)
    assert re.sub(r"/(c|f)/[A-Za-z0-9_-]+", r"/\1/TOKEN", response.text) == \
        re.sub(r"/(c|f)/\{\{(click|feedback):[^}]+\}\}", r"/\1/TOKEN", built.web_html)
    csp = response.headers["content-security-policy"]
    assert "img-src 'self' https: data:" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp          # so default-src 'none' forbids every script
    assert response.headers["x-robots-tag"] == "noindex"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_tracker_lets_search_engines_in_when_the_settings_do(public_project: Path) -> None:
    response, _built = served(public_project, Site(PUBLIC, search_engines=True))
    assert response.status_code == 200
    assert "x-robots-tag" not in response.headers
