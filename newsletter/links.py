"""Click IDs for every link occurrence, tracked hrefs, and the ``links.json`` registry.

A click ID is derived from the section, the link's position within it and its URL, so it stays
the same across rebuilds while those three are unchanged, and changes when the link does
(so old clicks are never credited to a new destination).

Tracked hrefs carry placeholders that ``send`` fills per recipient by plain substitution::

    {tracking_url}/c/{{click:LINKID}}     a tracked link
    {tracking_url}/u/{{unsubscribe}}      the recipient's unsubscribe page
    {tracking_url}/o/{{open}}             the open pixel (only when the issue turns opens on)
    {tracking_url}/f/{{feedback:yes}}     an answer to the feedback question (per list, never
                                          per recipient; in the web version, per outlet)
    {{name}}                              the recipient's name, in the greeting

The web version carries the same ``{{click:ID}}`` and ``{{feedback:...}}`` placeholders: the
tracker fills them for the outlet whose link a visitor came through (:func:`web_file`
turns them back into plain links for the copy in ``build/``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from newsletter.model import LinkKind

PLACEHOLDER_RE = re.compile(
    r"\{\{(click|unsubscribe|open|name|feedback)(?::([A-Za-z0-9_-]+))?\}\}")
UNTRACKABLE_PREFIXES = ("mailto:", "tel:", "#")


@dataclass(frozen=True)
class Link:
    """One link occurrence in the email."""

    id: str
    url: str
    text: str
    section: str
    kind: LinkKind
    tracked: bool


def click_id(section: str, position: int, url: str) -> str:
    """A short stable id for the ``position``-th link of ``section`` pointing at ``url``."""
    digest = hashlib.sha256(f"{section}\x1f{position}\x1f{url}".encode()).digest()
    return base64.b32encode(digest[:5]).decode("ascii").lower()


@dataclass
class LinkRegistry:
    """Collects link occurrences during one render and hands back the href to write."""

    tracking_url: str
    tracking_on: bool
    untracked_urls: frozenset[str] = frozenset()
    links: list[Link] = field(default_factory=list)
    _positions: dict[str, int] = field(default_factory=dict)

    def add(self, url: str, text: str, section: str, kind: LinkKind, track: bool = True) -> str:
        """Register one occurrence; return the href for the email (tracked or as written)."""
        position = self._positions.get(section, 0)
        self._positions[section] = position + 1
        link_id = click_id(section, position, url)
        tracked = (self.tracking_on and track and url not in self.untracked_urls
                   and not url.startswith(UNTRACKABLE_PREFIXES))
        self.links.append(Link(link_id, url, text, section, kind, tracked))
        return f"{self.tracking_url}/c/{{{{click:{link_id}}}}}" if tracked else url

    def unsubscribe_href(self) -> str:
        """The per-recipient unsubscribe URL (present in every tracking mode)."""
        return f"{self.tracking_url}/u/{{{{unsubscribe}}}}"

    def open_pixel_src(self) -> str:
        """The per-recipient open pixel URL."""
        return f"{self.tracking_url}/o/{{{{open}}}}"

    def view_href(self, slug: str, outlet: str = "") -> str:
        """The web version on the tracker, where a visit counts as a view (for ``outlet``)."""
        from newsletter.outlets import view_url

        return view_url(self.tracking_url, slug, outlet)

    def feedback_href(self, answer: str) -> str:
        """An answer to the feedback question, filled per list (email) or outlet (web)."""
        return f"{self.tracking_url}/f/{{{{feedback:{answer}}}}}"


def web_file(web_html: str, tracking_url: str, slug: str, links: list[Link]) -> str:
    """The web version as a file to open or host anywhere: each tracked link back to its
    destination, the feedback answers to the web version on the tracker (where they work)."""
    import html as html_module

    urls = {link.id: link.url for link in links}
    base = tracking_url.rstrip("/")

    def plain(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2) or ""
        if kind == "click" and argument in urls:
            return html_module.escape(urls[argument])
        return html_module.escape(f"{base}/v/{slug}")

    return re.sub(re.escape(base) + r"/[cf]/" + PLACEHOLDER_RE.pattern, plain, web_html)


def links_json(slug: str, tracking: str, opens: bool, tracking_url: str,
               links: list[Link]) -> str:
    """The link registry as written to ``links.json`` (stable key order, one link an object)."""
    document = {
        "issue": slug,
        "tracking": tracking,
        "opens": opens,
        "tracking_url": tracking_url,
        "links": [asdict(link) for link in links],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
