"""Issue YAML -> :class:`~newsletter.model.Issue`, reporting every problem at once.

Each problem names ``file:line:column``, says what is wrong in plain words and hints at the fix.
The validator is hand-written rather than generated so that messages speak the editors' language
("missing required field 'subject'", "did you mean 'heading'?").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

from newsletter import model
from newsletter.errors import Problem
from newsletter.yamlfile import LocDict, LocList, Mark, is_date, read_yaml

if TYPE_CHECKING:
    from newsletter.project import Project

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
VAGUE_LINK_TEXT = {"click here", "here", "click", "read more", "more", "link", "this link",
                   "this", "go", "more info", "this page"}
SECTION_TYPES = ("article", "key_messages", "events", "resources", "contacts")
LINK_SCHEMES = ("http", "https", "mailto")
SUBJECT_LIMIT = 78

# For checking only: accept every link so a javascript: link is reported, not silently
# turned into text as the renderer (which keeps markdown-it's link validation) does.
_markdown = MarkdownIt("commonmark", {"html": False})
_markdown.validateLink = lambda url: True  # type: ignore[method-assign]


class _Checker:
    """Collects problems for one file while reading fields out of located mappings."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, at: Mark, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, at[0], at[1], message, hint))

    def warn(self, at: Mark, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.file, at[0], at[1], message, hint, "warning"))

    def mapping(self, value: Any, at: Mark, what: str) -> LocDict | None:
        if isinstance(value, LocDict):
            return value
        self.error(at, f"{what} must be a mapping of 'key: value' lines, not {_kind(value)}",
                   f"indent the fields of {what} under it, one 'key: value' per line")
        return None

    def keys(self, data: LocDict, allowed: tuple[str, ...], what: str) -> None:
        for key in data:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "allowed here: " + ", ".join(allowed))
            self.error(data.key_at(key), f"unknown key '{key}' in {what}", hint)

    def text(self, data: LocDict, key: str, what: str, *, required: bool = True,
             default: str = "") -> str:
        if key not in data or data[key] is None:
            if required:
                self.error(data.mark, f"missing required field '{key}' in {what}",
                           f"add a line '{key}: ...' to {what}")
            return default
        value = data[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self.error(data.value_at(key), f"'{key}' must be text, not {_kind(value)}",
                       "write it on one line after the colon, in quotes if it contains ': '")
            return default
        if required and not value.strip():
            self.error(data.value_at(key), f"'{key}' is empty in {what}",
                       f"write the {key.replace('_', ' ')} after the colon")
        return value.strip() if "\n" not in value.strip() else value

    def header_text(self, data: LocDict, key: str, what: str, *, required: bool = True) -> str:
        """Text that ends up in an email header: one line, no control characters."""
        value = self.text(data, key, what, required=required)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            self.error(data.value_at(key), f"'{key}' contains a line break or control character",
                       "email headers must be a single line: join the text onto one line")
        return value

    def flag(self, data: LocDict, key: str, default: bool) -> bool:
        if key not in data:
            return default
        if isinstance(data[key], bool):
            return data[key]
        self.error(data.value_at(key), f"'{key}' must be true or false, not {_kind(data[key])}",
                   f"write '{key}: true' or '{key}: false'")
        return default

    def url(self, data: LocDict, key: str, what: str, *, required: bool = True,
            schemes: tuple[str, ...] = LINK_SCHEMES) -> str:
        value = self.text(data, key, what, required=required)
        if value:
            self.check_url(value, data.value_at(key), schemes)
        return value

    def check_url(self, value: str, at: Mark, schemes: tuple[str, ...] = LINK_SCHEMES) -> None:
        problem = url_problem(value, schemes)
        if problem:
            self.error(at, problem, "links must start with https:// (or http://, mailto:)")

    def email(self, data: LocDict, key: str, what: str, *, required: bool = True) -> str:
        value = self.header_text(data, key, what, required=required)
        if value and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
            self.error(data.value_at(key), f"'{value}' is not an email address",
                       "write a role address such as prevent-team@example.org")
        return value

    def date(self, data: LocDict, key: str, what: str) -> Any:
        if key not in data:
            self.error(data.mark, f"missing required field '{key}' in {what}",
                       f"add a line '{key}: YYYY-MM-DD', e.g. '{key}: 2026-03-17'")
            return None
        value = data[key]
        if is_date(value):
            return value
        self.error(data.value_at(key), f"'{value}' is not a valid date",
                   "write dates as YYYY-MM-DD, e.g. 2026-03-17, and check the day exists")
        return None

    def items(self, data: LocDict, key: str, what: str) -> LocList:
        if key not in data:
            self.error(data.mark, f"missing required field '{key}' in {what}",
                       f"add '{key}:' followed by items starting with '- '")
            return LocList()
        value = data[key]
        if isinstance(value, LocList):
            if not value:
                self.error(data.value_at(key), f"'{key}' in {what} is empty",
                           "add at least one item starting with '- '")
            return value
        self.error(data.value_at(key), f"'{key}' must be a list, not {_kind(value)}",
                   "write each item on its own line starting with '- '")
        return LocList()


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if is_date(value):
        return "a date"
    return type(value).__name__


def url_problem(value: str, schemes: tuple[str, ...] = LINK_SCHEMES) -> str:
    """Why ``value`` is not an acceptable link, or '' when it is."""
    if value.startswith("#") and len(value) > 1:
        return ""
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        return (f"link '{value}' is not an {'/'.join(schemes)} link"
                if scheme else f"link '{value}' has no scheme such as https://")
    if scheme in ("http", "https") and not parts.netloc:
        return f"link '{value}' has no host name"
    if scheme == "mailto" and "@" not in parts.path:
        return f"link '{value}' has no email address"
    if any(ch.isspace() for ch in value):
        return f"link '{value}' contains spaces"
    return ""


def slugify(text: str) -> str:
    """A lower-case, hyphenated id for a heading (used for section ids and anchors)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:48] or "section"


def markdown_links(body: str) -> list[tuple[str, str, int]]:
    """(href, link text, line within body) for every link in a Markdown body."""
    found: list[tuple[str, str, int]] = []
    for block in _markdown.parse(body):
        if block.type != "inline" or not block.children:
            continue
        line = block.map[0] if block.map else 0
        href = None
        words: list[str] = []
        for tok in block.children:
            if tok.type == "link_open":
                href = str(tok.attrGet("href") or "")
                words = []
            elif tok.type == "link_close" and href is not None:
                found.append((href, "".join(words).strip(), line))
                href = None
            elif href is not None and tok.type in ("text", "code_inline"):
                words.append(tok.content)
            elif tok.type == "softbreak":
                line += 1
    return found


def _body_line(data: LocDict, key: str, offset: int) -> Mark:
    line, column = data.value_at(key)
    if key in data.block_scalar:
        # Block text starts on the line after "|"; editors indent it two past the key.
        return (line + 1 + offset, data.key_at(key)[1] + 2)
    return (line + offset, column)


def _link_text_warning(c: _Checker, text: str, at: Mark) -> None:
    if text.strip().lower().rstrip(".!") in VAGUE_LINK_TEXT:
        c.warn(at, f"link text '{text}' does not say where the link goes",
               "screen-reader users hear links out of context: name the destination, "
               "e.g. 'Read the Prevent duty guidance'")


def _image(c: _Checker, data: LocDict, what: str, root: Path,
           extra_keys: tuple[str, ...] = ()) -> model.Image | None:
    c.keys(data, ("src", "alt", "width", *extra_keys), what)
    src = c.text(data, "src", what)
    if "alt" not in data:
        c.error(data.mark, f"{what} has no alt text",
                "add 'alt: ...' describing the image for people who cannot see it "
                "(use alt: \"\" only for a purely decorative image)")
        alt = ""
    else:
        alt = c.text(data, "alt", what, required=False)
    width = data.get("width")
    if width is not None and (not isinstance(width, int) or isinstance(width, bool)
                              or not 16 <= width <= 600):
        c.error(data.value_at("width"), "image width must be a whole number of pixels, 16-600",
                "e.g. 'width: 560', or remove it to fill the column")
        width = None
    if src:
        _check_local_file(c, src, data.value_at("src"), root)
    return model.Image(src=src, alt=alt, width=width) if src else None


def _check_local_file(c: _Checker, src: str, at: Mark, root: Path) -> None:
    if "://" in src:
        if urlsplit(src).scheme not in ("https", "http"):
            c.error(at, f"image '{src}' must be a https:// URL or a file in the project",
                    "e.g. images/event.png")
        return
    path = (root / src).resolve()
    if root.resolve() not in path.parents:
        c.error(at, f"image '{src}' is outside the project folder",
                "put images in the project's images/ folder and write e.g. images/event.png")
    elif not path.is_file():
        c.error(at, f"image file '{src}' not found", "check the name; paths are relative to "
                "the project folder, e.g. images/event.png")


def _button(c: _Checker, data: LocDict, what: str) -> model.Button:
    c.keys(data, ("text", "url", "track"), what)
    button = model.Button(text=c.text(data, "text", what), url=c.url(data, "url", what),
                          track=c.flag(data, "track", True))
    if button.text:
        _link_text_warning(c, button.text, data.value_at("text"))
    return button


def _article(c: _Checker, data: LocDict, what: str, root: Path) -> model.Article:
    c.keys(data, ("type", "id", "heading", "body", "image", "button"), what)
    heading = c.text(data, "heading", what)
    body = c.text(data, "body", what)
    for href, text, offset in markdown_links(body):
        at = _body_line(data, "body", offset)
        problem = url_problem(href, (*LINK_SCHEMES, "tel"))
        if problem:
            c.error(at, problem, "Markdown links are written [text](https://...)")
        if not text:
            c.error(at, f"link to '{href}' has no text", "write [what the link is](URL)")
        else:
            _link_text_warning(c, text, at)
    image = None
    if "image" in data:
        image_data = c.mapping(data["image"], data.value_at("image"), f"the image of {what}")
        image = _image(c, image_data, f"the image of {what}", root) if image_data else None
    button = None
    if "button" in data:
        button_data = c.mapping(data["button"], data.value_at("button"), f"the button of {what}")
        button = _button(c, button_data, f"the button of {what}") if button_data else None
    return model.Article(heading=heading, body=body, image=image, button=button,
                         id=_section_id(c, data, heading))


def _section_id(c: _Checker, data: LocDict, heading: str) -> str:
    if "id" not in data:
        return slugify(heading)
    value = c.text(data, "id", "the section")
    if not SLUG_RE.match(value):
        c.error(data.value_at("id"), f"section id '{value}' is not a simple id",
                "use lower-case letters, digits and hyphens, e.g. 'learning-event'")
    return value


def _key_messages(c: _Checker, data: LocDict, what: str, root: Path) -> model.KeyMessages:
    c.keys(data, ("type", "id", "heading", "messages"), what)
    heading = c.text(data, "heading", what, required=False, default="Key messages")
    messages = []
    for index, item in enumerate(c.items(data, "messages", what)):
        at = data["messages"].item_at(index)
        if isinstance(item, str) and item.strip():
            messages.append(item.strip())
        else:
            c.error(at, f"key message {index + 1} must be a line of text, not {_kind(item)}",
                    "write each message after '- ' on its own line")
    return model.KeyMessages(heading=heading, messages=tuple(messages),
                             id=_section_id(c, data, heading))


def _event(c: _Checker, data: LocDict, what: str) -> model.Event:
    c.keys(data, ("title", "date", "time", "place", "url", "description", "track"), what)
    event = model.Event(title=c.text(data, "title", what), date=c.date(data, "date", what),
                        place=c.text(data, "place", what), url=c.url(data, "url", what),
                        time=c.text(data, "time", what, required=False),
                        description=c.text(data, "description", what, required=False),
                        track=c.flag(data, "track", True))
    return event


def _resource(c: _Checker, data: LocDict, what: str) -> model.Resource:
    c.keys(data, ("label", "url", "file_type", "size", "description", "track"), what)
    resource = model.Resource(label=c.text(data, "label", what), url=c.url(data, "url", what),
                              file_type=c.text(data, "file_type", what),
                              size=c.text(data, "size", what),
                              description=c.text(data, "description", what, required=False),
                              track=c.flag(data, "track", True))
    if resource.label:
        _link_text_warning(c, resource.label, data.value_at("label"))
    return resource


def _contact(c: _Checker, data: LocDict, what: str) -> model.Contact:
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


def _list_section(section: type, key: str, default_heading: str,
                  read_item: Callable[[_Checker, LocDict, str], Any]) -> Callable[..., Any]:
    """A reader for a section that is a heading and a list of items (events, resources...)."""

    def read(c: _Checker, data: LocDict, what: str, root: Path) -> Any:
        c.keys(data, ("type", "id", "heading", key), what)
        heading = c.text(data, "heading", what, required=False, default=default_heading)
        items = []
        for index, item in enumerate(c.items(data, key, what)):
            where = f"item {index + 1} of '{key}' in {what}"
            item_data = c.mapping(item, data[key].item_at(index), where)
            if item_data is not None:
                items.append(read_item(c, item_data, where))
        return section(heading=heading, id=_section_id(c, data, heading), **{key: tuple(items)})

    return read


_SECTION_READERS = {
    "article": _article,
    "key_messages": _key_messages,
    "events": _list_section(model.Events, "events", "Events", _event),
    "resources": _list_section(model.Resources, "resources", "Resources", _resource),
    "contacts": _list_section(model.Contacts, "contacts", "Contacts", _contact),
}


def _sections(c: _Checker, data: LocDict, root: Path) -> tuple[model.Section, ...]:
    sections: list[model.Section] = []
    seen: dict[str, Mark] = {}
    for index, item in enumerate(c.items(data, "sections", "the issue")):
        at = data["sections"].item_at(index)
        what = f"section {index + 1}"
        section = c.mapping(item, at, what)
        if section is None:
            continue
        kind = section.get("type")
        if kind not in _SECTION_READERS:
            close = difflib.get_close_matches(str(kind), SECTION_TYPES, n=1)
            hint = (f"did you mean '{close[0]}'?" if close else
                    "use one of: " + ", ".join(SECTION_TYPES))
            c.error(section.value_at("type") if "type" in section else at,
                    f"{what} has {'no type' if kind is None else f'unknown type {kind!r}'}", hint)
            continue
        result = _SECTION_READERS[kind](c, section, f"{what} ({kind})", root)
        if result.id in seen:
            c.error(section.key_at("heading") if "id" not in section else section.value_at("id"),
                    f"{what} has the same id '{result.id}' as the section on line "
                    f"{seen[result.id][0]}", "give one of them a different heading or an 'id:'")
        seen[result.id] = at
        sections.append(result)
    return tuple(sections)


def _sender(c: _Checker, data: LocDict) -> model.Sender | None:
    sender = c.mapping(data.get("sender"), data.value_at("sender"), "'sender'") \
        if "sender" in data else None
    if sender is None:
        if "sender" not in data:
            c.error(data.mark, "missing required field 'sender' in the issue",
                    "add 'sender:' with 'name:', 'email:' and 'reply_to:' under it")
        return None
    c.keys(sender, ("name", "email", "reply_to"), "'sender'")
    email = c.email(sender, "email", "'sender'")
    return model.Sender(name=c.header_text(sender, "name", "'sender'"), email=email,
                        reply_to=c.email(sender, "reply_to", "'sender'", required=False) or email)


def _footer(c: _Checker, data: LocDict) -> model.Footer | None:
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
                        privacy_text=c.text(footer, "privacy_text", "'footer'", required=False,
                                            default="Privacy notice"))


ISSUE_KEYS = ("slug", "edition", "title", "subject", "preheader", "date", "language", "sender",
              "greeting", "tracking", "opens", "untracked_links", "sections", "footer")


def parse_issue(data: Any, file: str, root: Path, theme: model.Theme,
                default_slug: str) -> tuple[model.Issue | None, list[Problem]]:
    """Validate loaded YAML ``data`` into an Issue; returns (issue or None, problems)."""
    c = _Checker(file)
    issue = c.mapping(data, (1, 1), "the issue file")
    if issue is None:
        return None, c.problems
    c.keys(issue, ISSUE_KEYS, "the issue")
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
    if issue.get("tracking") is False:
        # YAML 1.1 reads a bare `off` as false; editors mean the tracking mode.
        issue["tracking"] = "off"
    tracking = c.text(issue, "tracking", "the issue", required=False, default="aggregate")
    if tracking not in ("aggregate", "individual", "off"):
        c.error(issue.value_at("tracking"), f"tracking '{tracking}' is not a tracking mode",
                "use aggregate (the default), individual or off")
    language = c.text(issue, "language", "the issue", required=False, default="en-GB")
    if not re.fullmatch(r"[a-z]{2,3}(-[A-Z]{2})?", language):
        c.error(issue.value_at("language"), f"'{language}' is not a language tag",
                "write e.g. en-GB or cy-GB")
    untracked: list[str] = []
    if "untracked_links" in issue:
        for index, url in enumerate(c.items(issue, "untracked_links", "the issue")):
            if isinstance(url, str):
                c.check_url(url, issue["untracked_links"].item_at(index))
                untracked.append(url)
    greeting = c.text(issue, "greeting", "the issue", required=False)
    result = model.Issue(
        slug=slug,
        edition=c.text(issue, "edition", "the issue"),
        title=c.text(issue, "title", "the issue"),
        subject=subject,
        preheader=preheader,
        date=c.date(issue, "date", "the issue"),
        sender=_sender(c, issue),  # type: ignore[arg-type]
        sections=_sections(c, issue, root),
        footer=_footer(c, issue),  # type: ignore[arg-type]
        theme=theme,
        language=language,
        tracking=tracking,  # type: ignore[arg-type]
        opens=c.flag(issue, "opens", False),
        greeting=greeting,
        untracked_links=tuple(untracked),
        source=file,
    )
    errors = [p for p in c.problems if p.severity == "error"]
    return (None if errors else result), c.problems


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def load_theme(path: Path, root: Path) -> tuple[model.Theme, list[Problem]]:
    """Read ``theme.yaml`` (brand colour, logo, footer text); defaults when the file is absent."""
    if not path.exists():
        return model.Theme(), []
    file = _display(path, root)
    data, problems = read_yaml(path, file)
    c = _Checker(file)
    c.problems.extend(problems)
    theme = c.mapping(data, (1, 1), "the theme") if data is not None else None
    if theme is None:
        return model.Theme(), c.problems
    fields = ("brand_colour", "text_colour", "background_colour", "link_colour", "font_family",
              "logo", "footer_text")
    c.keys(theme, fields, "the theme")
    values: dict[str, Any] = {}
    for key in fields[:4]:
        if key in theme:
            colour = c.text(theme, key, "the theme")
            if COLOUR_RE.match(colour):
                values[key] = colour.lower()
            else:
                c.error(theme.value_at(key), f"{key} '{colour}' is not a colour",
                        "write six hex digits in quotes, e.g. \"#1d4f91\"")
    if "font_family" in theme:
        values["font_family"] = c.text(theme, "font_family", "the theme")
    if "footer_text" in theme:
        values["footer_text"] = c.text(theme, "footer_text", "the theme")
    if "logo" in theme:
        logo = c.mapping(theme["logo"], theme.value_at("logo"), "the theme's logo")
        if logo is not None:
            image = _image(c, logo, "the theme's logo", root, ("url",))
            url = c.url(logo, "url", "the theme's logo", required=False)
            if image is not None:
                values["logo"] = model.Logo(src=image.src, alt=image.alt, url=url,
                                            width=image.width or 160)
    result = model.Theme(**values)
    from newsletter.render.colour import theme_contrast_problems

    for message in theme_contrast_problems(result):
        c.error(theme.mark, message, "pick darker text or brand colours (WCAG 2.2 AA needs 4.5:1)")
    return result, c.problems


def load_issue(path: Path, project: Project) -> tuple[model.Issue | None, list[Problem]]:
    """Load and validate the issue at ``path``; returns (issue or None, every problem found)."""
    root = project.root
    theme, theme_problems = load_theme(project.theme_path, root)
    file = _display(path, root)
    data, problems = read_yaml(path, file)
    if data is None:
        return None, theme_problems + problems
    issue, more = parse_issue(data, file, root, theme, default_slug=slugify(path.stem))
    problems = theme_problems + problems + more
    if any(p.severity == "error" for p in problems):
        issue = None
    return issue, problems
