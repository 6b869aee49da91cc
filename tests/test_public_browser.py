"""The public pages in a real headless Chromium: images load, responsive, axe finds nothing.

The issue is sent with the tracking URL https://news.example.org, as for real; the browser's
requests to that host are answered by the tracker running on 127.0.0.1 (the host swapped, as a
DNS entry would), so the pages load exactly the URLs recipients' browsers would.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import REPO

from newsletter.cli import main
from newsletter.tracking.public import Site
from newsletter.tracking.server import create_app

PUBLIC = "https://news.example.org"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2, levels A and AA: what the partnership's accessibility statement promises.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture
def site(send_project: Path, http_server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The sample issue sent (maildir) with https tracking, and the local tracker's address."""
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLIC)
    result = CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", "--yes"])
    assert result.exit_code == 0, result.output
    app = create_app("sqlite:///" + str(send_project / "newsletter.db"), site=Site(PUBLIC))
    yield http_server(app)
    app.close()


@pytest.fixture
def page(chromium, site: str):  # type: ignore[no-untyped-def]
    # bypass_csp: only so the test can inject axe-core; the pages allow no script at all.
    context = chromium.new_context(bypass_csp=True)
    served: list[str] = []

    def from_local_tracker(route) -> None:  # type: ignore[no-untyped-def]
        request = route.request
        local = site + request.url[len(PUBLIC):]
        reply = httpx.request(request.method, local, headers={"user-agent": "test"})
        served.append(request.url)
        route.fulfill(status=reply.status_code, headers=dict(reply.headers), body=reply.content)

    context.route(f"{PUBLIC}/**", from_local_tracker)
    page = context.new_page()
    page.served = served  # type: ignore[attr-defined]
    yield page
    context.close()


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make test` (it runs npm ci for axe-core)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})
        .then(r => r.violations.map(v => v.id + ': ' + v.help + ' ('
            + v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))""", WCAG_AA)
    return result


def test_the_web_version_loads_every_image(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{PUBLIC}/v/2026-spring")
    images = page.evaluate("[...document.images].map(i => [i.currentSrc, i.naturalWidth])")
    assert len(images) == 2
    for source, width in images:
        assert source.startswith(f"{PUBLIC}/a/") and width > 0, source
    assert all(url.startswith(f"{PUBLIC}/") for url in page.served)


def test_the_web_version_has_no_wcag_violation(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{PUBLIC}/v/2026-spring")
    assert axe_violations(page) == []


@pytest.mark.parametrize("width", [320, 375, 768, 1280])
def test_the_web_version_fits_every_screen(page, width: int, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{PUBLIC}/v/2026-spring")
    page.screenshot(path=str(artifacts / f"web-{width}px.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px of horizontal scroll at {width}px"


def test_the_archive_has_no_wcag_violation(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{PUBLIC}/")
    assert page.locator("ol.issues li").count() == 1
    assert axe_violations(page) == []


@pytest.mark.parametrize("width", [320, 1280])
def test_the_archive_fits_every_screen(page, width: int) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{PUBLIC}/v/")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow}px of horizontal scroll at {width}px"


def test_the_archive_leads_to_the_web_version(page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{PUBLIC}/")
    page.get_by_role("link", name="Prevent Partner Newsletter: Spring 2026").click()
    page.wait_for_url(f"{PUBLIC}/v/2026-spring")
    page.get_by_role("link", name="All issues of Prevent Partner Newsletter").click()
    page.wait_for_url(f"{PUBLIC}/v/")
