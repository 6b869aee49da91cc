"""Partner lists: load and validate ``audiences.yaml``, then plan who gets an issue.

``audiences.yaml`` names each list and its members, inline or in a CSV file::

    lists:
      schools:
        name: Schools' safeguarding leads
        members:
          - {email: dsl@school.example, name: Sam Lee, organisation: Hill School}
        members_file: audiences/schools.csv     # columns: email,name,organisation

Every problem is reported as ``file:line:column`` at once, and nothing is sent until the whole
plan validates. One member is checked by :mod:`newsletter.members`, which also reads members
files.

The send plan is the union of the chosen lists, one recipient per normalised address, with
every list through which that address was reached kept for per-list reports, minus suppressed
addresses (unsubscribed, hard-bounced).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.errors import InvalidAudiences, NewsletterError, Problem, display_path
from newsletter.members import MEMBER_FIELDS, Member, MemberChecker, normalise_address
from newsletter.members_file import read_members_file
from newsletter.yamlfile import LocDict, LocList, read_yaml

__all__ = ["Member", "PlannedRecipient", "normalise_address", "load_audiences", "plan_send"]

LIST_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
LIST_FIELDS = ("name", "members", "members_file")


# --- the model ---------------------------------------------------------------------------


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


def load_audiences(path: Path) -> Audiences:
    """Read and validate ``audiences.yaml`` and its members files; raise every problem at once."""
    shown = display_path(path)
    if not path.exists():
        raise NewsletterError(
            f"{shown}: no audiences file",
            hint="create audiences.yaml with your lists (see docs/sending.md)",
        )
    data, problems = read_yaml(path, shown)
    if data is None or problems:
        raise InvalidAudiences(problems)
    checker = MemberChecker(shown)
    lists_node = _lists_node(checker, data)
    lists: dict[str, AudienceList] = {}
    for key, spec in lists_node.items():
        audience = _read_list(checker, path.parent, key, spec, lists_node.key_at(key))
        if audience is not None:
            lists[key] = audience
    if checker.yaml.has_errors:
        raise InvalidAudiences(checker.problems)
    return Audiences(path, lists, sorted(checker.problems))


def _lists_node(checker: MemberChecker, data: Any) -> LocDict:
    """The mapping under ``lists:``; raises when the file does not have that shape."""
    c = checker.yaml
    if not isinstance(data, LocDict) or "lists" not in data:
        raise InvalidAudiences([Problem(c.file, 1, 1, "the file must start with 'lists:'",
                                        hint="see docs/sending.md for the shape")])
    for key in data:
        if key != "lists":
            c.error(data.key_at(key), f"unknown key {key!r}",
                    hint="the only top-level key is 'lists'")
    lists_node = data["lists"]
    if not isinstance(lists_node, LocDict) or not lists_node:
        c.error(data.value_at("lists"), "'lists' must map each list key to its settings")
        raise InvalidAudiences(checker.problems)
    return lists_node


def _read_list(checker: MemberChecker, base: Path, key: Any, spec: Any,
               at: tuple[int, int]) -> AudienceList | None:
    """One list: its name, inline members and members file; None when it cannot be read."""
    c = checker.yaml
    if not isinstance(key, str) or not LIST_KEY_RE.match(key):
        c.error(at, f"list key {key!r} is not a simple name",
                hint="use letters, digits, '-' and '_' (it appears in reports)")
        return None
    if not isinstance(spec, LocDict):
        c.error(at, f"list {key!r} must be a mapping with name and members")
        return None
    for field_name in spec:
        if field_name not in LIST_FIELDS:
            c.error(spec.key_at(field_name), f"unknown key {field_name!r} in list {key!r}",
                    hint="a list has: " + ", ".join(LIST_FIELDS))
    name = checker.text(c, spec.value_at("name"), spec.get("name", key), "list name") or key
    seen: dict[str, int] = {}
    checker.lists = (key,)
    before = len(checker.problems)
    members = _inline_members(checker, key, spec, seen)
    members += _members_file(checker, base, key, spec, seen)
    if not members and not any(p.severity == "error" for p in checker.problems[before:]):
        c.warn(at, f"list {key!r} has no members",
               hint="add members under 'members:' or rows to its 'members_file:'; "
               "`newsletter send` refuses to send to nobody")
    return AudienceList(key, name, tuple(members))


def _members_file(checker: MemberChecker, base: Path, key: str, spec: LocDict,
                  seen: dict[str, int]) -> list[Member]:
    if "members_file" not in spec:
        return []
    c = checker.yaml
    at = spec.value_at("members_file")
    file_value = checker.text(c, at, spec["members_file"], "members_file")
    if not file_value:
        return []
    csv_path = (base / file_value).resolve()
    if not csv_path.is_file():
        c.error(at, f"members file {file_value!r} of list {key!r} does not exist",
                hint="paths are relative to the folder of audiences.yaml")
        return []
    return read_members_file(checker, csv_path, display_path(csv_path), key, seen)


def _inline_members(checker: MemberChecker, key: str, spec: LocDict,
                    seen: dict[str, int]) -> list[Member]:
    c = checker.yaml
    node = spec.get("members")
    if node is None:
        return []
    if not isinstance(node, LocList):
        c.error(spec.value_at("members"), f"'members' of list {key!r} must be a list")
        return []
    members: list[Member] = []
    for index, item in enumerate(node):
        member = _inline_member(checker, item, node.item_at(index))
        if member is not None:
            checker.add(members, seen, key, member[0], c, member[1])
    return members


def _inline_member(checker: MemberChecker, item: Any,
                   at: tuple[int, int]) -> tuple[Member, tuple[int, int]] | None:
    """One inline member (an address, or a mapping with 'email') and where its address is."""
    c = checker.yaml
    if isinstance(item, str):
        item = {"email": item}
        marks = {"email": at}
    elif isinstance(item, LocDict):
        marks = {name: item.value_at(name) for name in MEMBER_FIELDS if name in item}
        for field_name in item:
            if field_name not in MEMBER_FIELDS:
                c.error(item.key_at(field_name), f"unknown key {field_name!r}",
                        hint="a member has: " + ", ".join(MEMBER_FIELDS))
    else:
        c.error(at, "a member must be an address or a mapping with 'email'")
        return None
    # Point each problem at the value that has it.
    where = {name: marks.get(name, at) for name in MEMBER_FIELDS}
    member = checker.member(c, where, item.get("email"), item.get("name"),
                            item.get("organisation"))
    return (member, where["email"]) if member is not None else None


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
