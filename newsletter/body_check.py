"""Checks on an article's Markdown body: what would reach readers other than as written.

The renderer keeps raw HTML off (editors cannot inject markup), so pasted HTML would be sent
as visible tags; a link that does not parse (a space in the address, a space between ``]``
and ``(``) would be sent as text with its brackets, and silently drop out of the link count.
Both are reported here, as are links that are not http(s)/mailto/tel, links without text,
vague link text, and Markdown images (their files are neither checked nor published: articles
take an ``image:``).

Bodies are parsed here with HTML *on* and link validation off, so that pasted tags and
``javascript:`` links show up as tokens to report rather than being quietly turned into text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsletter.fields import LINK_SCHEMES, Fields, url_problem_and_hint
from newsletter.yamlfile import Mark

VAGUE_LINK_TEXT = {"click here", "here", "click", "read more", "more", "link", "this link",
                   "this", "go", "more info", "this page"}


class _AsTyped(MarkdownIt):
    """markdown-it that keeps every link, as the editor typed it, for the checks to judge."""

    def validateLink(self, url: str) -> bool:
        return True

    def normalizeLink(self, url: str) -> str:
        # Check the address as typed, not percent-encoded: "%E2%80%9C" hides a smart quote
        # and "%C2%AD" a soft hyphen.
        return url


_markdown = _AsTyped("commonmark", {"html": True})
# Keep backslash escapes as tokens of their own, so an escaped \[bracket\] is not mistaken
# for a link that failed to parse.
_markdown.disable("text_join")

# Link syntax left in the text after parsing: "](", "![", "][", or "] (https://...".
_LEFTOVER_RE = re.compile(r"\]\(|!\[|\]\[|\]\s+\(\s*<?(?:https?:|mailto:|tel:|www\.)", re.I)

Locate = Callable[[int], Mark]
"""Line within the body -> (line, column) in the file."""


def link_text_warning(c: Fields, text: str, at: Mark) -> None:
    """Warn when ``text`` (a link's words) does not say where the link goes."""
    if text.strip().lower().rstrip(".!") in VAGUE_LINK_TEXT:
        c.warn(at, f"link text '{text}' does not say where the link goes",
               "screen-reader users hear links out of context: name the destination, "
               "e.g. 'Read the Prevent duty guidance'")


def _inline(tokens: list[Token]) -> Iterator[tuple[Token, int]]:
    """Every inline child token with the body line it stands on; html blocks too."""
    for block in tokens:
        if block.type == "html_block":
            yield block, block.map[0] if block.map else 0
        if block.type != "inline" or not block.children:
            continue
        line = block.map[0] if block.map else 0
        for tok in block.children:
            yield tok, line
            if tok.type in ("softbreak", "hardbreak"):
                line += 1


def _leftover(text: str) -> str:
    """The piece of ``text`` around link syntax that did not parse, or ''."""
    match = _LEFTOVER_RE.search(text)
    if not match:
        return ""
    at = match.start()
    start = at if text[at] == "!" else max(text.rfind("[", 0, at), 0)
    if start > 0 and text[start - 1] == "!":
        start -= 1
    end = text.find("]" if match.group() == "][" else ")", match.end())
    return text[start:end + 1 if end >= 0 else len(text)].strip()


def check_body(c: Fields, body: str, locate: Locate) -> None:
    """Report every problem in the Markdown ``body``; ``locate`` turns body lines into marks."""
    html_lines: dict[int, list[str]] = {}
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
        elif tok.type in ("html_inline", "html_block"):
            html_lines.setdefault(line, []).append((tok.content.strip().splitlines() or [""])[0])
        elif tok.type == "image":
            c.error(locate(line), f"Markdown image '{tok.attrGet('src')}' in the body",
                    "images in a body are not checked or published: give the article an "
                    "'image:' with 'src:' and 'alt:' instead")
        elif tok.type == "text" and (piece := _leftover(tok.content)):
            c.error(locate(line), f"'{piece}' is not a working Markdown link or image: "
                    "readers would see the brackets",
                    "write [link text](https://...) with no space between ] and (, and no "
                    "spaces in the address (write %20 for a space)")
    for line, tags in html_lines.items():
        shown = " ".join(dict.fromkeys(tags))
        c.error(locate(line), f"raw HTML in Markdown: {shown}",
                "readers would see the tags as text: use Markdown instead, e.g. **bold**, "
                "*italic*, [text](https://...), or a blank line between paragraphs")


def _check_link(c: Fields, href: str, text: str, at: Mark) -> None:
    problem, hint = url_problem_and_hint(href, (*LINK_SCHEMES, "tel"))
    if problem:
        c.error(at, problem, hint)
    if not text:
        c.error(at, f"link to '{href}' has no text", "write [what the link is](URL)")
    else:
        link_text_warning(c, text, at)
