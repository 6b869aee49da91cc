"""Issue model -> MJML, HTML email, plain text and web version, collecting every link.

Rendering happens once per issue. Per-recipient values stay as placeholders (see
``newsletter.links``) so sending only substitutes text.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from newsletter import model
from newsletter.links import Link, LinkRegistry
from newsletter.render.inline import inline_css, mjml_to_html
from newsletter.render.markdown import render_body
from newsletter.render.web import archive_url

EMAIL_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"


@dataclass(frozen=True)
class Rendered:
    """Everything one render produces."""

    mjml: str
    html: str
    text: str
    web_html: str
    links: list[Link]
    templates: list[Path]


def date_text(day: dt.date) -> str:
    """A date as British readers write it: Tuesday 17 March 2026."""
    return f"{day:%A} {day.day} {day:%B %Y}"


# Kept between builds (the preview rebuilds on every save): compiling the templates is a
# third of a build, and Jinja's auto_reload still picks up an edited template by its mtime.
@functools.lru_cache(maxsize=8)
def _environments(templates_dir: Path) -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.FileSystemLoader(str(templates_dir))
    html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)
    text = jinja2.Environment(loader=loader, autoescape=False,  # plain text: nothing to escape
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return html, text


class _ViewBuilder:
    """Turns the model into template values, registering each link as it goes."""

    def __init__(self, issue: model.Issue, registry: LinkRegistry, image_src: dict[str, str],
                 preview: bool = False) -> None:
        self.issue = issue
        self.preview = preview
        self.registry = registry
        self.image_src = image_src
        self.text_links: list[dict[str, Any]] = []

    def link(self, url: str, text: str, section: str, kind: model.LinkKind,
             track: bool = True) -> dict[str, Any]:
        href = self.registry.add(url, text, section, kind, track)
        entry = {"href": href, "n": len(self.text_links) + 1, "text": text}
        self.text_links.append(entry)
        return entry

    def asset(self, src: str) -> str:
        return self.image_src.get(src, src)

    def section(self, s: model.Section) -> dict[str, Any]:
        view: dict[str, Any] = {"kind": s.kind, "id": s.id, "heading": s.heading}
        if isinstance(s, model.Article):
            def add(url: str, text: str) -> tuple[str, int]:
                entry = self.link(url, text, s.id, "article")
                return entry["href"], entry["n"]
            view["body_html"], view["body_text"] = render_body(s.body, add)
            view["image"] = ({"src": self.asset(s.image.src), "alt": s.image.alt,
                              "width": s.image.width} if s.image else None)
            view["button"] = (dict(self.link(s.button.url, s.button.text, s.id, "cta",
                                             s.button.track), text=s.button.text)
                              if s.button else None)
        elif isinstance(s, model.KeyMessages):
            view["messages"] = list(s.messages)
        elif isinstance(s, model.Events):
            view["events"] = [
                dict(self.link(e.url, e.title, s.id, "event", e.track), title=e.title,
                     when=date_text(e.date) + (f", {e.time}" if e.time else ""),
                     place=e.place, description=e.description)
                for e in s.events]
        elif isinstance(s, model.Resources):
            view["resources"] = [
                dict(self.link(r.url, r.label, s.id, "download", r.track), label=r.label,
                     file_type=r.file_type, size=r.size, description=r.description)
                for r in s.resources]
        elif isinstance(s, model.Contacts):
            view["contacts"] = [self._contact(c, s.id) for c in s.contacts]
        return view

    def _contact(self, c: model.Contact, section: str) -> dict[str, Any]:
        view: dict[str, Any] = {"role": c.role, "team": c.team, "email": c.email,
                                "phone": c.phone}
        if c.email:
            view["email_href"] = self.registry.add(f"mailto:{c.email}", c.email, section,
                                                   "contact")
        if c.phone:
            digits = "".join(ch for ch in c.phone if ch.isdigit() or ch == "+")
            view["phone_href"] = self.registry.add(f"tel:{digits}", c.phone, section, "contact")
        return view

    def context(self, web: bool) -> dict[str, Any]:
        issue, theme = self.issue, self.issue.theme
        logo = None
        if theme.logo:
            href = (self.link(theme.logo.url, theme.logo.alt, "header", "logo")["href"]
                    if theme.logo.url else "")
            logo = {"src": self.asset(theme.logo.src), "alt": theme.logo.alt,
                    "width": theme.logo.width, "href": href}
        # The email's "view in browser" is the email outlet's link; the plain address is the
        # archive's (newsletter.outlets).
        view_href = self.registry.view_href(issue.slug, "email")
        sections = [self.section(s) for s in issue.sections]
        footer = {"sender": issue.footer.sender, "reason": issue.footer.reason,
                  "privacy_text": issue.footer.privacy_text,
                  "privacy_href": self.link(issue.footer.privacy_url, issue.footer.privacy_text,
                                            "footer", "footer")["href"]}
        honeypot = ""
        if self.registry.tracking_on and not web:
            # Only a machine follows an invisible link: any hit on it marks a scanner.
            honeypot = self.registry.add(self.registry.view_href(issue.slug),
                                         "Newsletter archive", "footer", "honeypot")
        greeting = issue.greeting.replace("{name}", "{{name}}") if not web else ""
        return {
            "issue": issue, "theme": theme, "logo": logo, "sections": sections,
            "footer": footer, "date_text": date_text(issue.date), "view_href": view_href,
            # The preview has no recipient, so there is no unsubscribe page to point at.
            "unsubscribe_href": (self.registry.unsubscribe_href() if not self.preview
                                 else "#unsubscribe-link-is-filled-in-when-sending"),
            "web": web,
            "archive_href": archive_url(self.registry.tracking_url) if web else "",
            "honeypot_href": honeypot, "greeting": greeting,
            "open_src": self.registry.open_pixel_src() if issue.opens and not web else "",
            "text_links": self.text_links,
            "feedback": self._feedback(),
        }

    def _feedback(self) -> dict[str, str] | None:
        feedback = self.issue.feedback
        if feedback is None:
            return None
        if self.registry.tracking_on:
            yes, no = self.registry.feedback_href("yes"), self.registry.feedback_href("no")
        else:   # the preview: nothing to count yet
            yes = no = "#feedback-is-counted-once-sent"
        return {"question": feedback.question, "yes": feedback.yes, "no": feedback.no,
                "yes_href": yes, "no_href": no}


def render_issue(issue: model.Issue, templates_dir: Path, *, tracking_url: str,
                 tracked: bool = True, image_src: dict[str, str] | None = None) -> Rendered:
    """Render ``issue`` with the templates in ``templates_dir``.

    ``tracked=False`` (the preview) writes every link as its destination. ``image_src`` maps
    an image's ``src`` as written to the URL to load it from (its published copy); an image
    not in it is written as it is.
    """
    image_src = image_src or {}
    html_env, text_env = _environments(templates_dir)
    registry = LinkRegistry(tracking_url=tracking_url,
                            tracking_on=tracked and issue.tracking != "off",
                            untracked_urls=frozenset(issue.untracked_links))
    builder = _ViewBuilder(issue, registry, image_src, preview=not tracked)
    context = builder.context(web=False)
    mjml_source = html_env.get_template(EMAIL_TEMPLATE).render(context)
    text = text_env.get_template(TEXT_TEMPLATE).render(context)
    html = inline_css(mjml_to_html(mjml_source))

    # The web version's links are tracked too, for nobody: the tracker fills them per outlet.
    web_registry = LinkRegistry(tracking_url=tracking_url, tracking_on=registry.tracking_on,
                                untracked_urls=registry.untracked_urls)
    web_builder = _ViewBuilder(issue, web_registry, image_src, preview=not tracked)
    web_mjml = html_env.get_template(EMAIL_TEMPLATE).render(web_builder.context(web=True))
    # The web version is a page, not an email: browsers read <style>, so no inlining needed.
    web_html = mjml_to_html(web_mjml)
    used = [templates_dir / EMAIL_TEMPLATE, templates_dir / TEXT_TEMPLATE]
    return Rendered(mjml=mjml_source, html=html, text=text, web_html=web_html,
                    links=registry.links, templates=used)
