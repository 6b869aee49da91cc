"""Members files as people export them from spreadsheets and address books.

A members file is a table whose first line names the columns. What is read:

- **Encodings**: UTF-8 with or without a byte-order mark ("CSV UTF-8"), and UTF-16 with one
  (Excel's "Unicode text"). Anything else (Excel's plain "CSV" in a Windows code page) is
  refused with the way to re-save it: guessing a code page would silently change names.
- **Separators**: comma, semicolon (Excel in much of Europe) and tab ("Unicode text"), found
  from the header line; an Excel ``sep=;`` first line says so outright.
- **Column names** in the common spellings (``E-mail address``, ``Email Address``, ``Mail``,
  ``Full name``, ``First name`` + ``Last name``, ``Organization``, ``Company``...).
- **Every row must have as many fields as the header.** A row with more is almost always an
  unquoted comma (``Smith, Jane``), which would shift the name into the organisation; a row
  with fewer has lost something. Both are errors naming the line.

Messages name ``file:line:field`` (the field number, as a spreadsheet counts columns).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from newsletter.fields import Fields
from newsletter.members import Member, MemberChecker

if TYPE_CHECKING:
    import _csv

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
# Normalised header (lower case, letters and digits only) -> what the column holds.
COLUMN_NAMES = {
    **dict.fromkeys(("email", "emailaddress", "mail", "mailaddress", "emails"), "email"),
    **dict.fromkeys(("name", "fullname", "contactname", "displayname"), "name"),
    **dict.fromkeys(("firstname", "givenname", "forename"), "first name"),
    **dict.fromkeys(("lastname", "surname", "familyname"), "last name"),
    **dict.fromkeys(("organisation", "organization", "organisationname", "organizationname",
                     "company", "companyname", "org"), "organisation"),
}
RESAVE = ('save it from your spreadsheet program as "CSV UTF-8 (Comma delimited)" '
          "(Excel: File > Save As)")
_HEADER_HINT = "its first line must name the columns, e.g. email,name,organisation"


def _normalise(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.casefold())


@dataclass(frozen=True)
class Layout:
    """How a members file is laid out: where its header is and which column holds what."""

    separator: str
    header_line: int                 # 1-based line of the header
    width: int                       # fields in the header
    position: dict[str, int]         # "email"/"name"/... -> 0-based field index


def _encoding(c: Fields, head: bytes) -> str | None:
    """The file's text encoding from its first bytes, or None after reporting it."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\0" in head:
        c.error((1, 1), "the members file looks like UTF-16 text without a byte-order mark",
                RESAVE)
        return None
    return "utf-8"


def _undecodable_line(path: Path, encoding: str) -> int:
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return raw[: exc.start].count(b"\n") + 1
    return 1


def read_members_file(checker: MemberChecker, path: Path, shown: str, key: str,
                      seen: dict[str, int]) -> list[Member]:
    """The members in the file at ``path`` (named ``shown`` in messages), every problem
    recorded in ``checker``."""
    c = checker.fields(shown)
    encoding = "utf-8"
    try:
        with path.open("rb") as raw:
            found = _encoding(c, raw.read(4096))
        if found is None:
            return []
        encoding = found
        # Streamed, not read whole: a 100,000-line file should not sit in memory three times.
        with path.open(encoding=encoding, newline="") as handle:
            layout = _layout(c, handle)
            if layout is None:
                return []
            reader = csv.reader(handle, delimiter=layout.separator)
            return _read_rows(checker, c, reader, layout, key, seen)
    except OSError as exc:
        c.error((1, 1), f"cannot read the members file: {exc.strerror}")
    except UnicodeDecodeError:
        c.error((_undecodable_line(path, encoding), 1),
                f"the members file is not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text",
                RESAVE)
    return []


