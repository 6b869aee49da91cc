"""The sample issue's build, compared with stored expected output.

HTML is compared structurally (elements, attributes, text with whitespace normalised) so a
harmless change of serialisation does not fail the test but any change of content does.
After an intended change, regenerate with:  UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lxml.html
import pytest

from newsletter.build import build_issue
from newsletter.project import Project

GOLDEN = Path(__file__).parent / "golden" / "2026-spring"


def structure(html: str) -> list[tuple[str, tuple[tuple[str, str], ...], str, str]]:
    """Every element as (tag, sorted attributes, text, tail), whitespace collapsed."""
    root = lxml.html.document_fromstring(html)
    out = []
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else "#comment"
        attrs = tuple(sorted((k, " ".join(v.split())) for k, v in element.attrib.items()))
        out.append((tag, attrs, " ".join((element.text or "").split()),
                    " ".join((element.tail or "").split())))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    repo = Path(__file__).resolve().parent.parent
    with pytest.MonkeyPatch.context() as env:
        env.delenv("NEWSLETTER_TRACKING_URL", raising=False)
        built = build_issue(repo / "issues" / "2026-spring.yaml", Project.load(repo))
    produced = built.files()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, content in produced.items():
            (GOLDEN / name).write_text(content, encoding="utf-8")
    return produced


@pytest.mark.parametrize("name", ["email.html", "web.html"])
def test_html_matches_golden(files: dict[str, str], name: str) -> None:
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    assert structure(files[name]) == structure(expected)


@pytest.mark.parametrize("name", ["email.txt", "email.mjml"])
def test_text_matches_golden(files: dict[str, str], name: str) -> None:
    assert files[name] == (GOLDEN / name).read_text(encoding="utf-8")


def test_links_match_golden(files: dict[str, str]) -> None:
    assert json.loads(files["links.json"]) == json.loads((GOLDEN / "links.json").read_text())
