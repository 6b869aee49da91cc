"""What the rendered email and web version contain: accessibility, links, placeholders."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.build import build_issue
from newsletter.links import PLACEHOLDER_RE, click_id
from newsletter.project import Project
from newsletter.render.colour import contrast_ratio
from newsletter.render.markdown import render_body


class _Outline(HTMLParser):
    """Collects headings, images and links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.html_lang = a.get("lang")
        elif re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a.get("href") or "")


def outline(html: str) -> _Outline:
    parser = _Outline()
    parser.feed(html)
    return parser


@pytest.fixture
def built(project: Path, sample_issue: Path):  # type: ignore[no-untyped-def]
    return build_issue(sample_issue, Project.load(project))


def test_email_declares_its_language(built) -> None:
    assert outline(built.html).html_lang == "en-GB"
    assert outline(built.web_html).html_lang == "en-GB"


def test_email_has_the_preheader(built) -> None:
    assert built.issue.preheader in built.html
    # The web version's page shows no hidden preview text (its <head> describes the page
    # with the preheader: tests/test_web_page.py).
    body = built.web_html[built.web_html.index("<body"):]
    assert built.issue.preheader not in body


def test_every_image_has_alt_text(built) -> None:
    images = outline(built.html).images
    assert len(images) == 2
    assert all(img.get("alt") for img in images)


def test_headings_are_in_order(built) -> None:
    levels = outline(built.html).headings
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False))


def test_email_is_responsive(built) -> None:
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in built.html
    assert "@media only screen and (min-width:480px)" in built.html
    assert "max-width:640px" in built.html.replace(" ", "")


def test_default_theme_meets_contrast(built) -> None:
    theme = built.issue.theme
    assert contrast_ratio(theme.text_colour, "#ffffff") >= 4.5
    assert contrast_ratio(theme.link_colour, "#ffffff") >= 4.5
    assert contrast_ratio("#ffffff", theme.brand_colour) >= 4.5


def test_tracked_links_point_at_the_tracker(built) -> None:
    hrefs = outline(built.html).links
    tracked = [h for h in hrefs if h.startswith("http://127.0.0.1:8025/c/")]
    assert len(tracked) == sum(1 for link in built.links if link.tracked)
    for href in tracked:
        assert re.fullmatch(r"http://127\.0\.0\.1:8025/c/\{\{click:[a-z2-7]{8}\}\}", href)


def test_mailto_and_tel_stay_as_written(built) -> None:
    hrefs = outline(built.html).links
    assert "mailto:prevent-team@example.org" in hrefs
    assert "tel:03000000000" in hrefs
    assert all(not link.tracked for link in built.links if link.kind == "contact")


def test_unsubscribe_placeholder(built) -> None:
    assert "http://127.0.0.1:8025/u/{{unsubscribe}}" in outline(built.html).links
    assert "Unsubscribe: http://127.0.0.1:8025/u/{{unsubscribe}}" in built.text


def test_text_part_lists_every_tracked_link(built) -> None:
    for link in built.links:
        if link.tracked and link.kind not in ("honeypot",):
            assert f"/c/{{{{click:{link.id}}}}}" in built.text, link
    assert "Links in this newsletter:" in built.text
    for section in built.issue.sections:
        assert section.heading.upper() in built.text


def test_web_version_has_nothing_per_recipient(built) -> None:
    # the tracker fills its links and feedback answers per outlet, never per person
    assert {m.group(1) for m in PLACEHOLDER_RE.finditer(built.web_html)} == {"click",
                                                                             "feedback"}


def test_web_version_file_has_plain_links(built) -> None:
    web = built.files()["web.html"]
    assert not PLACEHOLDER_RE.search(web)
    assert "https://www.gov.uk/government/publications/prevent-duty-guidance" in web
    assert "/c/" not in web
    # the feedback answers lead to the web version on the tracker, where they count
    for answer in ("Yes", "No"):
        assert f'<a href="http://127.0.0.1:8025/v/2026-spring">{answer}</a>' in web


