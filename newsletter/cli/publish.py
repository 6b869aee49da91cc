"""``newsletter publish``: put an issue's images where recipients' mail can load them."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.build import _checked_build
from newsletter.cli.options import db_option
from newsletter.project import Project


@click.command()
@click.argument("issue", type=click.Path(path_type=Path))
@db_option
def publish(issue: Path, db: str | None) -> None:
    """Publish ISSUE's images: sized for email and stored in the database for the tracker.

    `send` does this itself before sending; run it alone to see the images online first, or,
    when assets_url names a CDN, to get the list of files to upload there.

    Example:

        newsletter publish 2026-spring
    """
    from newsletter.build import write_build
    from newsletter.db import open_db
    from newsletter.publish import publish_images

    project, _path, built = _checked_build(issue, "not published; fix the errors above")
    target = write_build(built, project.build_dir)
    database = open_db(project.db_url(db))
    try:
        published = publish_images(database, built)
    finally:
        database.close()
    slug = built.issue.slug
    if not published:
        click.echo(f"{slug} shows no images from the project folder: nothing to publish.")
        return
    new = sum(1 for p in published if p.new)
    click.echo(f"Published {len(published)} image(s) of {slug} ({new} new) in the database:")
    width = max(len(p.image.src) for p in published)
    for p in published:
        size = f"{p.image.width}x{p.image.height}"
        if p.image.resized:
            size += f", scaled from {p.image.original_width} px wide"
        click.echo(f"  {p.image.src:<{width}}  {p.url}  ({size})")
    click.echo(f"Originals are kept in {_shown(target / 'images', project)}/, the published "
               f"copies in {_shown(target / 'assets', project)}/.")
    if built.assets_url:
        click.echo(f"\nassets_url is {built.assets_url}: upload these files there, keeping "
                   "their names (`newsletter send` checks each one answers before sending):")
        for p in published:
            click.echo(f"  {_shown(target / 'assets' / p.image.name, project)}  ->  {p.url}")
    else:
        click.echo(f"\nThe tracker serves them at {built.tracking_url}/a/ "
                   "(newsletter track serve); recipients load them from there.")


def _shown(path: Path, project: Project) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


COMMANDS = [publish]
