"""The sample issue's build, compared with stored expected output.

HTML is compared structurally (elements, attributes, text with whitespace normalised) so a
harmless change of serialisation does not fail the test but any change of content does.
After an intended change, regenerate with:  UPDATE_GOLDEN=1 pytest tests/test_golden.py
That run writes the files and fails (it compared nothing); review `git diff tests/golden`,
then run the tests again without UPDATE_GOLDEN.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lxml.html
import pytest

from newsletter.build import build_issue
from newsletter.project import Project

GOLDEN = Path(os.environ.get("GOLDEN_DIR") or Path(__file__).parent / "golden" / "2026-spring")
REWRITTEN = ("the golden files were rewritten from this build (UPDATE_GOLDEN is set), so "
             "nothing was compared: review `git diff tests/golden`, then run again without it")


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
        pytest.fail(REWRITTEN)
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


def test_regenerating_never_passes(tmp_path: Path) -> None:
    """A run with UPDATE_GOLDEN writes the files and fails: it cannot pass by comparing the
    build with what it has just written."""
    import shutil
    import subprocess
    import sys

    target = tmp_path / "golden"
    shutil.copytree(GOLDEN, target)
    (target / "email.txt").write_text("stale\n", encoding="utf-8")
    env = {**os.environ, "UPDATE_GOLDEN": "1", "GOLDEN_DIR": str(target)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           __file__, "-k", "not regenerating"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout
    assert "the golden files were rewritten from this build" in done.stdout
    assert (target / "email.txt").read_text(encoding="utf-8") == \
        (GOLDEN / "email.txt").read_text(encoding="utf-8")
