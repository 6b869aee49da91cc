"""Markdown bodies -> HTML for the email and plain text for the text part, in one pass.

Raw HTML in Markdown is off (editors cannot inject markup), headings are shifted below the
section heading so the outline stays in order, and every link is registered for a click ID.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

_md = MarkdownIt("commonmark", {"html": False, "typographer": False})

# Section headings are <h2>; Markdown headings inside a body start one level lower.
_HEADING_SHIFT = 2

AddLink = Callable[[str, str], tuple[str, int]]
"""(url, text) -> (href to write, reference number for the text part)."""


def _link_text(children: Sequence[Token], start: int) -> str:
    words = []
    for tok in children[start + 1:]:
        if tok.type == "link_close":
            break
        if tok.type in ("text", "code_inline"):
            words.append(tok.content)
        elif tok.type in ("softbreak", "hardbreak"):
            words.append(" ")
    return "".join(words).strip()


def render_body(body: str, add_link: AddLink) -> tuple[str, str]:
    """Render one Markdown ``body``; returns (html, text)."""
    tokens = _md.parse(body)
    refs: dict[int, int] = {}
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            level = min(int(tok.tag[1]) + _HEADING_SHIFT, 6)
            tok.tag = f"h{level}"
        if tok.type == "inline" and tok.children:
            for index, child in enumerate(tok.children):
                if child.type == "link_open":
                    href, number = add_link(str(child.attrGet("href") or ""),
                                            _link_text(tok.children, index))
                    child.attrSet("href", href)
                    refs[id(child)] = number
    html = _md.renderer.render(tokens, _md.options, {})
    return html.strip(), _to_text(tokens, refs)


def _inline_text(tok: Token, refs: dict[int, int]) -> str:
    out: list[str] = []
    pending: list[int] = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "link_open":
            pending.append(refs[id(child)])
        elif child.type == "link_close" and pending:
            out.append(f" [{pending.pop()}]")
        elif child.type == "image":
            out.append(child.content)
    return "".join(out)


def _to_text(tokens: list[Token], refs: dict[int, int]) -> str:
    blocks: list[tuple[str, str]] = []  # (separator before, text)
    prefixes: list[str] = []
    first_item = False
    counters: list[int] = []
    heading = False
    for tok in tokens:
        if tok.type == "bullet_list_open":
            prefixes.append("-")
            counters.append(0)
            first_item = True
        elif tok.type == "ordered_list_open":
            first_item = True
            prefixes.append("#")
            counters.append(int(tok.attrGet("start") or 1) - 1)
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            prefixes.pop()
            counters.pop()
        elif tok.type == "list_item_open":
            counters[-1] += 1
        elif tok.type == "heading_open":
            heading = True
        elif tok.type == "heading_close":
            heading = False
        elif tok.type == "inline":
            text = _inline_text(tok, refs)
            if heading:
                blocks.append(("\n\n", text.upper()))
            elif prefixes:
                marker = "-" if prefixes[-1] == "-" else f"{counters[-1]}."
                indent = "  " * (len(prefixes) - 1)
                blocks.append(("\n\n" if first_item else "\n",
                               textwrap.fill(text, 72, initial_indent=f"{indent}{marker} ",
                                             subsequent_indent=indent + " " * (len(marker) + 1),
                                             break_on_hyphens=False, break_long_words=False)))
                first_item = False
            else:
                blocks.append(("\n\n", textwrap.fill(text, 72, break_on_hyphens=False,
                                                      break_long_words=False)))
        elif tok.type in ("fence", "code_block"):
            blocks.append(("\n\n", tok.content.rstrip()))
    return "".join(sep + text for sep, text in blocks).lstrip("\n")