def _layout(c: Fields, handle: IO[str]) -> Layout | None:
    """Read the optional ``sep=`` line and the header; None after reporting a problem."""
    line = 1
    first = handle.readline()
    separator = ""
    if first.strip().strip('"').lower().startswith("sep="):
        separator = first.strip().strip('"')[4:]
        if separator not in SEPARATORS:
            c.error((1, 1), f"the first line {first.strip()!r} names an unknown separator",
                    "use sep=, or sep=; or remove the line; or " + RESAVE)
            return None
        first, line = handle.readline(), 2
    if not first.strip():
        c.error((line, 1), "the members file is empty" if line == 1 else
                "the members file has no header line", _HEADER_HINT)
        return None
    separator = separator or _sniff(first)
    header = next(csv.reader([first], delimiter=separator), [])
    position = _columns(c, header, line)
    if position is None:
        return None
    return Layout(separator, line, len(header), position)


def _sniff(header: str) -> str:
    """The separator that splits the header line into the most fields naming an address."""
    def score(separator: str) -> tuple[bool, int]:
        fields = next(csv.reader([header], delimiter=separator), [])
        named = any(COLUMN_NAMES.get(_normalise(f)) == "email" for f in fields)
        return named, len(fields)

    return max(SEPARATORS, key=score)


def _columns(c: Fields, header: list[str], line: int) -> dict[str, int] | None:
    """What each recognised column holds; None after reporting a missing or doubled column."""
    meanings = [COLUMN_NAMES.get(_normalise(name)) for name in header]
    if "email" not in meanings:
        found = ", ".join(repr(h.strip()) for h in header)
        c.error((line, 1), f"the members file has no email column (found: {found})",
                f"{_HEADER_HINT}; a file separated by something other than commas, "
                f"semicolons or tabs cannot be read: {RESAVE}")
        return None
    position: dict[str, int] = {}
    for index, meaning in enumerate(meanings):
        name = header[index].strip()
        if meaning is None:
            c.warn((line, index + 1), f"column {name!r} is not used",
                   "the columns used are email, name (or first and last name) and organisation")
        elif meaning in position:
            first = header[position[meaning]].strip()
            c.error((line, index + 1), f"columns {first!r} and {name!r} both hold the "
                    f"{meaning}", "delete one of them, or rename it so it is not read")
            return None
        else:
            position[meaning] = index
    return position


def _rows(reader: _csv.Reader, c: Fields,
          offset: int) -> Iterator[tuple[int, list[str]]]:
    """(line the row starts on, row) for every row; a CSV error is reported and ends it."""
    while True:
        # A quoted field may span lines: report the line the row starts on.
        line = reader.line_num + 1 + offset
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            c.error((reader.line_num + offset, 1),
                    f"cannot read the CSV: {exc}", RESAVE)
            return
        yield line, row


def _read_rows(checker: MemberChecker, c: Fields, reader: _csv.Reader, layout: Layout,
               key: str, seen: dict[str, int]) -> list[Member]:
    members: list[Member] = []
    at = layout.position
    email, organisation = at["email"], at.get("organisation")
    name_from = _name_reader(at)
    name_at = at.get("name", at.get("first name", at.get("last name", email)))
    columns = {"email": email + 1, "name": name_at + 1,
               "organisation": (email if organisation is None else organisation) + 1}
    for line, row in _rows(reader, c, layout.header_line):
        if not any(map(str.strip, row)):
            continue
        if len(row) != layout.width:
            c.error((line, 1), f"this row has {len(row)} fields but the header has "
                    f"{layout.width}", 'put a field that contains the separator in double '
                    'quotes ("Smith, Jane"), or ' + RESAVE + ", which does that for you")
            continue
        where = {name: (line, column) for name, column in columns.items()}
        member = checker.member(c, where, row[email], name_from(row),
                                "" if organisation is None else row[organisation])
        if member is not None:
            checker.add(members, seen, key, member, c, where["email"])
    return members


def _name_reader(position: dict[str, int]) -> Callable[[list[str]], str]:
    """How to read a row's name: its name column, or first and last name joined."""
    if "name" in position:
        index = position["name"]
        return lambda row: row[index]
    parts = [position[part] for part in ("first name", "last name") if part in position]
    return lambda row: " ".join(row[i].strip() for i in parts if row[i].strip())
