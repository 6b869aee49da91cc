"""The located-field checker every hand-edited file goes through: issues, the theme, the
settings and ``audiences.yaml``.

The YAML loader (:mod:`newsletter.yamlfile`) hands over every value as the text the editor
typed; a :class:`Fields` reads one field at a time by the type the schema expects, converts it
(a date, a whole number, true/false), and records a :class:`~newsletter.errors.Problem` at the
value's ``line:column`` when it does not fit. It never stops at the first problem: callers read
every field, then look at :attr:`Fields.problems`.

The conversions, and why:

- **text** is kept exactly as written: ``03000410000``, ``14:00``, ``No``, ``1.10`` stay text.
  A bare ``null`` is refused (YAML's word for "nothing": quote it if you mean the word).
- **true/false** accepts YAML 1.1's spellings, any case: true/false, yes/no, on/off, y/n.
- **dates** are ``YYYY-MM-DD`` (month and day may be one digit), and must exist.
- **whole numbers** are plain digits: no sign, ``_``, ``0x``, exponent or decimals.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from typing import Any
from urllib.parse import SplitResult, urlsplit

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import Problem
from newsletter.yamlfile import LocDict, LocList, Mark, Plain

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LINK_SCHEMES = ("http", "https", "mailto")
TRUE_WORDS = frozenset({"true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"false", "no", "off", "n"})
NULL_WORDS = frozenset({"null", "Null", "NULL"})
# A host name (letters of any script, digits, "-", "_", ".") or an IP address in brackets.
_HOST_RE = re.compile(r"[\w.-]+|[0-9a-f:.]+")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")


def kind(value: Any) -> str:
    """What ``value`` is, in the editor's words (for "must be text, not a list")."""
    if value is None:
        return "empty"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def invisible_characters(value: str) -> str:
    """The control and invisible format characters in ``value`` (tab, zero-width space,
    soft hyphen...), spelled out as code points; '' if none."""
    found = sorted({ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf")})
    return ", ".join(f"U+{ord(ch):04X}" for ch in found)


_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"
URL_HINT = "links must start with https:// (or http://, mailto:)"


def url_problem(value: str, schemes: tuple[str, ...] = LINK_SCHEMES) -> str:
    """Why ``value`` is not an acceptable link, or '' when it is."""
    return url_problem_and_hint(value, schemes)[0]


def url_problem_and_hint(value: str,
                         schemes: tuple[str, ...] = LINK_SCHEMES) -> tuple[str, str]:
    """(why ``value`` is not an acceptable link, what to do), or ('', '') when it is."""
    if value.startswith("#") and len(value) > 1:
        return "", ""
    if value[:1] in _QUOTES or value[-1:] in _QUOTES:
        return (f"link '{value}' is in quotation marks",
                "remove the quotation marks around the address (a word processor may have "
                "added them)")
    spaced = any(ch.isspace() for ch in value)
    hidden = invisible_characters(value)
    if spaced or hidden:
        what = "spaces" if spaced else f"invisible characters ({hidden})"
        return (f"link '{value}' contains {what}",
                "retype the address, or copy it again from the browser's address bar; write "
                "%20 for a space")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return (f"link '{value}' is not a valid address ({exc})",
                "look for a stray [ or ] in the host name, or a port that is not a number")
    return _scheme_and_host_problem(value, parts, schemes), URL_HINT


def _scheme_and_host_problem(value: str, parts: SplitResult, schemes: tuple[str, ...]) -> str:
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        return (f"link '{value}' is not an {'/'.join(schemes)} link"
                if scheme else f"link '{value}' has no scheme such as https://")
    if scheme in ("http", "https") and not parts.netloc:
        return f"link '{value}' has no host name"
    if scheme in ("http", "https") and not _HOST_RE.fullmatch(parts.hostname or ""):
        return f"link '{value}' has an invalid host name"
    if scheme == "mailto" and "@" not in parts.path:
        return f"link '{value}' has no email address"
    return ""


class Fields:
    """Collects problems for one file while reading fields out of located mappings.

    Several checkers may share one ``problems`` list (``audiences.yaml`` and its CSV files).
    """

    def __init__(self, file: str, problems: list[Problem] | None = None) -> None:
        self.file = file
        self.problems: list[Problem] = [] if problems is None else problems

    @property
    def has_errors(self) -> bool:
        """True when at least one problem is an error (not a warning)."""
        return any(p.severity == "error" for p in self.problems)

    def error(self, at: Mark, message: str, hint: str = "") -> None:
        """Record an error at ``at`` (line, column)."""
        self.problems.append(Problem(self.file, at[0], at[1], message, hint))

    def warn(self, at: Mark, message: str, hint: str = "") -> None:
        """Record a warning at ``at`` (line, column)."""
        self.problems.append(Problem(self.file, at[0], at[1], message, hint, "warning"))

    # --- shape ---------------------------------------------------------------------------

    def mapping(self, value: Any, at: Mark, what: str) -> LocDict | None:
        """``value`` if it is a mapping, else None after reporting it."""
        if isinstance(value, LocDict):
            return value
        self.error(at, f"{what} must be a mapping of 'key: value' lines, not {kind(value)}",
                   f"indent the fields of {what} under it, one 'key: value' per line")
        return None

    def keys(self, data: LocDict, allowed: tuple[str, ...], what: str) -> None:
        """Report every key of ``data`` not in ``allowed``, suggesting the close one."""
        for key in data:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "allowed here: " + ", ".join(allowed))
            self.error(data.key_at(key), f"unknown key '{key}' in {what}", hint)

    def items(self, data: LocDict, key: str, what: str) -> LocList:
        """The required, non-empty list under ``key`` (an empty list after reporting)."""
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
        self.error(data.value_at(key), f"'{key}' must be a list, not {kind(value)}",
                   "write each item on its own line starting with '- '")
        return LocList()

    # --- text ----------------------------------------------------------------------------

    def value_text(self, value: Any, at: Mark, name: str) -> str | None:
        """``value`` as text, or None after reporting why it is not (a list, a bare null)."""
        if isinstance(value, Plain) and value in NULL_WORDS:
            self.error(at, f"'{name}' is {value}, YAML's word for nothing",
                       f'write it in quotes ("{value}") if you mean the word, or leave the '
                       "value empty")
            return None
        if not isinstance(value, str):
            self.error(at, f"'{name}' must be text, not {kind(value)}",
                       "write it on one line after the colon, in quotes if it contains ': '")
            return None
        return value

    def text(self, data: LocDict, key: str, what: str, *, required: bool = True,
             default: str = "") -> str:
        """The text under ``key`` exactly as written (stripped when it is one line)."""
        if data.get(key) is None:
            if required:
                self.error(data.mark, f"missing required field '{key}' in {what}",
                           f"add a line '{key}: ...' to {what}")
            return default
        value = self.value_text(data[key], data.value_at(key), key)
        if value is None:
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

    def url(self, data: LocDict, key: str, what: str, *, required: bool = True,
            schemes: tuple[str, ...] = LINK_SCHEMES) -> str:
        """A link: text that :func:`url_problem` accepts."""
        value = self.text(data, key, what, required=required)
        if value:
            self.check_url(value, data.value_at(key), schemes)
        return value

    def check_url(self, value: str, at: Mark, schemes: tuple[str, ...] = LINK_SCHEMES) -> None:
        """Report ``value`` at ``at`` unless it is an acceptable link."""
        problem, hint = url_problem_and_hint(value, schemes)
        if problem:
            self.error(at, problem, hint)

    def email(self, data: LocDict, key: str, what: str, *, required: bool = True) -> str:
        """An email address, checked by email-validator (syntax only, no DNS)."""
        value = self.header_text(data, key, what, required=required)
        if not value:
            return value
        try:
            validate_email(value, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            self.error(data.value_at(key), f"'{value}' is not an email address: {exc}",
                       "write a role address such as prevent-team@example.org")
        return value

    # --- converted -----------------------------------------------------------------------

    def flag(self, data: LocDict, key: str, default: bool) -> bool:
        """true/false, in any of YAML 1.1's spellings (yes/no, on/off, y/n)."""
        value = data.get(key)
        if value is None:
            return default
        word = value.strip().lower() if isinstance(value, str) else None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        shown = f"'{value}'" if isinstance(value, str) else kind(value)
        self.error(data.value_at(key), f"'{key}' must be true or false, not {shown}",
                   f"write '{key}: true' or '{key}: false'")
        return default

    def date(self, data: LocDict, key: str, what: str) -> dt.date | None:
        """A required calendar date written YYYY-MM-DD."""
        if data.get(key) is None:
            self.error(data.mark, f"missing required field '{key}' in {what}",
                       f"add a line '{key}: YYYY-MM-DD', e.g. '{key}: 2026-03-17'")
            return None
        value = data[key]
        match = _DATE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match:
            try:
                return dt.date(*(int(part) for part in match.groups()))
            except ValueError:
                pass
        shown = f"'{value}'" if isinstance(value, str) else kind(value).capitalize()
        self.error(data.value_at(key), f"{shown} is not a valid date",
                   "write dates as YYYY-MM-DD, e.g. 2026-03-17, and check the day exists")
        return None

    def whole_number(self, data: LocDict, key: str, low: int, high: int,
                     message: str, hint: str) -> int | None:
        """A whole number from ``low`` to ``high`` written as plain digits; None if absent."""
        value = data.get(key)
        if value is None:
            return None
        text = value.strip() if isinstance(value, str) else ""
        if re.fullmatch(r"[0-9]{1,9}", text) and low <= int(text) <= high:
            return int(text)
        self.error(data.value_at(key), message, hint)
        return None
