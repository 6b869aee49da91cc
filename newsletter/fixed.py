"""One slug, one issue, forever.

Two rules keep an old issue's content from ever going out under its slug again, or a new
issue's under an old slug:

- **No two issue files share a slug** (:func:`duplicate_slugs`): a file copied from the last
  issue with its ``slug:`` left unchanged is an error in ``check``, naming both files.
- **A sent issue is fixed** (:func:`check_unchanged`): once any ledger row exists for a slug,
  a build or send whose content differs from what was sent is refused, saying what differs.
  What was sent is kept in ``issues.content`` (a summary: subject, fields, sections, links,
  settings, hashes of the rendered parts) with its fingerprint, stored at the first send. The
  only way to change a sent issue is :func:`amend`: it replaces the web version, adds the new
  links and records who, when, why and what changed (table ``amendments``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError, Problem
from newsletter.theme import display_path

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from newsletter.build import BuiltIssue
    from newsletter.db import Database
    from newsletter.project import Project

CONTENT_VERSION = 1
_FIELDS = ("title", "edition", "date", "preheader", "greeting", "language", "tracking", "opens")
_SHOWN = 70          # field values up to this long are quoted in messages; longer: "changed"
_MAX_LISTED = 12


# --- duplicate slugs ---------------------------------------------------------------------


@dataclass(frozen=True)
class _SlugAt:
    slug: str
    file: str
    line: int
    column: int


def _slug_of(path: Path) -> _SlugAt | None:
    """The slug ``path`` declares (or takes from its file name) and where; None if unreadable."""
    from newsletter.load import slugify
    from newsletter.yamlfile import LocDict, read_yaml

    data, _problems = read_yaml(path, display_path(path))
    if not isinstance(data, LocDict):
        return None
    file = display_path(path)
    slug = data.get("slug")
    if isinstance(slug, str) and slug.strip():
        line, column = data.value_at("slug")
        return _SlugAt(slug.strip(), file, line, column)
    return _SlugAt(slugify(path.stem), file, 1, 1)


def duplicate_slugs(project: Project, path: Path, slug: str | None = None) -> list[Problem]:
    """An error for each other file in ``issues/`` with the same slug as ``path``.

    Only files that could hold that slug (in their text or their name) are read as YAML, so
    this stays cheap however many issues there are. ``slug`` is the one the loaded issue
    declares, when it loaded: ``path`` is then parsed again only if another file may share it.
    """
    from newsletter.load import slugify

    if slug is None:
        mine = _slug_of(path) if path.is_file() else None
        if mine is None:
            return []
        slug = mine.slug
    else:
        mine = None
    if not project.issues_dir.is_dir():
        return []
    try:
        here = path.resolve()
    except OSError:
        return []
    problems = []
    for other in sorted(project.issues_dir.glob("*.yaml")):
        try:
            if other.resolve() == here:
                continue
            text = other.read_text(encoding="utf-8-sig", errors="replace")
        except OSError:
            continue
        if slug not in text and slugify(other.stem) != slug:
            continue
        if mine is None:
            mine = _slug_of(path)
            if mine is None:
                return []
        theirs = _slug_of(other)
        if theirs is None or theirs.slug != mine.slug:
            continue
        where = (f"{theirs.file}:{theirs.line}:{theirs.column}" if theirs.line > 1
                 or theirs.column > 1 else f"{theirs.file} (from its file name)")
        problems.append(Problem(
            mine.file, mine.line, mine.column,
            f"the slug '{mine.slug}' is also the slug of {where}; one slug names one issue",
            "give the new issue a slug of its own (e.g. its season and year) and rename its "
            "file to match; an issue's slug never changes once it is sent"))
    return problems


# --- what was sent -----------------------------------------------------------------------


def _digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                           ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """A model value as JSON-able data (dates as ISO text)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def content_of(built: BuiltIssue) -> dict[str, Any]:
    """The recipient-independent content of a built issue, as stored at its first send."""
    issue = built.issue
    fields = {name: _plain(getattr(issue, name, None)) for name in _FIELDS}
    for part in ("sender", "footer"):
        value = _plain(getattr(issue, part, None))
        fields.update({f"{part} {k}": v for k, v in (value or {}).items()})
    sections = getattr(issue, "sections", ())
    return {
        "version": CONTENT_VERSION,
        "subject": issue.subject,
        "fields": fields,
        "sections": [{"id": s.id, "heading": s.heading, "digest": _digest(_plain(s))}
                     for s in sections],
        "links": {link.id: {"url": link.url, "section": link.section} for link in built.links},
        "settings": {"tracking_url": getattr(built, "tracking_url", "")},
        "theme": _digest(_plain(getattr(issue, "theme", None))),
        "parts": {"email.html": _digest(built.html), "email.txt": _digest(built.text),
                  "web.html": _digest(built.web_html)},
    }


