"""``newsletter new``: the next edition's issue file from a commented skeleton."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

from newsletter.errors import NewsletterError
from newsletter.fields import SLUG_RE
from newsletter.project import Project

# Twice a year: spring and autumn editions, published mid-March and mid-September.
EDITIONS = (("spring", 3, 17), ("autumn", 9, 15))

# The skeleton's sample text, which `check` refuses until it is replaced (matched
# case-insensitively, with any line breaks and runs of spaces read as one space).
SKELETON_PLACEHOLDERS = (
    "Write the introduction here",
    "[links](https://www.example.org/) are written in Markdown",
)


def next_edition(today: dt.date) -> tuple[str, str, dt.date]:
    """(slug, edition name, date) of the first edition dated after ``today``."""
    for year in (today.year, today.year + 1):
        for season, month, day in EDITIONS:
            date = dt.date(year, month, day)
            if date > today:
                return f"{year}-{season}", f"{season.capitalize()} {year}", date
    raise AssertionError("unreachable: an edition always follows within a year")


def scaffold_issue(project: Project, *, slug: str | None, day: dt.date | None,
                   today: dt.date) -> Path:
    """Write ``issues/<slug>.yaml`` from the skeleton; refuse to overwrite an existing file."""
    default_slug, edition, date = next_edition(today)
    if day is not None:
        date = day
        season = "spring" if day.month < 7 else "autumn"
        default_slug, edition = f"{day.year}-{season}", f"{season.capitalize()} {day.year}"
    slug = slug or default_slug
    if not SLUG_RE.match(slug):
        raise NewsletterError(f"--slug '{slug}' cannot be used as a file name",
                              hint="use lower-case letters, digits and hyphens, e.g. 2027-spring")
    path = project.issues_dir / f"{slug}.yaml"
    if path.exists():
        raise NewsletterError(f"{path} already exists; not overwriting it",
                              hint="choose another name with --slug, or edit the existing file")
    text = resources.files("newsletter").joinpath("skeleton/issue.yaml").read_text("utf-8")
    text = (text.replace("@SLUG@", slug).replace("@EDITION@", edition)
            .replace("@DATE@", date.isoformat()))
    try:
        project.issues_dir.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot create the file: {exc.strerror}",
                              hint="check the issues/ folder exists and is writable") from exc
    return path
