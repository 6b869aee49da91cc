"""The database a command uses: a typo never starts a second, empty ledger, and a file that
is not a database, a read-only one or an output file that cannot be written is a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.cli import main
from newsletter.db import open_db

TYPO_HINT = ("    hint: check the path given with --db or NEWSLETTER_DB; to start a new, empty "
             "ledger there on purpose, add --create-db\n")
NOT_A_DB_HINT = ("    hint: check --db or NEWSLETTER_DB: it names the ledger `newsletter send` "
                 "made, e.g. newsletter.db\n")
SEND = ["send", "2026-spring", "--to", "schools", "--yes"]


@pytest.fixture
def ledger(send_project: Path) -> Path:
    """The project's ledger, newsletter.db, made by a first send."""
    path = send_project / "newsletter.db"
    open_db("sqlite:///" + str(path)).close()
    return path


def test_a_mistyped_db_is_refused_when_the_project_has_a_ledger(ledger: Path, runner) -> None:
    result = runner.invoke(main, [*SEND, "--db", "newsletter-typo.db"])
    assert result.exit_code == 1
    assert result.output == ("no database at newsletter-typo.db; this project's ledger is "
                             "newsletter.db\n" + TYPO_HINT)
    assert not (ledger.parent / "newsletter-typo.db").exists()
    assert not (ledger.parent / "maildir").exists()


def test_a_mistyped_newsletter_db_variable_is_refused(ledger: Path, runner,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DB", str(ledger.parent / "ledgr.db"))
    result = runner.invoke(main, SEND)
    assert result.exit_code == 1
    assert result.output == ("no database at ledgr.db; this project's ledger is newsletter.db\n"
                             + TYPO_HINT)


def test_any_sqlite_file_in_the_project_counts_as_its_ledger(send_project: Path,
                                                             runner) -> None:
    open_db("sqlite:///" + str(send_project / "partners.sqlite")).close()
    result = runner.invoke(main, [*SEND, "--db", "partner.sqlite"])
    assert result.exit_code == 1
    assert result.output.startswith("no database at partner.sqlite; this project's ledger is "
                                    "partners.sqlite\n")


def test_create_db_starts_a_new_ledger_on_purpose(ledger: Path, runner) -> None:
    result = runner.invoke(main, [*SEND, "--db", "second.db", "--create-db"])
    assert result.exit_code == 0, result.output
    assert (ledger.parent / "second.db").is_file()


def test_the_first_ledger_of_a_project_needs_no_flag(send_project: Path, runner) -> None:
    result = runner.invoke(main, [*SEND, "--db", "ledger.db"])
    assert result.exit_code == 0, result.output
    assert (send_project / "ledger.db").is_file()


def test_report_and_purge_name_the_ledger_without_offering_create(ledger: Path,
                                                                  runner) -> None:
    for args in (["report", "2026-spring", "--db", "typo.db"],
                 ["track", "purge", "--older-than", "1d", "--db", "typo.db"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1
        assert result.output == ("no database at typo.db; this project's ledger is "
                                 "newsletter.db\n    hint: check the path given with --db or "
                                 "NEWSLETTER_DB\n")
    assert not (ledger.parent / "typo.db").exists()


def test_track_serve_refuses_a_mistyped_db(ledger: Path, runner) -> None:
    result = runner.invoke(main, ["track", "serve", "--db", "typo.db", "--port", "1"])
    assert result.exit_code == 1
    assert result.output == ("no database at typo.db; this project's ledger is newsletter.db\n"
                             + TYPO_HINT)


@pytest.mark.parametrize("args", [["report", "2026-spring", "--db", "audiences.yaml"],
                                  [*SEND, "--db", "audiences.yaml"],
                                  ["track", "purge", "--older-than", "1d", "--db",
                                   "audiences.yaml"]])
def test_a_file_that_is_not_a_database(send_project: Path, runner, args: list[str]) -> None:
    before = (send_project / "audiences.yaml").read_bytes()
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert result.output == "audiences.yaml is not a database (it is not a SQLite file)\n" \
        + NOT_A_DB_HINT
    assert (send_project / "audiences.yaml").read_bytes() == before


def test_a_folder_is_not_a_database(send_project: Path, runner) -> None:
    result = runner.invoke(main, [*SEND, "--db", "images", "--create-db"])
    assert result.exit_code == 1
    assert result.output == "cannot use database images: it is a folder\n" + NOT_A_DB_HINT


def test_report_to_a_missing_folder_is_a_message(ledger: Path, runner) -> None:
    result = runner.invoke(main, ["send", "2026-spring", "--to", "schools", "--yes"])
    assert result.exit_code == 0, result.output
    target = ledger.parent / "missing" / "dir" / "out.csv"
    result = runner.invoke(main, ["report", "2026-spring", "-o", str(target)])
    assert result.exit_code == 1
    assert result.output == (f"cannot write {target}: No such file or directory\n    hint: "
                             "check that the folder exists and can be written, or choose "
                             "another file with -o\n")


def _without_root_override(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `newsletter ARGS` as root without the power to ignore file permissions, so a
    read-only file is read-only here too (tests run as root)."""
    newsletter = str(Path(sys.executable).parent / "newsletter")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] \
        if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run([*prefix, newsletter, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def test_send_with_a_read_only_database(ledger: Path) -> None:
    ledger.chmod(0o444)
    try:
        result = _without_root_override(*SEND, cwd=ledger.parent)
    finally:
        ledger.chmod(0o644)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "database newsletter.db cannot be written: newsletter.db is read-only\n    hint: this "
        "command records what it does there: make newsletter.db writable (e.g. chmod u+w "
        "newsletter.db), or point --db or NEWSLETTER_DB at a writable copy\n")
    assert not (ledger.parent / "maildir").exists()


def test_send_with_a_database_in_a_read_only_folder(send_project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ledgers"
    folder.mkdir()
    open_db("sqlite:///" + str(folder / "ledger.db")).close()
    folder.chmod(0o555)
    try:
        result = _without_root_override(*SEND, "--db", str(folder / "ledger.db"),
                                        cwd=send_project)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1
    assert result.stderr == (
        f"database {folder}/ledger.db cannot be written: {folder} is read-only\n    hint: this "
        f"command records what it does there: make {folder} writable (e.g. chmod u+w "
        f"{folder}), or point --db or NEWSLETTER_DB at a writable copy\n")
