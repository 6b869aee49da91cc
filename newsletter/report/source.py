"""Which issue and which database a report reads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.project import Project


def issue_slug(project: Project, issue: str) -> str:
    """The slug ISSUE names, as every command reads ISSUE (:meth:`Project.issue_path`): the
    slug its file declares, else the file's name.

    A bare slug with no file in ``issues/`` is taken as it is: a sent issue's report needs only
    the database (and says so when the slug was never sent).
    """
    from newsletter.load import slugify
    from newsletter.project import usable_path
    from newsletter.yamlfile import read_yaml

    usable_path(issue)          # a name no file can have is a message, not a slug
    try:
        path = project.issue_path(issue)
    except NewsletterError:
        return issue
    if path.is_dir() and path.name == issue:
        return issue                # a bare slug that is also a folder's name here
    if not path.is_file():
        raise NewsletterError(f"{issue}: no such issue file",
                              hint="give the issue's slug or the path of issues/<slug>.yaml")
    data, problems = read_yaml(path, issue)
    if data is None:
        raise NewsletterError(f"{issue}: cannot read the issue file ({problems[0].message})",
                              hint=f"run: newsletter check {issue}")
    slug = data.get("slug") if isinstance(data, dict) else None
    return str(slug).strip() if slug else slugify(path.stem)


def require_database(url: str) -> None:
    """Refuse a SQLite path that does not exist (opening it would create an empty database)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not Path(url[len(prefix):]).exists():
        raise NewsletterError(
            f"no database at {url[len(prefix):]}: nothing has been sent or tracked from here",
            hint="point --db or NEWSLETTER_DB at the database `newsletter send` used")
