"""The built email in a real headless Chromium: responsive from 320 to 640 px, images with alt."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.cli import main
from newsletter.tracking.server import create_app


@pytest.fixture
def email_page(project: Path, runner, chromium, http_server,  # type: ignore[no-untyped-def]
               monkeypatch: pytest.MonkeyPatch):
    # The email loads its images from the tracker, as a recipient's mail client does.
    tracker = create_app("sqlite:///" + str(project / "newsletter.db"))
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", http_server(tracker))
    assert runner.invoke(main, ["publish", "2026-spring"]).exit_code == 0
    page = chromium.new_page()
    yield page, (project / "build" / "2026-spring" / "email.html").as_uri()
    page.close()
    tracker.close()


@pytest.mark.parametrize("width", [320, 375, 480, 640, 800])
def test_nothing_overflows_horizontally(email_page, width: int, artifacts: Path) -> None:
    page, url = email_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url)
    page.screenshot(path=str(artifacts / f"email-{width}px.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px of horizontal scroll at {width}px"


def test_images_load_and_have_alt_text(email_page) -> None:
    page, url = email_page
    page.goto(url)
    images = page.evaluate("[...document.images].map(i => [i.alt, i.naturalWidth])")
    assert images and all(alt for alt, _ in images)
    assert all(width > 0 for _, width in images)


def test_body_text_is_at_least_14px_on_a_phone(email_page) -> None:
    page, url = email_page
    page.set_viewport_size({"width": 320, "height": 900})
    page.goto(url)
    sizes = page.evaluate("[...document.querySelectorAll('p, li')].map(e => "
                          "parseFloat(getComputedStyle(e).fontSize))")
    assert min(sizes) >= 14
