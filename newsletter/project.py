"""Where things are: the project folder and its settings.

Settings come from ``newsletter.yaml`` at the project root and the environment, read once by
:mod:`newsletter.settings`; this module only knows where the project's files are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.settings import SETTINGS_FILE, Settings


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``newsletter.yaml`` or ``issues/``.

    Falls back to ``start`` itself so commands work in an empty folder too.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file() or (folder / "issues").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class Project:
    """The project folder and the settings read for it."""

    root: Path
    settings: Settings

    @classmethod
    def load(cls, start: Path | None = None) -> Project:
        """Find the project around ``start`` (default: the current folder) and read its settings."""
        root = find_root(start)
        return cls(root=root, settings=Settings.load(root))

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def theme_path(self) -> Path:
        return self.root / self.settings.theme

    @property
    def audiences_path(self) -> Path:
        return self.root / "audiences.yaml"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def tracking_url(self) -> str:
        """Base URL of the tracker: ``NEWSLETTER_TRACKING_URL``, then settings, then default."""
        return self.settings.tracking_url

    @property
    def list_id_domain(self) -> str:
        """Domain used in List-Id and Message-ID headers."""
        return self.settings.list_id_domain

    @property
    def unsubscribe_mailto(self) -> str:
        """Address for the mailto: half of List-Unsubscribe."""
        return self.settings.unsubscribe_mailto

    def issue_path(self, issue: str | Path) -> Path:
        """ISSUE as given on a command line: a path, or a bare slug meaning issues/<slug>.yaml.

        A path is returned as given even when missing, so the loader reports it with its
        location; an unknown slug is an error that lists the issues there are.
        """
        path = Path(issue)
        if path.exists() or path.suffix or len(path.parts) > 1:
            return path
        candidate = self.issues_dir / f"{path}.yaml"
        if candidate.is_file():
            return candidate
        from newsletter.errors import NewsletterError

        known = sorted(p.stem for p in self.issues_dir.glob("*.yaml")) \
            if self.issues_dir.is_dir() else []
        raise NewsletterError(f"no issue {str(issue)!r}: neither a file nor issues/{issue}.yaml",
                              hint="the issues are: " + (", ".join(known) or "(none)"))

    def db_url(self, override: str | None = None) -> str:
        """The database: ``--db``, then ``NEWSLETTER_DB``, then ``newsletter.db`` in the root.

        A plain path means a SQLite file; ``postgresql://`` URLs are passed through.
        """
        value = override or self.settings.database or str(self.root / "newsletter.db")
        if "://" in value:
            return value
        return "sqlite:///" + str(Path(value).resolve())
