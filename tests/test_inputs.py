"""The corpus of hostile but realistic inputs in tests/inputs/: each case's command must give
exactly the output and exit code written in its expected.txt, and a refused command must
leave nothing built, sent or recorded (see tests/inputs/README.md)."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main

INPUTS = Path(__file__).resolve().parent / "inputs"
# What a refused command must not have written into the project.
OUTPUTS = ("build", "maildir", "newsletter.db")


@dataclass(frozen=True)
class Case:
    """One folder of tests/inputs/: files laid over the sample project, and what to expect."""

    name: str
    args: list[str]
    exit_code: int
    output: str

    @classmethod
    def read(cls, folder: Path) -> Case:
        lines = (folder / "expected.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        while lines and lines[0].startswith("#"):
            lines.pop(0)
        command, status, *output = lines
        assert command.startswith("$ newsletter "), f"{folder.name}: first line is the command"
        assert status.startswith("exit "), f"{folder.name}: second line is 'exit N'"
        return cls(folder.name, shlex.split(command[len("$ newsletter "):]),
                   int(status.split()[1]), "".join(output))


CASES = sorted(path.name for path in INPUTS.iterdir() if (path / "expected.txt").is_file())


def _overlay(case_folder: Path, project: Path) -> None:
    for source in case_folder.rglob("*"):
        if source.is_file() and source.name not in ("expected.txt", "contains.txt"):
            target = project / source.relative_to(case_folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


@pytest.mark.parametrize("name", CASES)
def test_input(project: Path, name: str) -> None:
    case = Case.read(INPUTS / name)
    _overlay(INPUTS / name, project)
    result = CliRunner().invoke(main, case.args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    output = result.output.replace(str(project), "<project>")
    assert (output, result.exit_code) == (case.output, case.exit_code)
    if case.exit_code != 0:
        assert [name for name in OUTPUTS if (project / name).exists()] == []
    contains = INPUTS / name / "contains.txt"
    for line in contains.read_text(encoding="utf-8").splitlines() if contains.exists() else []:
        file, _, text = line.partition(": ")
        assert text in (project / file).read_text(encoding="utf-8"), f"{file} lacks {text!r}"


def test_the_corpus_is_not_empty() -> None:
    assert len(CASES) >= 30