def test_tracking_url_from_environment(project: Path, sample_issue: Path, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://t.example.org/")
    built = build_issue(sample_issue, Project.load(project))
    assert "https://t.example.org/c/{{click:" in built.html


def test_tracking_url_from_settings(project: Path, sample_issue: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text().replace("http://127.0.0.1:8025",
                                                     "https://clicks.example.org"))
    built = build_issue(sample_issue, Project.load(project))
    assert "https://clicks.example.org/c/{{click:" in built.html


def test_tracking_off_for_the_issue(project: Path, sample_issue: Path, sample_yaml: str) -> None:
    untracked = sample_yaml.replace("tracking: aggregate", "tracking: off")
    # the feedback question needs tracking (tests/test_feedback.py)
    untracked = untracked.replace(untracked[untracked.index("feedback:\n"):
                                           untracked.index("footer:\n")], "")
    sample_issue.write_text(untracked)
    built = build_issue(sample_issue, Project.load(project))
    assert "{{click:" not in built.html and "{{click:" not in built.text
    assert not any(link.tracked for link in built.links)
    assert "{{unsubscribe}}" in built.html  # unsubscribing never depends on tracking


def test_tracking_off_for_one_link(project: Path, sample_issue: Path, sample_yaml: str) -> None:
    sample_issue.write_text(sample_yaml.replace(
        "      url: https://www.example.org/prevent/small-steps\n",
        "      url: https://www.example.org/prevent/small-steps\n      track: false\n"))
    built = build_issue(sample_issue, Project.load(project))
    small_steps = [link for link in built.links if link.url.endswith("/small-steps")]
    assert [link.tracked for link in small_steps] == [False]
    assert 'href="https://www.example.org/prevent/small-steps"' in built.html


def test_untracked_links_list(project: Path, sample_issue: Path, sample_yaml: str) -> None:
    sample_issue.write_text(sample_yaml + "untracked_links:\n"
                            "  - https://www.example.org/prevent/privacy\n")
    built = build_issue(sample_issue, Project.load(project))
    privacy = [link for link in built.links if link.kind == "footer"]
    assert privacy and not privacy[0].tracked


def test_preview_render_is_untracked(project: Path, sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project), tracked=False)
    assert "{{click:" not in built.html
    assert 'src="images/logo.png"' in built.html


def test_user_text_is_escaped(project: Path, sample_issue: Path, sample_yaml: str) -> None:
    sample_issue.write_text(sample_yaml.replace("heading: Events",
                                                "heading: Events <script>alert(1)</script>"))
    built = build_issue(sample_issue, Project.load(project))
    assert "<script>alert(1)</script>" not in built.html
    assert "&lt;script&gt;" in built.html


def test_markdown_raw_html_is_not_passed_through() -> None:
    html, _ = render_body("Hi <img src=x onerror=alert(1)>", lambda url, text: (url, 1))
    assert "<img" not in html


def test_greeting_gets_a_name_placeholder(project: Path, sample_issue: Path,
                                          sample_yaml: str) -> None:
    sample_issue.write_text(sample_yaml + "greeting: Dear {name},\n")
    built = build_issue(sample_issue, Project.load(project))
    assert "Dear {{name}}," in built.html and "Dear {{name}}," in built.text


def test_click_ids_are_stable_across_rebuilds(project: Path, sample_issue: Path) -> None:
    first = build_issue(sample_issue, Project.load(project)).links
    second = build_issue(sample_issue, Project.load(project)).links
    assert [link.id for link in first] == [link.id for link in second]


def test_click_id_changes_only_with_its_link(project: Path, sample_issue: Path,
                                            sample_yaml: str) -> None:
    before = {(link.section, link.url): link.id
              for link in build_issue(sample_issue, Project.load(project)).links}
    sample_issue.write_text(sample_yaml.replace("https://www.example.org/prevent/small-steps",
                                                "https://www.example.org/prevent/small-steps-2"))
    after = {(link.section, link.url): link.id
             for link in build_issue(sample_issue, Project.load(project)).links}
    changed = set(before.items()) ^ set(after.items())
    assert {key[1] for key, _ in changed} == {"https://www.example.org/prevent/small-steps",
                                              "https://www.example.org/prevent/small-steps-2"}


def test_click_id_depends_on_section_position_and_url() -> None:
    base = click_id("events", 0, "https://e.example.org")
    assert base == click_id("events", 0, "https://e.example.org")
    assert base != click_id("events", 1, "https://e.example.org")
    assert base != click_id("news", 0, "https://e.example.org")
    assert base != click_id("events", 0, "https://f.example.org")


def test_preview_render_has_no_unsubscribe_placeholder(project: Path, sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project), tracked=False)
    assert not PLACEHOLDER_RE.search(built.html)
    assert not PLACEHOLDER_RE.search(built.text)
