"""The issue as the rest of the program sees it: plain, validated data with no I/O.

``load`` builds these from YAML; ``render`` turns them into email; ``links`` gives every link
occurrence a click ID.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

TrackingMode = Literal["aggregate", "individual", "off"]
# Where a value was written: (file, line, column), for messages about it found after loading.
Location = tuple[str, int, int]
LinkKind = Literal["article", "cta", "event", "download", "contact", "footer", "logo", "honeypot"]


@dataclass(frozen=True)
class Sender:
    """Who the issue comes from and where replies go."""

    name: str
    email: str
    reply_to: str


@dataclass(frozen=True)
class Image:
    """An image shown in an article. ``alt`` is required (WCAG 1.1.1)."""

    src: str
    alt: str
    width: int | None = None
    at: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Button:
    """A call-to-action button under an article."""

    text: str
    url: str
    track: bool = True


@dataclass(frozen=True)
class Article:
    """A heading, a Markdown body, an optional image and an optional button."""

    heading: str
    body: str
    image: Image | None = None
    button: Button | None = None
    id: str = ""
    kind: str = "article"


@dataclass(frozen=True)
class KeyMessages:
    """A short list of the strategy's key messages."""

    heading: str
    messages: tuple[str, ...]
    id: str = ""
    kind: str = "key_messages"


@dataclass(frozen=True)
class Event:
    """One event: what, when, where and a link to book or read more."""

    title: str
    date: dt.date
    place: str
    url: str
    time: str = ""
    description: str = ""
    track: bool = True


@dataclass(frozen=True)
class Events:
    """A list of events under one heading."""

    heading: str
    events: tuple[Event, ...]
    id: str = ""
    kind: str = "events"


@dataclass(frozen=True)
class Resource:
    """A download: what the strategy counts as "downloads"."""

    label: str
    url: str
    file_type: str
    size: str
    description: str = ""
    track: bool = True


@dataclass(frozen=True)
class Resources:
    """A list of downloads under one heading."""

    heading: str
    resources: tuple[Resource, ...]
    id: str = ""
    kind: str = "resources"


@dataclass(frozen=True)
class Contact:
    """A role to contact: never a private person."""

    role: str
    team: str
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Contacts:
    """A list of contacts by role."""

    heading: str
    contacts: tuple[Contact, ...]
    id: str = ""
    kind: str = "contacts"


Section = Article | KeyMessages | Events | Resources | Contacts


@dataclass(frozen=True)
class Footer:
    """Who sends this, why the reader gets it, and the privacy notice."""

    sender: str
    reason: str
    privacy_url: str
    privacy_text: str = "Privacy notice"


# The footer question's two answers: the link ids of its links, and what is counted.
FEEDBACK_ANSWERS = ("yes", "no")


@dataclass(frozen=True)
class Feedback:
    """The footer question with its two answers, each a link that records an aggregate answer
    (never whose), and what the thank-you page says."""

    question: str
    yes: str = "Yes"
    no: str = "No"
    thanks: str = "Thank you for your answer."
    comment: str = ("Anything else you would like to tell us? Please do not write names or "
                    "contact details.")


@dataclass(frozen=True)
class Logo:
    """The brand logo, with the alt text screen readers say."""

    src: str
    alt: str
    url: str = ""
    width: int = 160
    at: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Theme:
    """Brand settings shared by every issue (``theme.yaml``)."""

    brand_colour: str = "#1d4f91"
    text_colour: str = "#1f2328"
    background_colour: str = "#f3f4f6"
    link_colour: str = "#1d4f91"
    font_family: str = "Arial, Helvetica, sans-serif"
    logo: Logo | None = None
    footer_text: str = ""


@dataclass(frozen=True)
class Issue:
    """One newsletter issue, validated."""

    slug: str
    edition: str
    title: str
    subject: str
    preheader: str
    date: dt.date
    sender: Sender
    sections: tuple[Section, ...]
    footer: Footer
    theme: Theme = field(default_factory=Theme)
    language: str = "en-GB"
    tracking: TrackingMode = "aggregate"
    opens: bool = False
    archive: bool = True          # listed in the public archive and feed once sent
    greeting: str = ""
    untracked_links: tuple[str, ...] = ()
    feedback: Feedback | None = None
    source: str = ""
