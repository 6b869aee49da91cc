"""Shared fixtures. Real parts wherever they can run here: files, SQLite, servers on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "2026-spring"
PROJECT_FILES = ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
                 "newsletter.yaml")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's sample project in a temporary folder, as the working folder."""
    root = tmp_path / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.is_file():
            shutil.copy2(source, root / name)
    monkeypatch.chdir(root)
    for var in ("NEWSLETTER_TRACKING_URL", "NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY",
                "NEWSLETTER_SMTP_URL"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def sample_issue(project: Path) -> Path:
    """The sample issue's YAML inside the temporary project."""
    return project / "issues" / f"{SAMPLE_ISSUE}.yaml"


@pytest.fixture
def runner() -> CliRunner:
    """A click runner for in-process CLI tests."""
    return CliRunner()