def fingerprint(content: dict[str, Any]) -> str:
    """One hash of everything in ``content``: equal fingerprints, equal issues."""
    return _digest(content)


def _quoted(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return f'"{text}"' if len(text) <= _SHOWN else f"({len(text)} characters)"


def differences(sent: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two contents, in the editor's words, most important first."""
    found = _changed_values(sent, now, "subject", "fields", "sent as")
    found += _section_changes(sent.get("sections", []), now.get("sections", []))
    found += _link_changes(sent.get("links", {}), now.get("links", {}))
    found += _changed_values(sent, now, None, "settings", "sent with")
    if "theme" in sent and sent["theme"] != now.get("theme"):
        found.append("the theme (theme.yaml) changed")
    if not found and sent.get("parts") != now.get("parts"):
        changed = [name for name, digest in now.get("parts", {}).items()
                   if sent.get("parts", {}).get(name) != digest]
        found.append(f"the rendered {', '.join(changed)} differ(s) from what was sent: the "
                     "templates (templates/) or the program that renders them changed")
    return found


def _changed_values(sent: dict[str, Any], now: dict[str, Any], single: str | None, group: str,
                    how: str) -> list[str]:
    """``single`` (a top-level value) and each value of ``group`` that changed."""
    found = []
    if single is not None and sent.get(single) != now.get(single):
        found.append(f"{single}: {how} {_quoted(sent.get(single))}, now {_quoted(now.get(single))}")
    recorded = sent.get(group, {})
    for name, value in now.get(group, {}).items():
        # A value a later version of the summary added was not recorded: nothing to compare.
        if name in recorded and recorded[name] != value:
            found.append(f"{name}: {how} {_quoted(recorded[name])}, now {_quoted(value)}")
    return found


def _section_changes(sent: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    found = []
    old = {s["id"]: s for s in sent}
    new = {s["id"]: s for s in now}
    for section in now:
        before = old.get(section["id"])
        if before is None:
            found.append(f"section \"{section['heading']}\" is new")
        elif before["digest"] != section["digest"]:
            found.append(f"section \"{section['heading']}\" changed")
    found += [f"section \"{s['heading']}\" was removed" for s in sent if s["id"] not in new]
    if [s["id"] for s in sent] != [s["id"] for s in now] and set(old) == set(new):
        found.append("the sections are in another order")
    return found


def _link_changes(sent: dict[str, Any], now: dict[str, Any]) -> list[str]:
    found = [f"link {link['url']} is new (in \"{link['section']}\")"
             for link_id, link in now.items() if link_id not in sent]
    found += [f"link {link['url']} was removed (from \"{link['section']}\")"
              for link_id, link in sent.items() if link_id not in now]
    return found


@dataclass(frozen=True)
class SentRecord:
    """What the database holds about a sent issue."""

    slug: str
    subject: str
    web_html: str
    fingerprint: str
    content: dict[str, Any] | None
    recipients: int
    first_sent: float | None
    link_ids: frozenset[str]


def sent_record(conn: Connection, slug: str) -> SentRecord | None:
    """The record of ``slug`` if it has been sent (any ledger row), else None."""
    import sqlalchemy as sa

    from newsletter import db

    count = conn.execute(sa.select(sa.func.count(), sa.func.min(db.deliveries.c.sent_at))
                         .where(db.deliveries.c.issue == slug)).one()
    if not count[0]:
        return None
    row = conn.execute(sa.select(db.issues.c.subject, db.issues.c.web_html,
                                 db.issues.c.fingerprint, db.issues.c.content)
                       .where(db.issues.c.slug == slug)).first()
    if row is None:
        subject = web_html = stored = content_text = ""
    else:
        subject, web_html, stored, content_text = row
    link_ids = frozenset(conn.execute(sa.select(db.links.c.link_id)
                                      .where(db.links.c.issue == slug)).scalars())
    content = json.loads(content_text) if content_text else None
    return SentRecord(slug, subject, web_html, stored, content, count[0], count[1], link_ids)


def _legacy_differences(record: SentRecord, built: BuiltIssue) -> list[str]:
    """For an issue sent before contents were stored: compare what the database kept."""
    found = []
    if record.subject != built.issue.subject:
        found.append(f"subject: sent as {_quoted(record.subject)}, "
                     f"now {_quoted(built.issue.subject)}")
    if record.web_html and record.web_html != built.web_html:
        found.append("the web version differs from the one published for it")
    for link in built.links:
        if link.id not in record.link_ids:
            found.append(f"link {link.url} is new (in \"{link.section}\")")
    return found


def changes_since_sent(record: SentRecord, built: BuiltIssue) -> list[str]:
    """What differs between ``built`` and what was sent under its slug ([] if nothing)."""
    now = content_of(built)
    if record.content is None:
        return _legacy_differences(record, built)
    if record.fingerprint == fingerprint(now):
        return []
    # The fingerprint is the quick answer; the comparison is the true one (a summary written
    # by an older version of this module has another fingerprint for the same content).
    return differences(record.content, now)


class SentIssueChanged(NewsletterError):
    """A build or send of a slug already sent, with other content."""


def _sent_when(record: SentRecord) -> str:
    if record.first_sent is None:
        return f"is in the ledger ({record.recipients} recipient(s))"
    day = dt.datetime.fromtimestamp(record.first_sent, dt.UTC)
    return f"was sent on {day.day} {day:%B %Y} to {record.recipients} recipient(s)"


def refusal(record: SentRecord, built: BuiltIssue, changes: list[str],
            outcome: str) -> SentIssueChanged:
    """The error that says what differs and what to do, located at the file's slug."""
    slug = record.slug
    where = _slug_location(built)
    listed = changes[:_MAX_LISTED]
    more = len(changes) - len(listed)
    lines = "\n".join(f"  - {change}" for change in listed)
    if more:
        lines += f"\n  - and {more} more"
    return SentIssueChanged(
        f"{where}: error: '{slug}' {_sent_when(record)}, and a sent issue is fixed; this "
        f"differs from what was sent ({outcome}):\n{lines}",
        hint="for a new issue, give it a slug of its own (e.g. its season and year) and "
        "rename its file to match; only to correct the issue already sent, run "
        f"`newsletter amend {slug} --reason \"what you corrected\"`, which replaces its web "
        "version and records who changed what and when")


def _slug_location(built: BuiltIssue) -> str:
    # The loader names the file as the user sees it: relative to the current folder, or whole.
    source = getattr(built.issue, "source", "") or f"issues/{built.issue.slug}.yaml"
    path = Path(source)
    found = _slug_of(path) if path.is_file() else None
    if found is None:
        return f"{source}:1:1"
    return f"{found.file}:{found.line}:{found.column}"


def check_unchanged(database: Database, built: BuiltIssue, outcome: str) -> None:
    """Refuse (:class:`SentIssueChanged`) when ``built``'s slug was sent with other content."""
    with database.engine.connect() as conn:
        record = sent_record(conn, built.issue.slug)
    if record is None:
        return
    changes = changes_since_sent(record, built)
    if changes:
        raise refusal(record, built, changes, outcome)


def check_against_ledger(project: Project, built: BuiltIssue, db_url: str | None,
                         outcome: str) -> None:
    """:func:`check_unchanged` for ``check`` and ``build``, with the project's database.

    A SQLite ledger that does not exist yet holds nothing sent: it is not created here. A
    mistyped path while the project has a ledger elsewhere is refused (``Project.db_url``),
    so a typo never skips the comparison.
    """
    from newsletter.project import sqlite_path

    url = project.db_url(db_url, can_create=False)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return
    # Imported only now: SQLAlchemy is most of a build's start-up, and a project that has
    # sent nothing has no ledger to compare with.
    from newsletter.db import open_db

    database = open_db(url, writable=False)
    try:
        check_unchanged(database, built, outcome)
    finally:
        database.close()


def record_content(conn: Connection, built: BuiltIssue) -> None:
    """Store ``built``'s content and fingerprint for its slug unless a sent one is stored.

    Called as the first ledger rows are written; until then the content may still change.
    An issue sent before contents were stored gets them now (its check compared what the
    database had kept).
    """
    import sqlalchemy as sa

    from newsletter import db

    slug = built.issue.slug
    sent = conn.execute(sa.select(sa.func.count()).select_from(db.deliveries)
                        .where(db.deliveries.c.issue == slug)).scalar_one()
    stored = conn.execute(sa.select(db.issues.c.fingerprint)
                          .where(db.issues.c.slug == slug)).scalar()
    if sent and stored:
        return
    content = content_of(built)
    conn.execute(db.issues.update().where(db.issues.c.slug == slug)
                 .values(fingerprint=fingerprint(content), content=_dump(content)))


def _dump(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


# --- amending ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Amendment:
    """One recorded correction of a sent issue."""

    number: int
    issue: str
    at: float
    who: str
    reason: str
    changes: tuple[str, ...]


def who_am_i() -> str:
    """The operating-system user running this command, for the record."""
    import getpass
    import os

    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return getpass.getuser()


def amend(database: Database, built: BuiltIssue, reason: str, who: str) -> Amendment:
    """Replace a sent issue's web version, subject and content record with ``built``'s, add
    its new links, and record the amendment. Links already sent are never removed."""

    from newsletter import db, ledger
    from newsletter.feedback import wording_json

    slug = built.issue.slug
    reason = " ".join(reason.split())
    if not reason:
        raise NewsletterError("--reason is empty",
                              hint='say what you corrected, e.g. --reason "wrong phone number '
                              'for the referrals team"')
    with database.engine.begin() as conn:
        record = sent_record(conn, slug)
        if record is None:
            raise NewsletterError(f"'{slug}' has not been sent: there is nothing to amend",
                                  hint="until it is sent its content can still change: build "
                                  "or send it as it is")
        changes = changes_since_sent(record, built)
        if not changes:
            raise NewsletterError(f"'{slug}' is the same as what was sent: nothing to amend",
                                  hint="edit the issue file first, then run amend")
        content = content_of(built)
        t = db.now()
        result = conn.execute(db.amendments.insert().values(
            issue=slug, at=t, who=who, reason=reason, changes="\n".join(changes),
            old_fingerprint=record.fingerprint, new_fingerprint=fingerprint(content),
            old_subject=record.subject, old_web_html=record.web_html,
            old_content=_dump(record.content) if record.content else ""))
        assert result.inserted_primary_key is not None    # an INSERT of one row
        number = result.inserted_primary_key[0]
        issue = built.issue
        conn.execute(db.issues.update().where(db.issues.c.slug == slug).values(
            subject=issue.subject, tracking=issue.tracking, opens=bool(issue.opens),
            web_html=built.web_html, fingerprint=fingerprint(content), content=_dump(content),
            feedback=wording_json(getattr(issue, "feedback", None)), updated_at=t))
        ledger.add_links(conn, slug, built.links)
    return Amendment(number, slug, t, who, reason, tuple(changes))

