"""The preview end to end: the real server, the real build, Debian's Chromium (headless).

Screenshots go to test-artifacts/ (gitignored): preview-375.png, preview-800.png,
preview-phone.png, preview-errors.png.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from newsletter.preview import PreviewServer, bind, create_app
from newsletter.project import Project

EDIT_DEADLINE_MS = 2000  # the issue's functional deadline, not a performance figure


@pytest.fixture
def live(project: Path, sample_issue: Path):  # type: ignore[no-untyped-def]
    """The sample issue's preview under real uvicorn on a free port, watching its files."""
    app = create_app(sample_issue, Project.load(project), echo=lambda message, is_error: None)
    assert app.state.preview.snapshot.ok, app.state.preview.snapshot.errors
    server = PreviewServer(app, bind("127.0.0.1", 0)).start()
    assert app.state.preview.watching.wait(10), "the watcher did not start"
    yield server
    server.stop()


@pytest.fixture
def page(chromium, live: PreviewServer):  # type: ignore[no-untyped-def]
    """The preview page, open in a desktop-sized window, with the email loaded."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(live.url)
    tab.wait_for_function(EMAIL_LOADED)
    tab.evaluate("window.__sameDocument = true")  # gone if the page ever reloads itself
    yield tab
    context.close()


EMAIL_LOADED = """() => {
  const frame = document.querySelector('#frame-box iframe[data-active]');
  return frame && frame.contentDocument && frame.contentDocument.readyState === 'complete'
    && frame.contentDocument.body && frame.contentDocument.body.innerText.length > 0;
}"""

EMAIL = "document.querySelector('#frame-box iframe[data-active]').contentDocument"


def email_frame(page):  # type: ignore[no-untyped-def]
    return page.query_selector("#frame-box iframe[data-active]").content_frame()


def test_email_at_375_and_800_px(page, artifacts: Path):  # type: ignore[no-untyped-def]
    frame_box = page.locator("#frame-box")
    assert frame_box.bounding_box()["width"] == 375
    frame = email_frame(page)

    overflow = frame.evaluate("""() => ({
        scroll: document.documentElement.scrollWidth,
        client: document.documentElement.clientWidth,
        wide: Array.from(document.body.querySelectorAll('*'))
          .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
          .map(e => e.tagName + '.' + e.className).slice(0, 5)})""")
    page.screenshot(path=str(artifacts / "preview-375.png"), full_page=True)
    assert overflow["scroll"] <= overflow["client"], overflow
    assert overflow["wide"] == [], overflow

    images = frame.evaluate("""() => Array.from(document.images).map(
        img => ({src: img.getAttribute('src'), alt: img.getAttribute('alt'),
                 loaded: img.complete && img.naturalWidth > 0}))""")
    assert images, "the sample email has images"
    for image in images:
        assert image["alt"] is not None, f"{image['src']} has no alt attribute"
        assert image["loaded"], f"{image['src']} did not load from the preview server"

    page.get_by_label("Desktop (800 px)").check()
    assert frame_box.bounding_box()["width"] == 800
    page.screenshot(path=str(artifacts / "preview-800.png"), full_page=True)
    width = frame.evaluate("document.documentElement.clientWidth")
    assert width <= 800
    assert frame.evaluate("document.documentElement.scrollWidth") <= width


def test_inbox_line_tabs_and_accessible_controls(page, live: PreviewServer):  # type: ignore[no-untyped-def]
    built = live.preview.snapshot.built
    inbox = page.locator("#inbox").inner_text()
    assert built.issue.subject in inbox
    assert built.issue.preheader in inbox
    assert built.issue.sender.email in inbox
    assert page.evaluate("document.documentElement.lang") == "en"

    page.get_by_role("tab", name="Plain text").click()
    assert page.locator("#panel-text").is_visible()
    assert not page.locator("#panel-email").is_visible()
    assert built.text.strip().splitlines()[0] in page.locator("#panel-text").inner_text()

    page.get_by_role("tab", name="Links").click()
    rows = page.locator("#panel-links tbody tr")
    assert rows.count() == len(built.links)
    first = built.links[0]
    assert first.id in rows.first.inner_text() and first.url in rows.first.inner_text()

    page.keyboard.press("ArrowRight")  # the tabs pattern: arrows move between tabs
    assert page.locator("#panel-warnings").is_visible()
    assert page.evaluate("document.activeElement.id") == "tab-warnings"

    unnamed = page.evaluate("""() => [
        ...Array.from(document.querySelectorAll('input, select, textarea'))
           .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
           .map(e => e.outerHTML),
        ...Array.from(document.querySelectorAll('button'))
           .filter(b => !b.innerText.trim()).map(b => b.outerHTML),
        ...Array.from(document.querySelectorAll('iframe'))
           .filter(f => !f.title).map(f => f.outerHTML)]""")
    assert unnamed == []


def test_edit_appears_without_reload_and_keeps_the_scroll_position(  # type: ignore[no-untyped-def]
        page, sample_issue: Path):
    frame = email_frame(page)
    frame.evaluate("window.scrollTo(0, 400)")
    assert frame.evaluate("window.scrollY") == 400
    marker = f"Edited {uuid.uuid4().hex[:8]}"
    source = sample_issue.read_text(encoding="utf-8")
    assert "heading: Prevent is safeguarding\n" in source

    sample_issue.write_text(source.replace("heading: Prevent is safeguarding\n",
                                           f"heading: Prevent is safeguarding {marker}\n"),
                            encoding="utf-8")

    page.wait_for_function(f"() => {EMAIL}.body.innerText.includes({marker!r})",
                           timeout=EDIT_DEADLINE_MS)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded itself"
    assert email_frame(page).evaluate("window.scrollY") == 400
    assert page.locator("#frame-box iframe").count() == 1  # the old frame is gone
    assert marker.lower() in page.locator("#text-part").inner_text().lower()  # text followed


def test_bad_save_shows_errors_then_recovers(page, sample_issue: Path,  # type: ignore[no-untyped-def]
                                             artifacts: Path):
    source = sample_issue.read_text(encoding="utf-8")
    email_frame(page).evaluate("window.scrollTo(0, 300)")

    sample_issue.write_text(source.replace("subject:", "subjekt:", 1), encoding="utf-8")

    alert = page.get_by_role("alert")
    alert.wait_for(timeout=EDIT_DEADLINE_MS)
    text = alert.inner_text()
    assert "The issue has errors" in text
    assert "issues/2026-spring.yaml:" in text
    assert "subjekt" in text or "subject" in text
    assert not page.locator("#frame-box").is_visible()
    page.screenshot(path=str(artifacts / "preview-errors.png"), full_page=True)

    sample_issue.write_text(source, encoding="utf-8")

    alert.wait_for(state="detached", timeout=EDIT_DEADLINE_MS)
    page.wait_for_function(EMAIL_LOADED, timeout=EDIT_DEADLINE_MS)
    # The page marks itself "ok" (which shows the frame) just after the new email has loaded:
    # wait for that step too rather than look in between.
    page.wait_for_selector('body[data-state="ok"]', timeout=EDIT_DEADLINE_MS)
    assert page.locator("#frame-box").is_visible()
    assert page.evaluate("window.__sameDocument") is True
    assert email_frame(page).evaluate("window.scrollY") == 300  # back where the reader was


def test_preview_page_fits_a_phone(chromium, live: PreviewServer, artifacts: Path):  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": 375, "height": 812})
    tab = context.new_page()
    try:
        tab.goto(live.url)
        tab.wait_for_function(EMAIL_LOADED)
        for name in ("Email", "Plain text", "Links", "Warnings"):
            tab.get_by_role("tab", name=name).click()
            widths = tab.evaluate("""() => ({scroll: document.documentElement.scrollWidth,
                                             client: document.documentElement.clientWidth})""")
            assert widths["scroll"] <= widths["client"], (name, widths)
        tab.get_by_role("tab", name="Email").click()
        tab.screenshot(path=str(artifacts / "preview-phone.png"), full_page=True)
    finally:
        context.close()
