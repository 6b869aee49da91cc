"""Publish an issue's public side into the database, for the tracker to serve.

``send`` publishes before it sends anything: the issue's images and its archive entry
(:func:`publish_issue`); ``newsletter publish ISSUE`` does only the images. Images are stored by
content name (:mod:`newsletter.images`), so publishing again, or another issue showing the same
logo, stores nothing twice; nothing published is ever removed, because messages already sent
point at it. The archive lists an entry once its issue has a sent delivery.

When ``assets_url`` names another host (a CDN), the files in ``build/<slug>/assets/`` must be
uploaded there; :func:`missing_images` asks that host for each one before a send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from newsletter import db
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.images import EmailImage, image_url

if TYPE_CHECKING:
    from newsletter.build import BuiltIssue

HEAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class PublishedImage:
    """One image of the issue after publishing."""

    image: EmailImage
    url: str
    new: bool       # stored by this run (not already in the database)


def publish_images(database: Database, built: BuiltIssue) -> list[PublishedImage]:
    """Store ``built``'s local images and record that its issue shows them."""
    slug = built.issue.slug
    images: list[EmailImage] = built.email_images
    if not images:
        return []
    t = db.now()
    with database.engine.begin() as conn:
        have = set(conn.execute(sa.select(db.images.c.name)
                                .where(db.images.c.name.in_([i.name for i in images])))
                   .scalars())
        new = [i for i in images if i.name not in have]
        if new:
            conn.execute(db.insert_ignoring_duplicates(conn, db.images), [
                {"name": i.name, "content_type": i.content_type, "data": i.data,
                 "width": i.width, "height": i.height, "created_at": t} for i in new])
        conn.execute(db.insert_ignoring_duplicates(conn, db.issue_images), [
            {"issue": slug, "name": i.name, "src": i.src, "published_at": t} for i in images])
    return [PublishedImage(i, image_url(i.name, built.tracking_url, built.assets_url),
                           i.name not in have) for i in images]


def publish_issue(database: Database, built: BuiltIssue) -> list[PublishedImage]:
    """Everything public about ``built`` before it is sent: its images and archive entry."""
    images = publish_images(database, built)
    publish_archive_entry(database, built)
    return images


def publish_archive_entry(database: Database, built: BuiltIssue) -> None:
    """Write (or bring up to date) what the archive and feed say about ``built``'s issue.

    ``updated_at`` moves only when something the feed shows changes, so a resumed send does
    not tell feed readers the issue was updated.
    """
    issue = built.issue
    t = db.now()
    values = {"title": issue.title, "edition": issue.edition,
              "issue_date": issue.date.isoformat(), "preheader": issue.preheader,
              "author": issue.sender.name, "language": issue.language,
              "url": f"{built.tracking_url}/v/{issue.slug}", "listed": bool(issue.archive)}
    a = db.archive
    with database.engine.begin() as conn:
        conn.execute(db.insert_ignoring_duplicates(conn, a), [
            {"issue": issue.slug, **values, "published_at": t, "updated_at": t}])
        shown = [a.c[key] != value for key, value in values.items() if key != "listed"]
        conn.execute(a.update().where(a.c.issue == issue.slug, sa.or_(*shown))
                     .values(**values, updated_at=t))
        conn.execute(a.update().where(a.c.issue == issue.slug).values(listed=values["listed"]))


def published_names(database: Database, slug: str) -> set[str]:
    """The image names the tracker serves for issue ``slug``."""
    with database.engine.connect() as conn:
        return set(conn.execute(
            sa.select(db.issue_images.c.name)
            .join(db.images, db.images.c.name == db.issue_images.c.name)
            .where(db.issue_images.c.issue == slug)).scalars())


def missing_images(built: BuiltIssue, timeout: float = HEAD_TIMEOUT) -> list[tuple[str, str]]:
    """(url, what went wrong) for each image URL that does not answer HEAD with 200."""
    import requests

    problems = []
    with requests.Session() as session:
        for url in built.image_urls().values():
            try:
                reply = session.head(url, timeout=timeout, allow_redirects=True)
            except requests.RequestException as exc:
                problems.append((url, f"no answer ({type(exc).__name__})"))
                continue
            if reply.status_code != 200:
                problems.append((url, f"{reply.status_code} {reply.reason}"))
    return problems


def require_images_online(built: BuiltIssue) -> None:
    """Before a send with ``assets_url``: every image must already be where the email says."""
    if not built.assets_url or not built.email_images:
        return
    missing = missing_images(built)
    if missing:
        lines = "\n".join(f"  {url}: {why}" for url, why in missing)
        raise NewsletterError(
            f"{len(missing)} image(s) of {built.issue.slug} are not online at assets_url "
            f"({built.assets_url}), so recipients would see broken images:\n{lines}",
            hint=f"run `newsletter publish {built.issue.slug}` and upload the files it lists, "
            "then send again (or remove assets_url from newsletter.yaml to let the tracker "
            "serve them)")
