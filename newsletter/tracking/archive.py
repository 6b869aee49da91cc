"""The public archive of sent issues: which are listed, the archive page and the Atom feed.

An issue is listed once at least one of its deliveries is sent (a test copy or a send that
has not reached anyone yet does not list it) and unless its YAML says ``archive: false``.
Newest first: by the issue's date, then by when it was published.
"""

from __future__ import annotations

import datetime as dt
import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import sqlalchemy as sa

from newsletter import db
from newsletter.db import Database

ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class Entry:
    """One listed issue."""

    issue: str
    title: str
    edition: str
    issue_date: dt.date
    preheader: str
    author: str
    language: str
    url: str
    published_at: float
    updated_at: float


def listed(database: Database) -> list[Entry]:
    """Every issue the archive lists, newest first."""
    a, d = db.archive, db.deliveries
    sent = sa.exists().where(d.c.issue == a.c.issue, d.c.status == "sent")
    query = (sa.select(a).where(a.c.listed == sa.true(), sent)
             .order_by(a.c.issue_date.desc(), a.c.published_at.desc(), a.c.issue))
    with database.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Entry(issue=r.issue, title=r.title, edition=r.edition,
                  issue_date=dt.date.fromisoformat(r.issue_date), preheader=r.preheader,
                  author=r.author, language=r.language, url=r.url,
                  published_at=r.published_at, updated_at=r.updated_at) for r in rows]


def _day(day: dt.date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _base(public_url: str, entries: list[Entry]) -> str:
    """The site's base URL: the setting, else what the newest entry was published under."""
    if public_url:
        return public_url.rstrip("/")
    if entries:
        return entries[0].url.rsplit("/v/", 1)[0]
    return ""


def archive_page(entries: list[Entry], *, public_url: str, search_engines: bool) -> bytes:
    """The archive as an accessible HTML page."""
    base = _base(public_url, entries)
    name = entries[0].title if entries else "Newsletter"
    language = entries[0].language if entries else "en-GB"
    title = f"{name}: all issues"
    e = html.escape
    items = "".join(
        f'<li><h2><a href="{e(entry.url)}">{e(entry.title)}: {e(entry.edition)}</a></h2>'
        f'<p class="date"><time datetime="{entry.issue_date.isoformat()}">'
        f"{_day(entry.issue_date)}</time></p>"
        + (f"<p>{e(entry.preheader)}</p>" if entry.preheader else "") + "</li>"
        for entry in entries)
    listing = (f'<ol class="issues">{items}</ol>' if entries else
               "<p>No issue has been published yet.</p>")
    head = "".join((
        f'<meta name="description" content="{e(f"Every issue of {name}, newest first.")}">',
        f'<link rel="canonical" href="{e(base)}/v/">' if base else "",
        f'<link rel="alternate" type="application/atom+xml" title="{e(name)}" '
        f'href="{e(base)}/feed.xml">' if base else "",
        "" if search_engines else '<meta name="robots" content="noindex">',
    ))
    page = (
        f'<!doctype html><html lang="{e(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title>{head}<style>{_STYLE}</style></head>"
        f"<body><main><h1>{e(title)}</h1>"
        f'<p>Newest first. New issues are also in the <a href="{e(base)}/feed.xml">Atom '
        "feed</a> for feed readers.</p>"
        f"{listing}</main></body></html>")
    return page.encode("utf-8")


_STYLE = (
    "body{margin:0;background:#f3f4f6;color:#1f2328;"
    "font:1.05rem/1.5 Arial,Helvetica,sans-serif}"
    "main{max-width:40rem;margin:0 auto;padding:1.5rem 1rem;background:#fff}"
    "h1{font-size:1.75rem;line-height:1.25;margin:0 0 .75rem}"
    "h2{font-size:1.25rem;margin:0 0 .25rem}"
    "a{color:#1d4f91;text-decoration:underline}a:focus{outline:3px solid #1d4f91;"
    "outline-offset:2px}"
    ".issues{list-style:none;margin:1.5rem 0 0;padding:0}"
    ".issues li{border-top:1px solid #d1d5db;padding:1rem 0}"
    ".issues p{margin:0 0 .25rem}.date{color:#4b5563;font-size:.95rem}"
)


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_feed(entries: list[Entry], *, public_url: str) -> bytes:
    """The archive as an Atom feed (RFC 4287)."""
    base = _base(public_url, entries)
    name = entries[0].title if entries else "Newsletter"
    ET.register_namespace("", ATOM)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> None:
        child = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        if text is not None:
            child.text = text

    feed = ET.Element(f"{{{ATOM}}}feed")
    if entries:
        feed.set("{http://www.w3.org/XML/1998/namespace}lang", entries[0].language)
    add(feed, "id", f"{base}/v/")
    add(feed, "title", name)
    add(feed, "subtitle", f"Every issue of {name}, newest first")
    newest = max((entry.updated_at for entry in entries), default=0.0)
    add(feed, "updated", _stamp(newest))
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    add(feed, "link", rel="alternate", type="text/html", href=f"{base}/v/")
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    add(author, "name", entries[0].author if entries and entries[0].author else name)
    for entry in entries:
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        add(item, "id", entry.url)
        add(item, "title", f"{entry.title}: {entry.edition}")
        add(item, "link", rel="alternate", type="text/html", href=entry.url)
        add(item, "published", _stamp(entry.published_at))
        add(item, "updated", _stamp(entry.updated_at))
        if entry.preheader:
            add(item, "summary", entry.preheader)
        if entry.author:
            who = ET.SubElement(item, f"{{{ATOM}}}author")
            add(who, "name", entry.author)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
