"""Header lines that every mail system reads back exactly (RFC 5322 folding, RFC 2047 words).

Python's ``email`` folder gets two things wrong that matter to us: it puts the space between
two words of a long non-ASCII subject *between* two encoded-words, where RFC 2047 6.2 tells
decoders to drop it (``café ✓ Ünïcödé`` arrives as ``café ✓Ünïcödé``), and it can make an
encoded-word of 76 characters (the limit is 75, RFC 2047 2). So headers are written here:

- text that needs encoding becomes UTF-8 encoded-words of at most 75 characters, and every
  space of the original text is *inside* an encoded-word, never between two of them;
- ASCII words stay readable, and the space between a plain word and an encoded-word is a real
  space, which decoders keep;
- lines are folded at 78 characters (RFC 5322 2.1.1) wherever a space allows it. Only a single
  unbreakable item (a long URL in ``List-Unsubscribe``) can make a longer line.
"""

from __future__ import annotations

import base64
import re

from newsletter.errors import NewsletterError

LINE = 78            # RFC 5322 2.1.1: SHOULD be no more than 78 characters, without CRLF
WORD = 75            # RFC 2047 2: an encoded-word is at most 75 characters
_PREFIX_Q, _PREFIX_B, _SUFFIX = "=?utf-8?q?", "=?utf-8?b?", "?="
_OVERHEAD = len(_PREFIX_Q) + len(_SUFFIX)
# RFC 2047 5(3): in a phrase, Q-encoded text may hold only these as themselves. Using the
# strictest set everywhere keeps one encoder valid in subjects and display names alike.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def _q_char(ch: str) -> str:
    if ch in _Q_SAFE:
        return ch
    if ch == " ":
        return "_"
    return "".join(f"={b:02X}" for b in ch.encode("utf-8"))


def _q_length(text: str) -> int:
    return sum(len(_q_char(ch)) for ch in text)


def _b_length(byte_count: int) -> int:
    return 4 * -(-byte_count // 3)


class _Lines:
    """Header lines being filled: items separated by one space, folded before an item that
    would pass 78 characters."""

    def __init__(self, name: str) -> None:
        self.lines = [name + ":"]

    @property
    def room(self) -> int:
        """Characters left on the current line after the separating space."""
        return LINE - len(self.lines[-1]) - 1

    def add(self, item: str) -> None:
        # Folding before a long item that would not fit either way still helps: the line it
        # starts is as short as it can be.
        if len(item) > self.room and len(self.lines[-1]) > 1:
            self.lines.append("")
        self.lines[-1] += " " + item

    def add_encoded(self, text: str) -> None:
        """``text`` as encoded-words; its spaces stay inside them (decoders drop the ones
        between encoded-words)."""
        use_b = _b_length(len(text.encode("utf-8"))) < _q_length(text)
        prefix = _PREFIX_B if use_b else _PREFIX_Q
        position = 0
        while position < len(text):
            room = min(WORD, self.room) - _OVERHEAD
            if room < 12:              # not even one 4-byte character fits: next line
                self.lines.append("")
                room = WORD - _OVERHEAD
            end = position
            raw = 0                    # UTF-8 bytes taken (B) or encoded characters (Q)
            while end < len(text):
                if use_b:
                    grown = raw + len(text[end].encode("utf-8"))
                    fits = _b_length(grown) <= room
                else:
                    grown = raw + len(_q_char(text[end]))
                    fits = grown <= room
                if not fits:
                    break
                raw, end = grown, end + 1
            chunk = text[position:end]
            if use_b:
                encoded = base64.b64encode(chunk.encode("utf-8")).decode("ascii")
            else:
                encoded = "".join(_q_char(ch) for ch in chunk)
            self.add(prefix + encoded + _SUFFIX)
            position = end

    def render(self) -> bytes:
        return "\r\n".join(self.lines).encode("ascii") + b"\r\n"


def _words(lines: _Lines, text: str, plain: re.Pattern[str]) -> None:
    """Plain words as they are; runs of other words (with the spaces between them) encoded."""
    run: list[str] = []
    for token in text.split(" "):
        if plain.fullmatch(token) and "=?" not in token and len(token) < LINE - 1:
            if run:
                lines.add_encoded(" ".join(run))
                run = []
            lines.add(token)
        else:
            run.append(token)
    if run:
        lines.add_encoded(" ".join(run))


def _spaced_simply(text: str) -> bool:
    """Single spaces between words and none at the ends: the only spacing that survives
    being split into words and folded."""
    return bool(text) and text == text.strip(" ") and "  " not in text


def check_header_text(what: str, value: str) -> str:
    """``value``, or an error if it holds a line break (which would forge headers)."""
    if any(ch in value for ch in "\r\n\0"):
        raise NewsletterError(f"the {what} contains a line break, which would forge headers",
                              hint="remove line breaks from it in the issue file")
    return value


def unstructured(name: str, value: str) -> bytes:
    """``Name: value`` for free text (Subject), encoded and folded; ends with CRLF."""
    lines = _Lines(name)
    if _spaced_simply(value):
        _words(lines, value, _PRINTABLE)
    elif value:
        lines.add_encoded(value)            # every space kept exactly as written
    return lines.render()


def mailbox(name: str, display_name: str, address: str, *, brackets: bool = False) -> bytes:
    """``Name: display name <address>`` (From, To, Reply-To), encoded and folded.

    A display name of plain ASCII words stays as it is; one with characters that are special
    in an address header is quoted when it fits on a line; anything else is encoded.
    ``brackets``: ``<address>`` even without a display name (List-Id).
    """
    if not address.isascii() or any(ch in address for ch in " <>\r\n\0\"(),;:\\"):
        raise NewsletterError(f"{address!r} cannot be written in a {name} header",
                              hint="use a plain ASCII email address")
    lines = _Lines(name)
    if display_name:
        quoted = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        simple = _spaced_simply(display_name) and "=?" not in display_name
        if simple and all(_ATEXT.fullmatch(t) for t in display_name.split(" ")):
            _words(lines, display_name, _ATEXT)
        elif simple and display_name.isprintable() and display_name.isascii() \
                and len(quoted) <= LINE - 1:
            lines.add(quoted)
        elif simple:
            _words(lines, display_name, _ATEXT)
        else:
            lines.add_encoded(display_name)
    lines.add(f"<{address}>" if display_name or brackets else address)
    return lines.render()


def folded(name: str, items: list[str]) -> bytes:
    """``Name: item item...`` folded between items (each item is ASCII and unbreakable)."""
    lines = _Lines(name)
    for item in items:
        lines.add(item)
    return lines.render()
