"""``newsletter share ISSUE``: each outlet's link to the web version, and the share kit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli import load_project

if TYPE_CHECKING:
    from newsletter.outlets import Outlet
    from newsletter.project import Project


@click.command("share")
@click.argument("issue", type=click.Path(path_type=Path))
@click.option("--outlet", "outlet_id", metavar="ID", default=None,
              help="Only this outlet (an id from 'outlets:' in newsletter.yaml).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text to read, json for other programs.")
@click.option("--db", "db", metavar="PATH|URL", default=None,
              help="The tracker's database, where the outlets are registered (default: "
              "NEWSLETTER_DB, then newsletter.db in the project).")
def share(issue: Path, outlet_id: str | None, fmt: str, db: str | None) -> None:
    """Print each outlet's link to the web version of ISSUE and write the share kit.

    Every outlet listed under 'outlets:' in newsletter.yaml gets a link of its own that
    names it (and nobody in particular): views and downloads through it count for that
    outlet. The kit in build/<slug>/share/ has, for each outlet, a short text and an HTML
    snippet to paste into a partner's newsletter or intranet, and for print and screen
    outlets a QR code (PNG and SVG) sized to print.

    Example:

        newsletter share 2026-spring

        newsletter share 2026-spring --outlet gp-leaflets --format json
    """
    from newsletter import outlets as outlet_module
    from newsletter.errors import InvalidIssue, NewsletterError
    from newsletter.images import prepare_images
    from newsletter.load import load_issue
    from newsletter.share import write_kit

    project = load_project(issue)
    listed = project.settings.outlets
    chosen = (outlet_module.find(listed, outlet_id),) if outlet_id is not None else listed
    if not listed:
        raise NewsletterError(
            "the project has no outlets to share the issue through",
            hint="list them under 'outlets:' in newsletter.yaml, e.g. "
            "- {id: kscmp-newsletter, name: KSCMP newsletter, kind: partner-newsletter} "
            "(docs/tracking.md, \"Outlets\")")
    path = project.issue_path(issue)
    loaded, problems = load_issue(path, project)
    if loaded is None:
        raise InvalidIssue(problems)
    images, image_problems = prepare_images(loaded, project.root)
    if any(p.severity == "error" for p in image_problems):
        raise InvalidIssue(problems + image_problems)
    kit = write_kit(loaded, listed, tracking_url=project.tracking_url, root=project.root,
                    build_dir=project.build_dir, images=images,
                    assets_url=project.settings.assets_url)
    for warning in _warnings(project.tracking_url, loaded.tracking):
        click.echo(f"warning: {warning}", err=True)
    registered = _register(project, db, listed)
    shown = [s for s in kit.outlets if s.outlet in chosen]
    if fmt == "json":
        click.echo(json.dumps({"issue": loaded.slug,
                               "outlets": [s.as_json() for s in shown]},
                              indent=2, ensure_ascii=False))
        return
    folder = kit.folder.relative_to(project.root).as_posix() \
        if kit.folder.is_relative_to(project.root) else str(kit.folder)
    click.echo(f"Links to the web version of {loaded.slug}, one per outlet:")
    for s in shown:
        click.echo(f"\n  {s.outlet.name} ({s.outlet.kind}, id {s.outlet.id})")
        click.echo(f"    {s.url}")
        if s.qr_png:
            click.echo(f"    QR code: {s.qr_png} and {Path(s.qr_svg).name}")
    click.echo(f"\nShare kit (a text, an HTML snippet and QR codes per outlet): {folder}/")
    if not registered:
        click.echo("The outlets are registered with the tracker at the next `newsletter "
                   "send` (no database here yet); until then their views count as 'unknown "
                   "outlet'.", err=True)


def _warnings(tracking_url: str, tracking: str) -> list[str]:
    from urllib.parse import urlsplit

    found = []
    host = (urlsplit(tracking_url).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        found.append(f"the links point at {tracking_url}, which only this computer can open: "
                     "set tracking_url in newsletter.yaml (or NEWSLETTER_TRACKING_URL) to the "
                     "tracker's public address before anything is shared or printed")
    if tracking == "off":
        found.append("this issue has 'tracking: off': its web version is served through these "
                     "links, but nothing is counted")
    return found


def _register(project: Project, db: str | None, listed: tuple[Outlet, ...]) -> bool:
    """Register the outlets in the tracker's database when there is one; False when not."""
    from newsletter.db import open_db
    from newsletter.outlets import register
    from newsletter.project import sqlite_path

    url = project.db_url(db, can_create=False)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return False
    database = open_db(url, patience=project.settings.db_wait)
    try:
        with database.engine.begin() as conn:
            register(conn, listed)
    finally:
        database.close()
    return True


COMMANDS = [share]
