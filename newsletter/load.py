"""Issue YAML -> :class:`~newsletter.model.Issue`, reporting every problem at once.

Each problem names ``file:line:column``, says what is wrong in plain words and hints at the fix.
The validator is hand-written rather than generated so that messages speak the editors' language
("missing required field 'subject'", "did you mean 'heading'?"). Reading one field by its type
is :mod:`newsletter.fields`; Markdown bodies are :mod:`newsletter.body_check`; image sources are
:mod:`newsletter.images`; the theme is :mod:`newsletter.theme`. This module holds the issue's
own rules: its keys, sections, greeting, and that no skeleton text is left in.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter import model
from newsletter.body_check import check_body, link_text_warning
from newsletter.errors import Problem, display_path
from newsletter.fields import SLUG_RE, Fields, kind
from newsletter.images import check_image_src
from newsletter.scaffold import SKELETON_PLACEHOLDERS
from newsletter.theme import load_theme
from newsletter.yamlfile import LocDict, LocList, Mark, read_yaml

if TYPE_CHECKING:
    from newsletter.project import Project

__all__ = ["SLUG_RE", "SECTION_TYPES", "load_issue", "parse_issue", "slugify"]

SECTION_TYPES = ("article", "key_messages", "events", "resources", "contacts")
TRACKING_MODES = ("aggregate", "individual", "off")
SUBJECT_LIMIT = 78
ISSUE_KEYS = ("slug", "edition", "title", "subject", "preheader", "date", "language", "sender",
              "greeting", "tracking", "opens", "untracked_links", "sections", "footer",
              "archive", "feedback")
FEEDBACK_KEYS = ("question", "yes", "no", "thanks", "comment")
# The one placeholder a greeting may hold; anything else that looks like one is sent as typed.
GREETING_NAME = "{name}"
_PLACEHOLDER_LIKE_RE = re.compile(r"\{+[^{}]*\}+|[{}]|\[[^\]]*\]|<[^>]*>|%\w+%|\$\{?\w+\}?")


def slugify(text: str) -> str:
    """A lower-case, hyphenated id for a heading (used for section ids and anchors)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:48] or "section"


def _body_line(data: LocDict, key: str, offset: int) -> Mark:
    """Where line ``offset`` of the text under ``key`` stands in the file."""
    line, column = data.value_at(key)
    if key in data.block_scalar:
        # Block text starts on the line after "|"; editors indent it two past the key.
        return (line + 1 + offset, data.key_at(key)[1] + 2)
    return (line + offset, column)


