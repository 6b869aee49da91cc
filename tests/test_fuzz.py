"""`check` never crashes: whatever bytes or YAML an editor saves, it exits 0 or 1 with a
message, never a traceback. The same for `audiences check` and its members files.

Property-based (hypothesis). `make test` runs a few seconds of examples (the default
profile, registered in conftest.py); a longer hunt:

    .venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-profile=fuzz
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.cli import main

REPO = Path(__file__).resolve().parent.parent
# The sample issue under a slug of its own (one slug names one issue).
SAMPLE = (REPO / "issues" / "2026-spring.yaml").read_text(encoding="utf-8") \
    .replace("slug: 2026-spring", "slug: fuzz")


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the sample project for every example (hypothesis reruns the test body)."""
    root = tmp_path_factory.mktemp("fuzz") / "project"
    root.mkdir()
    for name in ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
                 "newsletter.yaml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy2(source, root / name)
    return root


def _assert_a_message_not_a_crash(root: Path, *args: str) -> None:
    result = CliRunner().invoke(main, ["--project", str(root), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert result.output.strip(), "no message at all"


def _check(root: Path, issue_text: str | bytes) -> None:
    path = root / "issues" / "fuzz.yaml"
    if isinstance(issue_text, bytes):
        path.write_bytes(issue_text)
    else:
        path.write_text(issue_text, encoding="utf-8", errors="surrogatepass")
    _assert_a_message_not_a_crash(root, "check", str(path))


# Values that have broken parsers before, mixed into the generated structures.
NASTY_TEXT = st.sampled_from([
    "https://www.exam[e.org/", "https://[::1", "http://x:99999/", "mailto:", "javascript:x",
    "images/" + "x" * 300 + ".png", "/etc/passwd", "../../x.png", "audiences.yaml", "images",
    "{{name}}", "{name}", "<b>x</b>", "[a](b c)", "![i](x y)", "2026-02-30", "14:00", "0x1F",
    "null", "~", "yes", "#1d4f91", "", " ", "\u00a0", "\u200b", "a\u0000b", "\ud800",
    "article", "events", "contacts", "resources", "key_messages", "é" * 100,
])
KEYS = st.sampled_from(["slug", "edition", "title", "subject", "preheader", "date", "sender",
                        "greeting", "tracking", "opens", "sections", "footer", "type",
                        "heading", "body", "image", "src", "alt", "width", "button", "text",
                        "url", "events", "resources", "contacts", "messages", "email",
                        "phone", "name", "time", "place", "label", "track", "privacy_url",
                        "<<", "on"]) | st.text(max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | \
    NASTY_TEXT | st.dates()
STRUCTURES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=5)
                          | st.dictionaries(KEYS, children, max_size=6), max_leaves=40)

FUZZ_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])


@FUZZ_SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes(fuzz_project: Path, data: bytes) -> None:
    _check(fuzz_project, data)


@FUZZ_SETTINGS
@given(STRUCTURES)
def test_any_yaml_structure(fuzz_project: Path, data: object) -> None:
    _check(fuzz_project, yaml.safe_dump(data, allow_unicode=True))


# A mostly valid issue is rendered whole (about ten times the work of a broken one).
@settings(FUZZ_SETTINGS, max_examples=max(5, settings.default.max_examples // 4))
@given(st.lists(st.tuples(st.integers(0, 10_000), NASTY_TEXT | st.text(max_size=20)),
                min_size=1, max_size=4))
def test_the_sample_issue_with_values_replaced(fuzz_project: Path,
                                                edits: list[tuple[int, str]]) -> None:
    """The realistic case: a valid issue with a few values typed wrong."""
    data = yaml.safe_load(SAMPLE)
    slots = _slots(data)
    for index, value in edits:
        container, key = slots[index % len(slots)]
        container[key] = value
    _check(fuzz_project, yaml.safe_dump(data, allow_unicode=True))


def _slots(data: object) -> list[tuple[dict | list, object]]:
    """Every (container, key) in a loaded document, for replacing one value."""
    found: list[tuple[dict | list, object]] = []
    items = data.items() if isinstance(data, dict) else \
        enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        found.append((data, key))  # type: ignore[arg-type]
        found.extend(_slots(value))
    return found


@FUZZ_SETTINGS
@given(st.binary(max_size=1000), st.sampled_from(["theme.yaml", "newsletter.yaml"]))
def test_any_theme_or_settings_bytes(fuzz_project: Path, data: bytes, name: str) -> None:
    path = fuzz_project / name
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        _assert_a_message_not_a_crash(fuzz_project, "check", "2026-spring")
    finally:
        path.write_bytes(original)


@FUZZ_SETTINGS
@given(st.binary(max_size=1500) | st.text(max_size=300).map(
    lambda t: ("email,name,organisation\n" + t).encode("utf-8", "surrogatepass")))
def test_any_members_file(fuzz_project: Path, data: bytes) -> None:
    (fuzz_project / "audiences" / "district-councils.csv").write_bytes(data)
    _assert_a_message_not_a_crash(fuzz_project, "audiences", "check")


@FUZZ_SETTINGS
@given(STRUCTURES)
def test_any_audiences_structure(fuzz_project: Path, data: object) -> None:
    path = fuzz_project / "audiences.yaml"
    original = path.read_bytes()
    path.write_text(yaml.safe_dump({"lists": data}, allow_unicode=True), encoding="utf-8",
                    errors="surrogatepass")
    try:
        _assert_a_message_not_a_crash(fuzz_project, "audiences", "check")
    finally:
        path.write_bytes(original)


# --- the inputs that crashed check before (issue 11), each now a located error -----------


@pytest.mark.parametrize(("text", "expected"), [
    ("title: " + "[" * 5000 + "]" * 5000 + "\n",
     "issues/fuzz.yaml:1:47: error: the file nests more than 40 levels deep"),
    ("title:\n" + "".join("  " * i + "a:\n" for i in range(1, 3000)),
     "issues/fuzz.yaml:40:79: error: the file nests more than 40 levels deep"),
    ("- " * 5000 + "x\n", "issues/fuzz.yaml:1:81: error: the file nests more than 40 levels "
                          "deep"),
    (SAMPLE.replace("  - type: article\n    id: welcome", "  - type: {a: b}\n    id: welcome"),
     "issues/fuzz.yaml:21:11: error: section 1's type must be one of article, key_messages, "
     "events, resources, contacts, not a mapping"),
    (SAMPLE.replace("https://www.example.org/prevent/newsletter", "https://www.exam[e.org/"),
     "issues/fuzz.yaml:31:7: error: link 'https://www.exam[e.org/' is not a valid address "
     "(Invalid IPv6 URL)"),
    (SAMPLE.replace("url: https://www.example.org/prevent/advisory-group",
                    "url: https://www.exam[e.org/"),
     "issues/fuzz.yaml:79:12: error: link 'https://www.exam[e.org/' is not a valid address "
     "(Invalid IPv6 URL)"),
    (SAMPLE.replace("images/small-steps.png", "images/" + "x" * 300 + ".png"),
     "issues/fuzz.yaml:101:12: error: image 'images/" + "x" * 73 + "' cannot be used as a "
     "file name: File name too long"),
])
def test_inputs_that_crashed_check_are_located_errors(project: Path, runner, text: str,
                                                      expected: str) -> None:
    (project / "issues" / "fuzz.yaml").write_text(text, encoding="utf-8")
    result = runner.invoke(main, ["check", "issues/fuzz.yaml"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.splitlines()[0] == expected
