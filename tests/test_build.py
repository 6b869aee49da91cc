"""`newsletter build` and `newsletter new`: files written, determinism, offline, atomicity."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pytest

from newsletter.cli import main
from newsletter.scaffold import next_edition

FILES = {"email.html", "email.mjml", "email.txt", "web.html", "links.json", "images", "assets",
         "share"}


def test_build_writes_every_file(project: Path, runner) -> None:
    result = runner.invoke(main, ["build", "issues/2026-spring.yaml"])
    assert result.exit_code == 0, result.output
    out = project / "build" / "2026-spring"
    assert {p.name for p in out.iterdir()} == FILES
    assert (out / "images" / "logo.png").is_file()
    assert len(list((out / "assets").glob("*.png"))) == 2
    assert f"Open it: {(out / 'email.html').as_uri()}" in result.output


def test_build_out_option(project: Path, runner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["build", "issues/2026-spring.yaml", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "2026-spring" / "email.html").is_file()


def test_two_builds_are_byte_identical(project: Path, runner, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert runner.invoke(main, ["build", "2026-spring", "--out", str(tmp_path / name)]) \
            .exit_code == 0
    first, second = tmp_path / "a" / "2026-spring", tmp_path / "b" / "2026-spring"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:   # the share kit's QR codes included
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_build_is_offline(project: Path, runner, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the build tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    result = runner.invoke(main, ["build", "issues/2026-spring.yaml"])
    assert result.exit_code == 0, result.output
    html = (project / "build" / "2026-spring" / "email.html").read_text()
    assert "fonts.googleapis.com" not in html


def test_invalid_issue_is_not_built(project: Path, runner, sample_yaml: str) -> None:
    (project / "issues" / "bad.yaml").write_text(sample_yaml.replace("subject:", "subjct:"))
    result = runner.invoke(main, ["build", "issues/bad.yaml"])
    assert result.exit_code == 1
    assert "unknown key 'subjct'" in result.output
    assert "not built; fix the errors above" in result.output
    assert not (project / "build").exists()


def test_failed_rebuild_keeps_the_previous_build(project: Path, runner, sample_yaml: str) -> None:
    assert runner.invoke(main, ["build", "2026-spring"]).exit_code == 0
    before = (project / "build" / "2026-spring" / "email.html").read_bytes()
    (project / "templates" / "email.mjml.j2").write_text("{{ broken ")
    result = runner.invoke(main, ["build", "2026-spring"])
    assert result.exit_code == 1
    assert "templates/: rendering failed" in result.output
    assert (project / "build" / "2026-spring" / "email.html").read_bytes() == before
    assert sorted(p.name for p in (project / "build").iterdir()) == ["2026-spring"]


def test_unwritable_output_folder(project: Path, runner) -> None:
    (project / "blocker").write_text("a file, not a folder")
    result = runner.invoke(main, ["build", "2026-spring", "--out", "blocker/out"])
    assert result.exit_code == 1
    assert "blocker/out: cannot create the output folder" in result.output
    assert "choose another folder with --out" in result.output


def test_missing_template(project: Path, runner) -> None:
    (project / "templates" / "email.mjml.j2").unlink()
    result = runner.invoke(main, ["build", "2026-spring"])
    assert result.exit_code == 1
    assert "email.mjml.j2: template not found" in result.output


def test_build_open_opens_the_email(project: Path, runner, monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert runner.invoke(main, ["build", "2026-spring", "--open"]).exit_code == 0
    assert opened == [(project / "build" / "2026-spring" / "email.html").as_uri()]


@pytest.mark.parametrize(("today", "expected"), [
    (dt.date(2026, 11, 26), ("2027-spring", "Spring 2027", dt.date(2027, 3, 17))),
    (dt.date(2027, 3, 17), ("2027-autumn", "Autumn 2027", dt.date(2027, 9, 15))),
    (dt.date(2027, 1, 5), ("2027-spring", "Spring 2027", dt.date(2027, 3, 17))),
])
def test_next_edition(today: dt.date, expected: tuple) -> None:
    assert next_edition(today) == expected


def test_new_scaffolds_an_issue_that_check_holds_until_edited(project: Path, runner) -> None:
    result = runner.invoke(main, ["new", "--slug", "2027-spring", "--date", "2027-03-16"])
    assert result.exit_code == 0, result.output
    path = project / "issues" / "2027-spring.yaml"
    text = path.read_text()
    assert "edition: Spring 2027" in text and "date: 2027-03-16" in text
    assert "# " in text  # commented for the editor
    check = runner.invoke(main, ["check", "issues/2027-spring.yaml"])
    assert check.exit_code == 1
    assert check.output == (
        "issues/2027-spring.yaml:25:7: error: skeleton text left in: 'Write the introduction "
        "here'\n    hint: replace the skeleton's sample text with your own before sending\n"
        "issues/2027-spring.yaml:25:7: error: skeleton text left in: '[links](https://www."
        "example.org/) are written in Markdown'\n    hint: replace the skeleton's sample text "
        "with your own before sending\n"
        "issues/2027-spring.yaml: 2 error(s), 0 warning(s); fix the errors above and run check "
        "again\n")
    body = text[text.index("      Write the introduction"):text.index("\n\n  - type: key_messages")]
    path.write_text(text.replace(body, "      Welcome to the spring issue."))
    check = runner.invoke(main, ["check", "issues/2027-spring.yaml"])
    assert check.exit_code == 0, check.output


def test_every_skeleton_placeholder_is_in_the_skeleton() -> None:
    from importlib import resources

    from newsletter.scaffold import SKELETON_PLACEHOLDERS

    skeleton = resources.files("newsletter").joinpath("skeleton/issue.yaml").read_text("utf-8")
    folded = " ".join(skeleton.split())
    assert all(placeholder in folded for placeholder in SKELETON_PLACEHOLDERS)


def test_new_defaults_to_the_next_edition(project: Path, runner) -> None:
    result = runner.invoke(main, ["new"])
    assert result.exit_code == 0, result.output
    slug = next_edition(dt.date.today())[0]
    assert (project / "issues" / f"{slug}.yaml").is_file()


def test_new_refuses_to_overwrite(project: Path, runner) -> None:
    result = runner.invoke(main, ["new", "--slug", "2026-spring"])
    assert result.exit_code == 1
    assert "issues/2026-spring.yaml already exists; not overwriting it" in result.output


def test_new_rejects_a_bad_slug(project: Path, runner) -> None:
    result = runner.invoke(main, ["new", "--slug", "../evil"])
    assert result.exit_code == 1
    assert "--slug '../evil' cannot be used as a file name" in result.output


def test_links_json_records_every_link(project: Path, runner) -> None:
    assert runner.invoke(main, ["build", "2026-spring"]).exit_code == 0
    doc = json.loads((project / "build" / "2026-spring" / "links.json").read_text())
    assert doc["issue"] == "2026-spring" and doc["tracking"] == "aggregate"
    kinds = {link["kind"] for link in doc["links"]}
    assert kinds == {"logo", "article", "cta", "event", "download", "contact", "footer",
                     "honeypot"}
    for link in doc["links"]:
        assert set(link) == {"id", "url", "text", "section", "kind", "tracked"}
    ids = [link["id"] for link in doc["links"]]
    assert len(ids) == len(set(ids))


def test_new_cannot_create_the_file(project: Path, runner) -> None:
    import shutil

    shutil.rmtree(project / "issues")
    (project / "issues").write_text("a file where the folder should be")
    result = runner.invoke(main, ["new", "--slug", "2027-spring"])
    assert result.exit_code == 1
    assert "issues/2027-spring.yaml: cannot create the file" in result.output
    assert "hint: check the issues/ folder exists and is writable" in result.output


def test_template_that_makes_invalid_mjml(project: Path, runner) -> None:
    (project / "templates" / "email.mjml.j2").write_text("<mjml><mj-body><mj-section></mjml>\n")
    result = runner.invoke(main, ["build", "2026-spring"])
    assert result.exit_code == 1
    assert "the email template produced invalid MJML:" in result.output
    assert "hint: check recent edits to templates/email.mjml.j2" in result.output
    assert not (project / "build").exists() or not any((project / "build").iterdir())