class _IssueReader:
    """Reads one issue's sections and parts, recording problems in ``c``."""

    def __init__(self, c: Fields, root: Path, assets_url: str) -> None:
        self.c = c
        self.root = root
        self.assets_url = assets_url

    def image(self, data: LocDict, what: str) -> model.Image | None:
        c = self.c
        c.keys(data, ("src", "alt", "width"), what)
        src = c.text(data, "src", what)
        if "alt" not in data:
            c.error(data.mark, f"{what} has no alt text",
                    "add 'alt: ...' describing the image for people who cannot see it "
                    "(use alt: \"\" only for a purely decorative image)")
        alt = c.text(data, "alt", what, required=False)
        width = c.whole_number(data, "width", 16, 600,
                               "image width must be a whole number of pixels, 16-600",
                               "e.g. 'width: 560', or remove it to fill the column")
        if src:
            check_image_src(c, src, data.value_at("src"), self.root, self.assets_url)
        return (model.Image(src=src, alt=alt, width=width, at=(c.file, *data.value_at("src")))
                if src else None)

    def button(self, data: LocDict, what: str) -> model.Button:
        c = self.c
        c.keys(data, ("text", "url", "track"), what)
        button = model.Button(text=c.text(data, "text", what), url=c.url(data, "url", what),
                              track=c.flag(data, "track", True))
        if button.text:
            link_text_warning(c, button.text, data.value_at("text"))
        return button

    def section_id(self, data: LocDict, heading: str) -> str:
        if "id" not in data:
            return slugify(heading)
        value = self.c.text(data, "id", "the section")
        if not SLUG_RE.match(value):
            self.c.error(data.value_at("id"), f"section id '{value}' is not a simple id",
                         "use lower-case letters, digits and hyphens, e.g. 'learning-event'")
        return value

    def part(self, data: LocDict, key: str, what: str,
             read: Callable[[LocDict, str], Any]) -> Any:
        """The optional sub-mapping ``key`` (an image, a button) read by ``read``, or None."""
        if key not in data:
            return None
        part = self.c.mapping(data[key], data.value_at(key), f"the {key} of {what}")
        return read(part, f"the {key} of {what}") if part is not None else None

    def article(self, data: LocDict, what: str) -> model.Article:
        c = self.c
        c.keys(data, ("type", "id", "heading", "body", "image", "button"), what)
        heading = c.text(data, "heading", what)
        body = c.text(data, "body", what)
        check_body(c, body, lambda offset: _body_line(data, "body", offset))
        return model.Article(heading=heading, body=body,
                             image=self.part(data, "image", what, self.image),
                             button=self.part(data, "button", what, self.button),
                             id=self.section_id(data, heading))

    def key_messages(self, data: LocDict, what: str) -> model.KeyMessages:
        c = self.c
        c.keys(data, ("type", "id", "heading", "messages"), what)
        heading = c.text(data, "heading", what, required=False, default="Key messages")
        messages = []
        for index, item in enumerate(c.items(data, "messages", what)):
            at, name = data["messages"].item_at(index), f"key message {index + 1}"
            if not isinstance(item, str):
                c.error(at, f"{name} must be a line of text, not {kind(item)}",
                        "write each message after '- ' on its own line")
            elif (text := c.value_text(item, at, name)) is not None and not text.strip():
                c.error(at, f"{name} is empty", "write the message after '- ', or remove the line")
            elif text is not None:
                messages.append(text.strip())
        return model.KeyMessages(heading=heading, messages=tuple(messages),
                                 id=self.section_id(data, heading))

    def event(self, data: LocDict, what: str) -> model.Event | None:
        """An event; None when its date is missing or wrong (c.date has said so)."""
        c = self.c
        c.keys(data, ("title", "date", "time", "place", "url", "description", "track"), what)
        when = c.date(data, "date", what)
        title, place = c.text(data, "title", what), c.text(data, "place", what)
        url = c.url(data, "url", what)
        time = c.text(data, "time", what, required=False)
        description = c.text(data, "description", what, required=False)
        track = c.flag(data, "track", True)
        if when is None:
            return None
        return model.Event(title=title, date=when, place=place, url=url, time=time,
                           description=description, track=track)

    def resource(self, data: LocDict, what: str) -> model.Resource:
        c = self.c
        c.keys(data, ("label", "url", "file_type", "size", "description", "track"), what)
        resource = model.Resource(label=c.text(data, "label", what), url=c.url(data, "url", what),
                                  file_type=c.text(data, "file_type", what),
                                  size=c.text(data, "size", what),
                                  description=c.text(data, "description", what, required=False),
                                  track=c.flag(data, "track", True))
        if resource.label:
            link_text_warning(c, resource.label, data.value_at("label"))
        return resource

    def contact(self, data: LocDict, what: str) -> model.Contact:
        c = self.c
        c.keys(data, ("role", "team", "email", "phone"), what)
        contact = model.Contact(role=c.text(data, "role", what), team=c.text(data, "team", what),
                                email=c.email(data, "email", what, required=False),
                                phone=c.text(data, "phone", what, required=False))
        if contact.phone and not re.fullmatch(r"\+?[0-9 ()-]{6,20}", contact.phone):
            c.error(data.value_at("phone"), f"'{contact.phone}' is not a phone number",
                    "write digits and spaces, e.g. 03000 41 11 11")
        if not contact.email and not contact.phone:
            c.error(data.mark, f"{what} has neither email nor phone",
                    "add 'email: ...' or 'phone: ...' so readers can get in touch")
        return contact

    def list_section(self, data: LocDict, what: str, section: type, key: str,
                     default_heading: str, read_item: Callable[[LocDict, str], Any]) -> Any:
        """A section that is a heading and a list of items (events, resources, contacts)."""
        c = self.c
        c.keys(data, ("type", "id", "heading", key), what)
        heading = c.text(data, "heading", what, required=False, default=default_heading)
        items = []
        for index, item in enumerate(c.items(data, key, what)):
            where = f"item {index + 1} of '{key}' in {what}"
            item_data = c.mapping(item, data[key].item_at(index), where)
            read = read_item(item_data, where) if item_data is not None else None
            if read is not None:
                items.append(read)
        return section(heading=heading, id=self.section_id(data, heading),
                       **{key: tuple(items)})

    def section(self, kind_name: str, data: LocDict, what: str) -> Any:
        """Read one section of a known type."""
        if kind_name == "article":
            return self.article(data, what)
        if kind_name == "key_messages":
            return self.key_messages(data, what)
        lists = {"events": (model.Events, "Events", self.event),
                 "resources": (model.Resources, "Resources", self.resource),
                 "contacts": (model.Contacts, "Contacts", self.contact)}
        section, heading, read_item = lists[kind_name]
        return self.list_section(data, what, section, kind_name, heading, read_item)

    def sections(self, data: LocDict) -> tuple[model.Section, ...]:
        c = self.c
        sections: list[model.Section] = []
        seen: dict[str, Mark] = {}
        for index, item in enumerate(c.items(data, "sections", "the issue")):
            at = data["sections"].item_at(index)
            what = f"section {index + 1}"
            section = c.mapping(item, at, what)
            kind_name = self.section_type(section, at, what) if section is not None else None
            if section is None or kind_name is None:
                continue
            result = self.section(kind_name, section, f"{what} ({kind_name})")
            if result.id in seen:
                c.error(section.key_at("heading") if "id" not in section
                        else section.value_at("id"),
                        f"{what} has the same id '{result.id}' as the section on line "
                        f"{seen[result.id][0]}", "give one of them a different heading or an 'id:'")
            seen[result.id] = at
            sections.append(result)
        return tuple(sections)

    def section_type(self, section: LocDict, at: Mark, what: str) -> str | None:
        """The section's type if it is one we know; else None after reporting it."""
        value = section.get("type")
        if isinstance(value, str) and value in SECTION_TYPES:
            return value
        where = section.value_at("type") if "type" in section else at
        if value is not None and not isinstance(value, str):
            self.c.error(where, f"{what}'s type must be one of {', '.join(SECTION_TYPES)}, "
                         f"not {kind(value)}", "write e.g. '- type: article'")
            return None
        close = difflib.get_close_matches(str(value), SECTION_TYPES, n=1)
        hint = (f"did you mean '{close[0]}'?" if close else
                "use one of: " + ", ".join(SECTION_TYPES))
        found = "no type" if value is None else f"unknown type {value!r}"
        self.c.error(where, f"{what} has {found}", hint)
        return None

    def sender(self, data: LocDict) -> model.Sender | None:
        c = self.c
        if "sender" not in data:
            c.error(data.mark, "missing required field 'sender' in the issue",
                    "add 'sender:' with 'name:', 'email:' and 'reply_to:' under it")
            return None
        sender = c.mapping(data["sender"], data.value_at("sender"), "'sender'")
        if sender is None:
            return None
        c.keys(sender, ("name", "email", "reply_to"), "'sender'")
        email = c.email(sender, "email", "'sender'")
        return model.Sender(name=c.header_text(sender, "name", "'sender'"), email=email,
                            reply_to=c.email(sender, "reply_to", "'sender'", required=False)
                            or email)

    def footer(self, data: LocDict) -> model.Footer | None:
        c = self.c
        if "footer" not in data:
            c.error(data.mark, "missing required field 'footer' in the issue",
                    "add 'footer:' with 'sender:', 'reason:' and 'privacy_url:' under it")
            return None
        footer = c.mapping(data["footer"], data.value_at("footer"), "'footer'")
        if footer is None:
            return None
        c.keys(footer, ("sender", "reason", "privacy_url", "privacy_text"), "'footer'")
        return model.Footer(sender=c.text(footer, "sender", "'footer'"),
                            reason=c.text(footer, "reason", "'footer'"),
                            privacy_url=c.url(footer, "privacy_url", "'footer'",
                                              schemes=("https", "http")),
                            privacy_text=c.text(footer, "privacy_text", "'footer'",
                                                required=False, default="Privacy notice"))


