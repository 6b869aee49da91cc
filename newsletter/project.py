"""Where things are: the project folder and its settings.

Settings come from ``newsletter.yaml`` at the project root and the environment, read once by
:mod:`newsletter.settings`; this module only knows where the project's files are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.settings import SETTINGS_FILE, Settings


def project_around(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding ``newsletter.yaml`` or ``issues/``."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file() or (folder / "issues").is_dir():
            return folder
    return None


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``newsletter.yaml`` or ``issues/``.

    Falls back to ``start`` itself so commands work in an empty folder too.
    """
    here = (start or Path.cwd()).resolve()
    return project_around(here) or here


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

    @classmethod
    def locate(cls, project_dir: Path | None = None,
               issue: str | Path | None = None) -> Project:
        """The project a command works on: ``project_dir`` (``--project``) if given; else the
        one holding the ``issue`` file, so a command run from another folder reads that
        project's theme, images and settings; else the one around the current folder."""
        if project_dir is not None:
            if not project_dir.is_dir():
                from newsletter.errors import NewsletterError

                raise NewsletterError(f"--project {project_dir}: no such folder",
                                      hint="give the folder that holds newsletter.yaml and "
                                      "issues/")
            root = project_dir.resolve()
            return cls(root=root, settings=Settings.load(root))
        if issue is not None and usable_path(issue).is_file():
            around = project_around(Path(issue).resolve().parent)
            if around is not None:
                return cls(root=around, settings=Settings.load(around))
        return cls.load()

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
        path = usable_path(issue)
        if not path.exists() and not path.is_absolute() and (self.root / path).exists():
            return self.root / path      # a path inside a project named with --project
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

    def db_url(self, override: str | None = None, *, create: bool = False,
               can_create: bool = True) -> str:
        """The database: ``--db``, then ``NEWSLETTER_DB``, then ``newsletter.db`` in the root.

        A plain path means a SQLite file; ``postgresql://`` URLs are passed through. A SQLite
        file that does not exist yet is refused while the project has a ledger elsewhere
        (unless ``create``, from ``--create-db``): a mistyped path must never start a second,
        empty ledger and send to everyone again. ``can_create`` says whether the command
        offers ``--create-db`` (the hint names it only then).
        """
        value = override or self.settings.database or str(self.root / DEFAULT_DATABASE)
        path = sqlite_path(value)
        if path is None:
            return value
        if not create and not path.exists():
            elsewhere = [p for p in self.ledgers() if p != path]
            if elsewhere:
                from newsletter.errors import NewsletterError, display_path

                raise NewsletterError(
                    f"no database at {display_path(path)}; this project's ledger is "
                    + ", ".join(display_path(p) for p in elsewhere),
                    hint="check the path given with --db or NEWSLETTER_DB"
                    + ("; to start a new, empty ledger there on purpose, add --create-db"
                       if can_create else ""))
        return "sqlite:///" + str(path)

    def ledgers(self) -> list[Path]:
        """The SQLite databases this project already has: ``newsletter.db``, the one
        ``NEWSLETTER_DB`` names, and any other SQLite file in the project folder."""
        candidates = [self.root / DEFAULT_DATABASE]
        configured = sqlite_path(self.settings.database) if self.settings.database else None
        if configured is not None:
            candidates.append(configured)
        for pattern in ("*.db", "*.sqlite", "*.sqlite3"):
            candidates.extend(sorted(self.root.glob(pattern)))
        found: dict[Path, None] = {}
        for candidate in candidates:
            if is_sqlite_file(candidate):
                found[candidate.resolve()] = None
        return list(found)


def usable_path(value: str | Path) -> Path:
    """``value`` as a path, or a message when the system cannot use it as one (a name too
    long for the file system, a NUL character, a loop of links)."""
    path = Path(value)
    try:
        path.exists()
    except (OSError, ValueError) as exc:
        from newsletter.errors import NewsletterError

        shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
        why = getattr(exc, "strerror", None) or str(exc)
        raise NewsletterError(f"{shown}: cannot be used as a file name: {why}",
                              hint="check the path; issues live in the issues/ folder, "
                              "e.g. issues/2026-spring.yaml") from exc
    return path


DEFAULT_DATABASE = "newsletter.db"
SQLITE_HEADER = b"SQLite format 3\x00"   # the first 16 bytes of every SQLite 3 database


def sqlite_path(value: str) -> Path | None:
    """The file a database setting names when it is a plain SQLite path (or
    ``sqlite:///PATH`` without options); None for other URLs."""
    if value.startswith("sqlite:///") and "?" not in value:
        value = value[len("sqlite:///"):]
    elif "://" in value or value.startswith("sqlite:"):
        return None
    return Path(value).resolve()


def is_sqlite_file(path: Path) -> bool:
    """True when ``path`` is a file that starts like a SQLite 3 database."""
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_HEADER
    except OSError:
        return False
