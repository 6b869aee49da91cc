"""Members: one person on a partner list, validated and normalised (members files are read
by :mod:`newsletter.members_file`).

Addresses are checked with email-validator (syntax only, no DNS) and normalised: the address
is lower-cased whole, so ``Sam@School.example`` and ``sam@school.example`` are one recipient
(strictly, the local part is case-sensitive; in practice no partner mail system treats it so,
and a double copy is the worse error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import Problem
from newsletter.fields import Fields

MEMBER_FIELDS = ("email", "name", "organisation")


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


Where = dict[str, tuple[int, int]]
"""Member field name -> where its value stands (line, column)."""


class MemberChecker:
    """Validates members while walking audiences.yaml and its members files.

    One :class:`~newsletter.fields.Fields` per file, all writing to one problem list.
    """

    def __init__(self, shown: str) -> None:
        self.problems: list[Problem] = []
        self.yaml = Fields(shown, self.problems)   # audiences.yaml, as named in messages
        self.shared: dict[str, str] = {}
        self.lists: tuple[str, ...] = ()      # the list being read, as members carry it
        self.csv_names: dict[str, str] = {}   # list key -> how its members file is named

    def fields(self, file: str) -> Fields:
        """The checker for a members file called ``file`` in messages."""
        return Fields(file, self.problems)

    def text(self, c: Fields, at: tuple[int, int], value: Any, what: str) -> str | None:
        """``value`` as a clean string, or None after reporting why it cannot be one."""
        if value is None:
            return ""
        text = c.value_text(value, at, what)
        if text is None:
            return None
        text = text.strip()
        bad = _control_chars(text)
        if bad:
            c.error(at, f"{what} contains control characters ({bad})",
                    hint="remove line breaks and tabs: they could forge mail headers")
            return None
        return text

    def add(self, members: list[Member], seen: dict[str, int], key: str, member: Member,
            c: Fields, at: tuple[int, int]) -> None:
        """Append ``member`` unless it is already in this list (then report where)."""
        # Lines are stored as plain ints (CSV lines negative) to keep 100,000 entries small.
        first = seen.get(member.address)
        if first is not None:
            where = (f"{self.csv_names[key]}:{-first}" if first < 0
                     else f"{self.yaml.file}:{first}")
            c.error(at, f"{member.address} is in list {key!r} twice",
                    hint=f"first at {where}; remove one")
            return
        is_csv = c.file != self.yaml.file
        if is_csv:
            self.csv_names[key] = c.file
        seen[member.address] = -at[0] if is_csv else at[0]
        members.append(member)

    def member(self, c: Fields, where: Where, email: Any, name: Any,
               organisation: Any) -> Member | None:
        """Validate one member, each problem at the field that has it."""
        email_text = self.text(c, where["email"], email, "email")
        name_text = self.text(c, where["name"], name, "name")
        org_text = self.text(c, where["organisation"], organisation, "organisation")
        if email_text is None or name_text is None or org_text is None:
            return None
        if not email_text:
            c.error(where["email"], "a member has no email address")
            return None
        address, why = normalise_address(email_text)
        if not address:
            c.error(where["email"], f"{email_text!r} is not a valid email address: {why}")
            return None
        # Many members share an organisation: keep one copy of each name in memory.
        org_text = self.shared.setdefault(org_text, org_text)
        return Member(address, name_text, org_text, self.lists)