def _feedback(c: Fields, issue: LocDict, tracking: str) -> model.Feedback | None:
    """The optional footer question (``feedback:``) and its wording."""
    if "feedback" not in issue:
        return None
    what = "'feedback'"
    data = c.mapping(issue["feedback"], issue.value_at("feedback"), what)
    if data is None:
        return None
    c.keys(data, FEEDBACK_KEYS, what)
    defaults = model.Feedback(question="")
    values = {"question": c.text(data, "question", what)}
    for key in FEEDBACK_KEYS[1:]:
        values[key] = c.text(data, key, what, required=False, default=getattr(defaults, key))
        if key in data and not values[key].strip():
            c.error(data.value_at(key), f"'{key}' is empty in {what}",
                    "write the words after the colon, or leave the line out for the default")
    for key in ("question", "yes", "no"):
        if "\n" in values[key]:
            c.error(data.value_at(key), f"'{key}' in {what} must be one line",
                    "join the text onto one line")
    if tracking == "off":
        c.error(issue.key_at("feedback"), "feedback needs tracking: this issue has "
                "'tracking: off', so no answer could be counted",
                "remove 'feedback:', or use 'tracking: aggregate' (answers are never tied to a "
                "person, whatever the tracking)")
    return model.Feedback(**values)


def _header_fields(c: Fields, issue: LocDict, default_slug: str) -> dict[str, Any]:
    """slug, subject, preheader, tracking, language and greeting, each checked."""
    slug = c.text(issue, "slug", "the issue", required=False, default=default_slug)
    if not SLUG_RE.match(slug):
        c.error(issue.value_at("slug"), f"'{slug}' cannot be used as the issue's slug",
                "use lower-case letters, digits and hyphens, e.g. '2026-spring'")
    subject = c.header_text(issue, "subject", "the issue")
    if len(subject) > SUBJECT_LIMIT:
        c.warn(issue.value_at("subject"),
               f"subject is {len(subject)} characters; inboxes cut it after about {SUBJECT_LIMIT}",
               "put the most important words first or shorten it")
    preheader = c.header_text(issue, "preheader", "the issue", required=False)
    if not preheader:
        c.warn(issue.key_at("preheader"), "no preheader",
               "add 'preheader: ...': the line inboxes show after the subject")
    tracking = c.text(issue, "tracking", "the issue", required=False, default="aggregate").lower()
    if tracking not in TRACKING_MODES:
        c.error(issue.value_at("tracking"), f"tracking '{tracking}' is not a tracking mode",
                "use aggregate (the default), individual or off")
    language = c.text(issue, "language", "the issue", required=False, default="en-GB")
    if not re.fullmatch(r"[a-z]{2,3}(-[A-Z]{2})?", language):
        c.error(issue.value_at("language"), f"'{language}' is not a language tag",
                "write e.g. en-GB or cy-GB")
    return {"slug": slug, "subject": subject, "preheader": preheader, "tracking": tracking,
            "language": language, "greeting": _greeting(c, issue)}


