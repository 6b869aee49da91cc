"""The share kit's SVG QR code, drawn by Chromium and read back by zbarimg.

Apart from test_share.py: playwright's sync API holds an event loop for the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import zbarimg

from newsletter.cli import main


@pytest.fixture
def public(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://news.example.org")
    return project


def _json(runner, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_svg_qr_code_reads_back_in_a_browser(public: Path, runner, chromium,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    data = _json(runner, "--outlet", "gp-surgeries")
    [outlet] = data["outlets"]
    svg = (public / outlet["qr_svg"]).read_text(encoding="utf-8")
    page = chromium.new_page(device_scale_factor=4)
    try:
        # the SVG drawn as a page draws it: in a document, at its own size in millimetres
        page.set_content("<!doctype html><body style='margin:0;background:#fff'>"
                         + svg[svg.index("<svg"):] + "</body>")
        page.locator("svg").screenshot(path=str(tmp_path / "svg.png"))
    finally:
        page.close()
    assert zbarimg(tmp_path / "svg.png") == outlet["url"]
