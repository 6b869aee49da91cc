"""Checks on an article's Markdown body: links that are not http(s)/mailto/tel, links
without text, and vague link text.

Bodies are parsed here with link validation off, so that ``javascript:`` links show up as
tokens to report rather than being quietly turned into text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.fields import LINK_SCHEMES, Fields, url_problem
from newsletter.yamlfile import Mark

VAGUE_LINK_TEXT = {"click here", "here", "click", "read more", "more", "link", "this link",
                   "this", "go", "more info", "this page"}

_markdown = MarkdownIt("commonmark", {"html": False})
_markdown.validateLink = lambda url: True  # type: ignore[method-assign]

Locate = Callable[[int], Mark]
"""Line within the body -> (line, column) in the file."""


def link_text_warning(c: Fields, text: str, at: Mark) -> None:
    """Warn when ``text`` (a link's words) does not say where the link goes."""
    if text.strip().lower().rstrip(".!") in VAGUE_LINK_TEXT:
        c.warn(at, f"link text '{text}' does not say where the link goes",
               "screen-reader users hear links out of context: name the destination, "
               "e.g. 'Read the Prevent duty guidance'")


def _inline(tokens: list[Token]) -> Iterator[tuple[Token, int]]:
    """Every inline child token with the body line it stands on."""
    for block in tokens:
        if block.type != "inline" or not block.children:
            continue
        line = block.map[0] if block.map else 0
        for tok in block.children:
            yield tok, line
            if tok.type in ("softbreak", "hardbreak"):
                line += 1


def check_body(c: Fields, body: str, locate: Locate) -> None:
    """Report every problem in the Markdown ``body``; ``locate`` turns body lines into marks."""
    href: str | None = None
    words: list[str] = []
    for tok, line in _inline(_markdown.parse(body)):
        if tok.type == "link_open":
            href, words = str(tok.attrGet("href") or ""), []
        elif tok.type == "link_close" and href is not None:
            _check_link(c, href, "".join(words).strip(), locate(line))
            href = None
        elif tok.type in ("text", "code_inline", "text_special") and href is not None:
            words.append(tok.content)


def _check_link(c: Fields, href: str, text: str, at: Mark) -> None:
    problem = url_problem(href, (*LINK_SCHEMES, "tel"))
    if problem:
        c.error(at, problem, "Markdown links are written [text](https://...)")
    if not text:
        c.error(at, f"link to '{href}' has no text", "write [what the link is](URL)")
    else:
        link_text_warning(c, text, at)