def _greeting(c: Fields, issue: LocDict) -> str:
    greeting = c.text(issue, "greeting", "the issue", required=False)
    for match in _PLACEHOLDER_LIKE_RE.finditer(greeting):
        if match.group() != GREETING_NAME:
            c.error(issue.value_at("greeting"),
                    f"greeting has '{match.group()}', which is not a placeholder: it would be "
                    "sent as typed", f"the only placeholder is {GREETING_NAME} (the recipient's "
                    "name, or 'colleague' when it is unknown), e.g. 'greeting: Dear {name},'")
            break
    return greeting


def _untracked_links(c: Fields, issue: LocDict) -> tuple[str, ...]:
    if "untracked_links" not in issue:
        return ()
    untracked: list[str] = []
    urls = c.items(issue, "untracked_links", "the issue")
    for index, url in enumerate(urls):
        text = c.value_text(url, urls.item_at(index), "untracked_links")
        if text is not None:
            c.check_url(text, urls.item_at(index))
            untracked.append(text)
    return tuple(untracked)


def _below(mark: Mark, offset: int) -> Mark:
    """``offset`` lines below ``mark``."""
    return (mark[0] + offset, mark[1])


def _texts(data: Any) -> Iterator[tuple[str, Callable[[int], Mark]]]:
    """Every text value under ``data``, with a way to locate each of its lines."""
    if isinstance(data, LocDict):
        for key, value in data.items():
            if isinstance(value, str):
                yield value, functools.partial(_body_line, data, key)
            else:
                yield from _texts(value)
    elif isinstance(data, LocList):
        for index, value in enumerate(data):
            mark = data.item_at(index)
            if isinstance(value, str):
                yield value, functools.partial(_below, mark)
            else:
                yield from _texts(value)


