"""Settings have one home: newsletter.yaml and the environment, read only by settings.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.errors import ConfigurationError
from newsletter.settings import ENVIRONMENT, Settings

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"
README = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
VARIABLE = re.compile(r"\b((?:NEWSLETTER|MAILGUN|POSTMARK|SENDGRID)_[A-Z0-9_]+|MALLOC_ARENA_MAX)\b")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _readme_table() -> set[str]:
    return {name for line in README.splitlines() if line.startswith("|")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = []
    for path in _sources():
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                readers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert readers == [], "read settings through newsletter.settings, not os.environ"


def test_every_variable_the_code_names_is_in_the_readme_table() -> None:
    named = {name for path in _sources()
             for name in VARIABLE.findall(path.read_text(encoding="utf-8"))}
    missing = sorted(named - _readme_table())
    assert missing == [], "add these to the README's settings table"


def test_every_variable_the_settings_module_reads_is_in_the_readme_table() -> None:
    assert sorted(set(ENVIRONMENT) - _readme_table()) == []


def test_the_environment_wins_over_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "newsletter.yaml").write_text("tracking_url: https://file.example.org\n")
    settings = Settings.load(tmp_path, {"NEWSLETTER_TRACKING_URL": "https://env.example.org/"})
    assert settings.tracking_url == "https://env.example.org"


def test_the_settings_file_is_used_when_the_environment_is_silent(tmp_path: Path) -> None:
    (tmp_path / "newsletter.yaml").write_text("tracking_url: https://file.example.org\n")
    assert Settings.load(tmp_path, {}).tracking_url == "https://file.example.org"


def test_secrets_are_not_shown_in_the_settings_repr(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, {"NEWSLETTER_SECRET_KEY": "k1:do-not-print"})
    assert "do-not-print" not in repr(settings)


@pytest.mark.parametrize("value", ["soon", "-5", "0"])
def test_a_send_lease_that_is_not_seconds_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(tmp_path, {"NEWSLETTER_SEND_LEASE": value})
    assert caught.value.format() == (
        f"the environment variable NEWSLETTER_SEND_LEASE={value!r} is not a number of seconds"
        "\n    hint: set it to a positive number, e.g. NEWSLETTER_SEND_LEASE=900, or unset it")


def test_a_mistyped_scanner_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(tmp_path, {"NEWSLETTER_SCANNER_NETWORKS": "198.51.100.0/24,198.51.100"})
    assert caught.value.message == "NEWSLETTER_SCANNER_NETWORKS: '198.51.100' is not a network"


def test_a_bad_setting_in_the_environment_is_a_message_from_any_command(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SEND_LEASE", "soon")
    result = CliRunner().invoke(main, ["check", "issues/2026-spring.yaml"])
    assert result.exit_code == 1
    assert "NEWSLETTER_SEND_LEASE='soon' is not a number of seconds" in result.output


@pytest.mark.parametrize(("value", "parts"), [
    ('"Kent Prevent Newsletter <prevent-newsletter.example.org>"',
     ("Kent Prevent Newsletter", "prevent-newsletter.example.org")),
    ('"<prevent-newsletter.example.org>"', ("", "prevent-newsletter.example.org")),
    ("prevent-newsletter.example.org", ("", "prevent-newsletter.example.org")),
])
def test_list_id_is_a_name_and_an_id(tmp_path: Path, value: str,
                                     parts: tuple[str, str]) -> None:
    (tmp_path / "newsletter.yaml").write_text(f"list_id: {value}\n")
    assert Settings.load(tmp_path, {}).list_id_parts == parts


def test_without_list_id_the_list_id_domain_is_the_id(tmp_path: Path) -> None:
    (tmp_path / "newsletter.yaml").write_text("list_id_domain: news.example.org\n")
    assert Settings.load(tmp_path, {}).list_id_parts == ("", "news.example.org")


@pytest.mark.parametrize("value", ['"Kent Prevent Newsletter"', '"News <not an id>"',
                                   "2026-spring"])
def test_a_list_id_that_is_not_one_is_refused_where_it_is_written(
        project: Path, value: str) -> None:
    (project / "newsletter.yaml").write_text(f"theme: theme.yaml\nlist_id: {value}\n")
    result = CliRunner().invoke(main, ["check", "issues/2026-spring.yaml"])
    assert result.exit_code == 1
    shown = value.strip('"')
    assert (f"newsletter.yaml:2:10: error: list_id {shown!r} is not a name and a list id\n"
            "    hint: write the newsletter's name and a lasting id in angle brackets, e.g. "
            'list_id: "Kent and Medway Prevent Partner Newsletter '
            '<prevent-newsletter.example.org>" (the id: a word, a dot and your domain; '
            'letters, digits, "-" and "_")') in result.output
