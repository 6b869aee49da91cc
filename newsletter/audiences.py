"""Partner lists: load and validate ``audiences.yaml``, then plan who gets an issue.

``audiences.yaml`` names each list and its members, inline or in a CSV file::

    lists:
      schools:
        name: Schools' safeguarding leads
        members:
          - {email: dsl@school.example, name: Sam Lee, organisation: Hill School}
        members_file: audiences/schools.csv     # columns: email,name,organisation

Every problem is reported as ``file:line:column`` at once, and nothing is sent until the whole
plan validates. Addresses are checked with email-validator (syntax only, no DNS) and
normalised: the address is lower-cased whole, so ``Sam@School.example`` and
``sam@school.example`` are one recipient (strictly, the local part is case-sensitive; in
practice no partner mail system treats it so, and a double copy is the worse error).

The send plan is the union of the chosen lists, one recipient per normalised address, with
every list through which that address was reached kept for per-list reports, minus suppressed
addresses (unsubscribed, hard-bounced).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidAudiences, NewsletterError, Problem
from newsletter.yamlfile import LocDict, LocList, read_yaml

LIST_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
LIST_FIELDS = ("name", "members", "members_file")
MEMBER_FIELDS = ("email", "name", "organisation")


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a list; in a send plan, one recipient and every chosen list reaching them.

    Kept small (lists can have 100,000 members), and the plan reuses the list's own objects
    for everyone reached through one list only.
    """

    address: str              # normalised: what deduplication and the ledger use
    name: str
    organisation: str
    lists: tuple[str, ...]    # the list's key; in a plan, every list in --to order


# In a plan a member is a recipient; the name says which role is meant.
PlannedRecipient = Member


@dataclass(frozen=True)
class AudienceList:
    """A named partner list."""

    key: str
    name: str
    members: tuple[Member, ...]


@dataclass
class Audiences:
    """Every list in ``audiences.yaml``, validated; warnings do not stop a send."""

    path: Path
    lists: dict[str, AudienceList]
    warnings: list[Problem] = field(default_factory=list)

    def get(self, key: str) -> AudienceList:
        """The list called ``key``, or an error naming the lists there are."""
        try:
            return self.lists[key]
        except KeyError:
            known = ", ".join(sorted(self.lists)) or "(none)"
            raise NewsletterError(
                f"there is no list called {key!r} in {self.path.name}",
                hint=f"the lists are: {known} (see `newsletter audiences`)",
            ) from None


@dataclass
class SendPlan:
    """Who an issue goes to: deduplicated, suppressions removed."""

    list_keys: tuple[str, ...]
    recipients: list[PlannedRecipient]
    list_sizes: dict[str, int]          # members per chosen list, before deduplication
    duplicates: int                     # addresses reached through more than one list
    suppressed: list[str]               # addresses left out because they are suppressed


# --- validation --------------------------------------------------------------------------


# Unicode category Cc: C0 controls (CR, LF, tab, NUL...), DEL and the C1 controls.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control_chars(value: str) -> str:
    """The control characters (CR, LF, tab, NUL...) in ``value``, spelled out; '' if none."""
    if not _CONTROL_RE.search(value):
        return ""
    return ", ".join(repr(ch) for ch in sorted(set(_CONTROL_RE.findall(value))))


# RFC 5322 dot-atom: what email-validator accepts as an unquoted ASCII local part.
_DOT_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=4096)
def _domain(domain: str) -> tuple[str, str]:
    """A domain checked by email-validator once, however many members share it."""
    normalised, why = _validate(f"postmaster@{domain}")
    return normalised.partition("@")[2], why


def _validate(email: str) -> tuple[str, str]:
    try:
        result = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return "", str(exc)
    return (result.ascii_email or result.normalized).lower(), ""


