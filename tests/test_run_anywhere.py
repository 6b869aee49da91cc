"""Run from anywhere: the project is found from the issue file's own location, or named with
--project, never taken from whatever the current folder happens to be."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.cli import main


@pytest.fixture
def elsewhere(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An unrelated folder (not a project) as the current folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_check_an_issue_by_its_path_from_another_folder(project: Path, elsewhere: Path,
                                                        runner) -> None:
    issue = project / "issues" / "2026-spring.yaml"
    result = runner.invoke(main, ["check", str(issue)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{issue}: OK (0 warning(s), ")


def test_problems_name_the_files_so_they_can_be_found(project: Path, elsewhere: Path,
                                                      runner) -> None:
    (project / "theme.yaml").write_text('brand_colour: "blue"\n')
    issue = project / "issues" / "2026-spring.yaml"
    result = runner.invoke(main, ["check", str(issue)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{project}/theme.yaml:1:15: error: brand_colour 'blue' "
                                    "is not a colour\n")


def test_build_from_another_folder_writes_into_the_project(project: Path, elsewhere: Path,
                                                           runner) -> None:
    result = runner.invoke(main, ["build", str(project / "issues" / "2026-spring.yaml")])
    assert result.exit_code == 0, result.output
    assert (project / "build" / "2026-spring" / "images" / "small-steps.png").is_file()
    assert not (elsewhere / "build").exists()


@pytest.mark.parametrize("issue", ["2026-spring", "issues/2026-spring.yaml"])
def test_project_option_names_the_project(project: Path, elsewhere: Path, runner,
                                          issue: str) -> None:
    result = runner.invoke(main, ["--project", str(project), "check", issue])
    assert result.exit_code == 0, result.output


def test_project_option_wins_over_the_issue_location(project: Path, tmp_path: Path,
                                                     runner) -> None:
    other = tmp_path / "other"
    (other / "issues").mkdir(parents=True)
    (other / "theme.yaml").write_text('text_colour: "#bbbbbb"\n')
    result = runner.invoke(main, ["--project", str(other), "check",
                                  str(project / "issues" / "2026-spring.yaml")])
    assert result.exit_code == 1
    assert "theme.yaml:1:1: error: text_colour on white content area has contrast 1.9:1" \
        in result.output


def test_a_missing_project_folder_is_a_message(elsewhere: Path, runner) -> None:
    result = runner.invoke(main, ["--project", "no-such-folder", "check", "2026-spring"])
    assert result.exit_code == 1
    assert result.output == ("--project no-such-folder: no such folder\n    hint: give the "
                             "folder that holds newsletter.yaml and issues/\n")


def test_an_issue_outside_any_project_uses_the_current_one(project: Path, tmp_path: Path,
                                                           runner) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "draft.yaml").write_text((project / "issues" / "2026-spring.yaml").read_text()
                                      .replace("slug: 2026-spring", "slug: draft"))
    result = runner.invoke(main, ["check", str(loose / "draft.yaml")])
    assert result.exit_code == 0, result.output


def test_new_and_audiences_take_the_project_option(project: Path, elsewhere: Path,
                                                   runner) -> None:
    created = runner.invoke(main, ["--project", str(project), "new", "--slug", "2027-spring"])
    assert created.exit_code == 0, created.output
    assert (project / "issues" / "2027-spring.yaml").is_file()
    checked = runner.invoke(main, ["--project", str(project), "audiences", "check"])
    assert checked.exit_code == 0, checked.output
    assert not list(elsewhere.iterdir())
