"""The remaining messages of the input checks, each asserted exactly (the others are in
test_values, test_gate, test_members_file, test_database_path and tests/inputs/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MINIMAL_ISSUE

from newsletter.cli import main
from newsletter.db import open_db
from newsletter.yamlfile import parse_yaml, read_yaml


def test_a_key_that_is_a_list(tmp_path: Path) -> None:
    data, problems = parse_yaml("? [a, b]\n: value\n", "x.yaml")
    assert data is None
    assert [p.format() for p in problems] == [
        "x.yaml:1:3: error: a key must be a plain word, not a list or mapping\n    hint: write "
        "'key: value', with the key as a single word"]


def test_a_broken_utf16_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xff\xfet\x00i\x00\x00\xd8")       # a lone surrogate at the end
    assert [p.format() for p in read_yaml(path)[1]] == [
        f"{path}:1:1: error: the file is not valid UTF-16 text\n    hint: save the file as "
        "UTF-8 in your editor (File > Save with Encoding)"]


@pytest.mark.parametrize("command", ["check", "build", "preview", "send", "report"])
def test_an_issue_name_too_long_for_the_file_system(project: Path, runner, command: str) -> None:
    name = "issues/" + "x" * 300 + ".yaml"
    result = runner.invoke(main, [command, name, *(["--to", "kscmp"] if command == "send"
                                                   else [])])
    assert result.exit_code == 1
    assert result.output == (f"{name[:77]}...: cannot be used as a file name: File name too "
                             "long\n    hint: check the path; issues live in the issues/ folder, "
                             "e.g. issues/2026-spring.yaml\n")


@pytest.mark.parametrize(("url", "message"), [
    ("https://ex%41mple.org/page", "link 'https://ex%41mple.org/page' has an invalid host name"),
    ("https://www.example.org:80x/", "link 'https://www.example.org:80x/' is not a valid "
                                     "address (Port could not be cast to integer value as '80x')"),
])
def test_link_addresses_that_cannot_work(check_issue, url: str, message: str) -> None:
    result = check_issue(MINIMAL_ISSUE.replace("https://www.example.org/privacy", url))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"issues/draft.yaml:18:16: error: {message}"


def test_an_empty_key_message(check_issue) -> None:
    result = check_issue(MINIMAL_ISSUE.replace("footer:", '  - type: key_messages\n    messages:'
                                               '\n      - ""\nfooter:'))
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == [
        "issues/draft.yaml:17:9: error: key message 1 is empty",
        "    hint: write the message after '- ', or remove the line"]


def test_a_logo_without_alt_text_or_with_a_bad_width(check_issue, project: Path,
                                                     sample_yaml: str) -> None:
    theme = project / "theme.yaml"
    theme.write_text(theme.read_text().replace("  alt: Kent and Medway Prevent Partnership\n", "")
                     .replace("width: 160", "width: 160px"))
    result = check_issue(sample_yaml.replace("slug: 2026-spring", "slug: copy"), "copy.yaml")
    assert result.exit_code == 1
    assert result.output.splitlines()[:4] == [
        "theme.yaml:8:3: error: the theme's logo has no alt text",
        "    hint: add 'alt: ...' naming the organisation, for people who cannot see the logo",
        "theme.yaml:10:10: error: logo width must be a whole number of pixels, 16-600",
        "    hint: e.g. 'width: 160'"]


def test_a_members_file_that_is_not_utf16_after_its_mark(tmp_path: Path) -> None:
    from newsletter.audiences import load_audiences
    from newsletter.errors import InvalidAudiences

    (tmp_path / "m.csv").write_bytes(b"\xff\xfee\x00,\x00\x00\xd8")
    (tmp_path / "audiences.yaml").write_text("lists:\n  a:\n    members_file: m.csv\n")
    with pytest.raises(InvalidAudiences) as info:
        load_audiences(tmp_path / "audiences.yaml")
    assert [p.message for p in info.value.problems] == ["the members file is not UTF-16 text"]


def _without_root_override(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    newsletter = str(Path(sys.executable).parent / "newsletter")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] \
        if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([*prefix, newsletter, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_database_that_cannot_be_read(send_project: Path) -> None:
    ledger = send_project / "newsletter.db"
    open_db("sqlite:///" + str(ledger)).close()
    ledger.chmod(0o000)
    try:
        result = _without_root_override("report", "2026-spring", cwd=send_project)
    finally:
        ledger.chmod(0o644)
    assert (result.returncode, result.stderr) == (1, (
        "cannot read database newsletter.db: Permission denied\n"
        "    hint: check the file's permissions\n"))


def test_report_on_a_ledger_in_a_read_only_folder_without_its_wal_files(tmp_path: Path,
                                                                         send_project: Path
                                                                         ) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    open_db("sqlite:///" + str(folder / "ledger.db")).close()
    assert sorted(p.name for p in folder.iterdir()) == ["ledger.db"]
    folder.chmod(0o555)
    try:
        result = _without_root_override("report", "2026-spring", "--db",
                                        str(folder / "ledger.db"), cwd=send_project)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1
    assert result.stderr == (
        f"cannot open database 'sqlite:///{folder}/ledger.db': attempt to write a readonly "
        "database\n    hint: make the database file and its folder writable\n")