def normalise_address(email: str) -> tuple[str, str]:
    """``(normalised address, '')`` or ``('', why it is not an address)``.

    email-validator decides. Lists share few domains, so a plain ASCII address (dot-atom
    local part within the length limits) has its domain validated once per domain; anything
    else goes through email-validator whole, which gives the exact reason when it fails.
    """
    local, at, domain = email.rpartition("@")
    if at and len(local) <= 64 and len(email) <= 254 and email.isascii() \
            and _DOT_ATOM_RE.fullmatch(local):
        normalised_domain, why = _domain(domain.lower())
        if normalised_domain:
            return f"{local.lower()}@{normalised_domain}", ""
    return _validate(email)


class _Checker:
    """Collects problems while walking audiences.yaml and its CSV files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.shared: dict[str, str] = {}
        self.shown = ""                       # how audiences.yaml is named in messages
        self.lists: tuple[str, ...] = ()      # the list being read, as members carry it
        self.csv_names: dict[str, str] = {}   # list key -> how its members file is named

    def error(self, file: str, at: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(Problem(file, at[0], at[1], message, hint))

    def warn(self, file: str, at: tuple[int, int], message: str, hint: str = "") -> None:
        self.problems.append(Problem(file, at[0], at[1], message, hint, "warning"))

    def text(self, file: str, at: tuple[int, int], value: Any, what: str) -> str | None:
        """``value`` as a clean string, or None after reporting why it cannot be one."""
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(file, at, f"{what} must be text, not {type(value).__name__}")
            return None
        value = str(value).strip()
        bad = _control_chars(value)
        if bad:
            self.error(file, at, f"{what} contains control characters ({bad})",
                       hint="remove line breaks and tabs: they could forge mail headers")
            return None
        return value

    def add(self, members: list[Member], seen: dict[str, int], key: str,
            member: Member | None, file: str, at: tuple[int, int]) -> None:
        """Append ``member`` unless it is already in this list (then report where)."""
        if member is None:
            return
        # Lines are stored as plain ints (CSV lines negative) to keep 100,000 entries small.
        first = seen.get(member.address)
        if first is not None:
            where = f"{self.csv_names[key]}:{-first}" if first < 0 else f"{self.shown}:{first}"
            self.error(file, at, f"{member.address} is in list {key!r} twice",
                       hint=f"first at {where}; remove one")
            return
        is_csv = file != self.shown
        if is_csv:
            self.csv_names[key] = file
        seen[member.address] = -at[0] if is_csv else at[0]
        members.append(member)

    def member(self, file: str, at: tuple[int, int], email: Any, name: Any, organisation: Any,
               columns: tuple[int, int, int] | None = None) -> Member | None:
        """Validate one member; ``columns`` gives CSV field positions for each of the three."""

        def where(index: int) -> tuple[int, int]:
            return (at[0], columns[index]) if columns else at

        email_text = self.text(file, where(0), email, "email")
        name_text = self.text(file, where(1), name, "name")
        org_text = self.text(file, where(2), organisation, "organisation")
        if email_text is None or name_text is None or org_text is None:
            return None
        if not email_text:
            self.error(file, where(0), "a member has no email address")
            return None
        address, why = normalise_address(email_text)
        if not address:
            self.error(file, where(0), f"{email_text!r} is not a valid email address: {why}")
            return None
        # Many members share an organisation: keep one copy of each name in memory.
        org_text = self.shared.setdefault(org_text, org_text)
        return Member(address, name_text, org_text, self.lists)


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _undecodable_line(csv_path: Path) -> int:
    raw = csv_path.read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return raw[: exc.start].count(b"\n") + 1
    return 1


def _read_csv(checker: _Checker, csv_path: Path, shown: str, key: str,
              seen: dict[str, int]) -> list[Member]:
    try:
        # Streamed, not read whole: a 100,000-line file should not sit in memory three times.
        with open(csv_path, encoding="utf-8-sig", newline="") as handle:
            return _read_rows(checker, csv.reader(handle), shown, key, seen)
    except OSError as exc:
        checker.error(shown, (1, 1), f"cannot read the members file: {exc.strerror}")
    except UnicodeDecodeError:
        checker.error(shown, (_undecodable_line(csv_path), 1),
                      "the members file is not UTF-8 text",
                      hint="save it as 'CSV UTF-8' from your spreadsheet program")
    return []


def _read_rows(checker: _Checker, reader, shown: str, key: str,  # type: ignore[no-untyped-def]
               seen: dict[str, int]) -> list[Member]:
    try:
        header = next(reader)
    except StopIteration:
        checker.error(shown, (1, 1), "the members file is empty",
                      hint="its first line must be the column names: email,name,organisation")
        return []
    except csv.Error as exc:
        checker.error(shown, (reader.line_num, 1), f"cannot read the CSV: {exc}")
        return []
    columns = [c.strip().lower() for c in header]
    if "email" not in columns:
        checker.error(shown, (1, 1), "the members file has no 'email' column",
                      hint="its first line must be the column names: email,name,organisation")
        return []
    for index, column in enumerate(columns):
        if column not in MEMBER_FIELDS:
            checker.warn(shown, (1, index + 1), f"column {header[index]!r} is not used",
                         hint="the columns used are email, name and organisation")
    position = {name: columns.index(name) for name in MEMBER_FIELDS if name in columns}
    members: list[Member] = []
    while True:
        # A quoted field may span lines: report the line the row starts on.
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            checker.error(shown, (reader.line_num, 1), f"cannot read the CSV: {exc}")
            break
        if not any(cell.strip() for cell in row):
            continue
        def cell(name: str, row: list[str] = row) -> str:
            index = position.get(name)
            return row[index] if index is not None and index < len(row) else ""

        cols = tuple(position.get(name, 0) + 1 for name in MEMBER_FIELDS)
        member = checker.member(shown, (line, 1), cell("email"), cell("name"),
                                cell("organisation"), columns=cols)  # type: ignore[arg-type]
        checker.add(members, seen, key, member, shown, (line, cols[0]))
    return members


def load_audiences(path: Path) -> Audiences:
    """Read and validate ``audiences.yaml`` and its members files; raise every problem at once."""
    base = path.parent
    shown = _display(path, Path.cwd()) if path.is_absolute() else str(path)
    checker = _Checker(path)
    checker.shown = shown
    if not path.exists():
        raise NewsletterError(
            f"{shown}: no audiences file",
            hint="create audiences.yaml with your lists (see docs/sending.md)",
        )
    data, problems = read_yaml(path, shown)
    if data is None or problems:
        raise InvalidAudiences(problems)
    if not isinstance(data, LocDict) or "lists" not in data:
        raise InvalidAudiences([Problem(shown, 1, 1, "the file must start with 'lists:'",
                                        hint="see docs/sending.md for the shape")])
    for key in data:
        if key != "lists":
            checker.error(shown, data.key_at(key), f"unknown key {key!r}",
                          hint="the only top-level key is 'lists'")
    lists_node = data["lists"]
    if not isinstance(lists_node, LocDict) or not lists_node:
        checker.error(shown, data.value_at("lists"),
                      "'lists' must map each list key to its settings")
        raise InvalidAudiences(checker.problems)
    lists: dict[str, AudienceList] = {}
    for key, spec in lists_node.items():
        at = lists_node.key_at(key)
        if not isinstance(key, str) or not LIST_KEY_RE.match(key):
            checker.error(shown, at, f"list key {key!r} is not a simple name",
                          hint="use letters, digits, '-' and '_' (it appears in reports)")
            continue
        if not isinstance(spec, LocDict):
            checker.error(shown, at, f"list {key!r} must be a mapping with name and members")
            continue
        for field_name in spec:
            if field_name not in LIST_FIELDS:
                checker.error(shown, spec.key_at(field_name),
                              f"unknown key {field_name!r} in list {key!r}",
                              hint="a list has: " + ", ".join(LIST_FIELDS))
        name = checker.text(shown, spec.value_at("name"), spec.get("name", key), "list name") or key
        seen: dict[str, int] = {}
        checker.lists = (key,)
        members = _inline_members(checker, shown, key, spec, seen)
        if "members_file" in spec:
            file_value = checker.text(shown, spec.value_at("members_file"), spec["members_file"],
                                      "members_file")
            if file_value:
                csv_path = (base / file_value).resolve()
                if not csv_path.is_file():
                    checker.error(shown, spec.value_at("members_file"),
                                  f"members file {file_value!r} of list {key!r} does not exist",
                                  hint=f"paths are relative to {path.name}'s folder")
                else:
                    members += _read_csv(checker, csv_path, _display(csv_path, Path.cwd()),
                                         key, seen)
        if not members and "members" not in spec and "members_file" not in spec:
            checker.warn(shown, at, f"list {key!r} has no members",
                         hint="add 'members:' or 'members_file:'")
        lists[key] = AudienceList(key, name, tuple(members))
    errors = [p for p in checker.problems if p.severity == "error"]
    if errors:
        raise InvalidAudiences(checker.problems)
    return Audiences(path, lists, sorted(checker.problems))


def _inline_members(checker: _Checker, shown: str, key: str, spec: LocDict,
                    seen: dict[str, int]) -> list[Member]:
    if "members" not in spec or spec["members"] is None:
        return []
    node = spec["members"]
    if not isinstance(node, LocList):
        checker.error(shown, spec.value_at("members"), f"'members' of list {key!r} must be a list")
        return []
    members: list[Member] = []
    for index, item in enumerate(node):
        at = node.item_at(index)
        if isinstance(item, str):
            item_map: Mapping[str, Any] = {"email": item}
            marks = {"email": at}
        elif isinstance(item, LocDict):
            item_map = item
            marks = {name: item.value_at(name) for name in MEMBER_FIELDS}
            for field_name in item:
                if field_name not in MEMBER_FIELDS:
                    checker.error(shown, item.key_at(field_name), f"unknown key {field_name!r}",
                                  hint="a member has: " + ", ".join(MEMBER_FIELDS))
        else:
            checker.error(shown, at, "a member must be an address or a mapping with 'email'")
            continue
        # Point each problem at the value that has it.
        email_at = marks.get("email", at)
        member = checker.member(shown, email_at, item_map.get("email"), None, None)
        name = checker.text(shown, marks.get("name", at), item_map.get("name"), "name")
        org = checker.text(shown, marks.get("organisation", at), item_map.get("organisation"),
                           "organisation")
        if member and name is not None and org is not None:
            checker.add(members, seen, key, Member(member.address, name, org, member.lists),
                        shown, email_at)
    return members


# --- the plan ----------------------------------------------------------------------------


def plan_send(audiences: Audiences, list_keys: Iterable[str],
              suppressed: Mapping[str, str] | Iterable[str] = ()) -> SendPlan:
    """The union of ``list_keys``, one recipient per address, minus ``suppressed`` addresses."""
    keys = tuple(dict.fromkeys(list_keys))
    if not keys:
        raise NewsletterError("choose at least one list with --to LIST",
                              hint="see the lists with `newsletter audiences`")
    chosen = [audiences.get(key) for key in keys]
    blocked = set(suppressed)
    combos: dict[tuple[str, ...], tuple[str, ...]] = {}   # one tuple per list combination
    recipients: list[PlannedRecipient] = []
    index: dict[str, int] = {}        # address -> position in recipients (several lists only)
    left_out: dict[str, None] = {}
    duplicates = 0
    for number, audience in enumerate(chosen):
        alone = combos.setdefault((audience.key,), (audience.key,))
        for member in audience.members:
            if member.address in blocked:
                left_out[member.address] = None
                continue
            at = index.get(member.address) if number else None
            if at is None:
                if len(chosen) > 1:
                    index[member.address] = len(recipients)
                # Reached through this list alone (so far): the member itself is the recipient.
                recipients.append(member if member.lists == alone else
                                  PlannedRecipient(member.address, member.name,
                                                   member.organisation, alone))
                continue
            first = recipients[at]
            if len(first.lists) == 1:
                duplicates += 1
            lists = (*first.lists, audience.key)
            recipients[at] = PlannedRecipient(first.address, first.name, first.organisation,
                                              combos.setdefault(lists, lists))
    return SendPlan(keys, recipients, {a.key: len(a.members) for a in chosen}, duplicates,
                    list(left_out))
