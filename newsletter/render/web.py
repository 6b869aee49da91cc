"""The web version as a public page: what a shared link needs in ``<head>``.

The web version is the email's MJML rendered for a browser (see ``render.email``); partners
reshare its address on Facebook, Teams, Viva Engage and intranets, so the page also carries a
description, a canonical address, Open Graph and Twitter card tags (the card those sites show),
a link to the archive's Atom feed, and whether search engines may index it. Every URL in
these tags is absolute: a card is read by a crawler that knows nothing of our host.

The tags go in by code, not through the project's template, so a project with an older
template still gets them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from newsletter import model


@dataclass(frozen=True)
class PageMeta:
    """What ``<head>`` says about the page, every URL absolute."""

    title: str
    description: str
    url: str
    site_name: str
    language: str
    archive_url: str
    feed_url: str
    image_url: str = ""
    image_alt: str = ""
    image_width: int | None = None
    image_height: int | None = None
    large_image: bool = False     # an article picture (a big card), not just the logo
    index: bool = False


def archive_url(tracking_url: str) -> str:
    """The archive of every sent issue, on the tracker."""
    return f"{tracking_url.rstrip('/')}/v/"


def feed_url(tracking_url: str) -> str:
    """The archive's Atom feed, on the tracker."""
    return f"{tracking_url.rstrip('/')}/feed.xml"


def page_title(issue: model.Issue) -> str:
    """The page's title: the newsletter's name and this issue's edition."""
    return f"{issue.title}: {issue.edition}"


def page_meta(issue: model.Issue, *, tracking_url: str, image_src: dict[str, str],
              image_sizes: dict[str, tuple[int, int]], index: bool) -> PageMeta:
    """The head tags' values for ``issue``'s web version.

    The card's picture is the issue's first article image, else the theme's logo, else none.
    ``image_src`` maps an image's ``src`` to its published absolute URL; an image that is
    neither published nor an absolute https/http URL is left out rather than written relative.
    """
    base = tracking_url.rstrip("/")
    picture: tuple[str, str, bool] | None = None
    for section in issue.sections:
        if isinstance(section, model.Article) and section.image is not None:
            picture = (section.image.src, section.image.alt, True)
            break
    if picture is None and issue.theme.logo is not None:
        picture = (issue.theme.logo.src, issue.theme.logo.alt, False)
    image_url = image_alt = ""
    size: tuple[int, int] | None = None
    large = False
    if picture is not None:
        src, image_alt, large = picture
        image_url = image_src.get(src, src if src.startswith(("https://", "http://")) else "")
        size = image_sizes.get(src)
    return PageMeta(
        title=page_title(issue), description=issue.preheader, url=f"{base}/v/{issue.slug}",
        site_name=issue.title, language=issue.language, archive_url=archive_url(base),
        feed_url=feed_url(base), image_url=image_url, image_alt=image_alt if image_url else "",
        image_width=size[0] if size and image_url else None,
        image_height=size[1] if size and image_url else None,
        large_image=large and bool(image_url), index=index)


def head_tags(meta: PageMeta) -> str:
    """The ``<meta>`` and ``<link>`` elements for ``meta``, escaped."""
    def tag(attribute: str, name: str, content: str | int | None) -> str:
        if content in (None, ""):
            return ""
        return (f'<meta {attribute}="{html.escape(name)}" '
                f'content="{html.escape(str(content))}">')

    locale = meta.language.replace("-", "_")
    parts = [
        tag("name", "description", meta.description),
        f'<link rel="canonical" href="{html.escape(meta.url)}">',
        f'<link rel="alternate" type="application/atom+xml" '
        f'title="{html.escape(meta.site_name)}" href="{html.escape(meta.feed_url)}">',
        tag("name", "robots", None if meta.index else "noindex"),
        tag("property", "og:type", "article"),
        tag("property", "og:site_name", meta.site_name),
        tag("property", "og:title", meta.title),
        tag("property", "og:description", meta.description),
        tag("property", "og:url", meta.url),
        tag("property", "og:locale", locale),
        tag("property", "og:image", meta.image_url),
        tag("property", "og:image:alt", meta.image_alt),
        tag("property", "og:image:width", meta.image_width),
        tag("property", "og:image:height", meta.image_height),
        tag("name", "twitter:card", "summary_large_image" if meta.large_image else "summary"),
        tag("name", "twitter:title", meta.title),
        tag("name", "twitter:description", meta.description),
        tag("name", "twitter:image", meta.image_url),
        tag("name", "twitter:image:alt", meta.image_alt),
    ]
    return "".join(part for part in parts if part)


def add_head_tags(page: str, meta: PageMeta) -> str:
    """``page`` (a whole HTML document) with the tags for ``meta`` at the end of ``<head>``."""
    at = page.find("</head>")
    if at < 0:
        raise ValueError("the web version has no </head>")
    return page[:at] + head_tags(meta) + page[at:]