def _skeleton_text(c: Fields, issue: LocDict) -> None:
    """Report every placeholder from ``newsletter new``'s skeleton still in the issue."""
    for text, locate in _texts(issue):
        folded = " ".join(text.split()).lower()
        for placeholder in SKELETON_PLACEHOLDERS:
            index = folded.find(placeholder.lower())
            if index < 0:
                continue
            # Find the line in the original text where the placeholder's first word stands.
            first_word = placeholder.split()[0].lower()
            offset = next((n for n, line in enumerate(text.splitlines())
                           if first_word in line.lower()), 0)
            c.error(locate(offset), f"skeleton text left in: '{placeholder}'",
                    "replace the skeleton's sample text with your own before sending")


def parse_issue(data: Any, file: str, root: Path, theme: model.Theme, default_slug: str,
                assets_url: str = "") -> tuple[model.Issue | None, list[Problem]]:
    """Validate loaded YAML ``data`` into an Issue; returns (issue or None, problems)."""
    c = Fields(file)
    issue = c.mapping(data, (1, 1), "the issue file")
    if issue is None:
        return None, c.problems
    c.keys(issue, ISSUE_KEYS, "the issue")
    reader = _IssueReader(c, root, assets_url)
    header = _header_fields(c, issue, default_slug)
    # Read in the order the file is written, so problems are listed in that order.
    edition = c.text(issue, "edition", "the issue")
    title = c.text(issue, "title", "the issue")
    date = c.date(issue, "date", "the issue")
    sender = reader.sender(issue)
    sections = reader.sections(issue)
    footer = reader.footer(issue)
    opens = c.flag(issue, "opens", False)
    untracked_links = _untracked_links(c, issue)
    archive = c.flag(issue, "archive", True)
    feedback = _feedback(c, issue, header["tracking"])
    _skeleton_text(c, issue)
    if c.has_errors or date is None or sender is None or footer is None:
        return None, c.problems
    return model.Issue(**header, edition=edition, title=title, date=date, sender=sender,
                       sections=sections, footer=footer, theme=theme, opens=opens,
                       untracked_links=untracked_links, archive=archive, feedback=feedback,
                       source=file), c.problems


def load_issue(path: Path, project: Project) -> tuple[model.Issue | None, list[Problem]]:
    """Load and validate the issue at ``path``; returns (issue or None, every problem found)."""
    root = project.root
    assets_url = project.settings.assets_url
    theme, theme_problems = load_theme(project.theme_path, root, assets_url)
    file = display_path(path)
    data, problems = read_yaml(path, file)
    if data is None:
        return None, theme_problems + problems
    issue, more = parse_issue(data, file, root, theme, default_slug=slugify(path.stem),
                              assets_url=assets_url)
    problems = theme_problems + problems + more
    if any(p.severity == "error" for p in problems):
        issue = None
    return issue, problems

