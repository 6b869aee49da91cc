"""Outlets: the places besides the inbox where the newsletter reaches people.

The strategy has partners reshare the newsletter through their own newsletters (KSCMP, KMSAB),
social media, intranets (KNET, Viva Engage, Medspace), websites (KELSI), leaflets in waiting
rooms and screens in public buildings. ``newsletter.yaml`` lists them::

    outlets:
      - {id: kscmp-newsletter, name: KSCMP newsletter, kind: partner-newsletter}
      - {id: gp-leaflets, name: Leaflets in GP surgeries, kind: print}

Each outlet gets its own address of the web version, ``{tracking_url}/v/{slug}/{id}``: it names
the outlet and nothing else (no person, no list), is not signed (there is nothing to protect
in it) and never redirects: the tracker serves the web version itself and counts the view for
that outlet. Three outlets are built in and cannot be listed: ``email`` (the newsletter's own
recipients: the email's links and its "view in browser"), ``direct`` (the web version's plain
address, from the archive or copied from a browser) and ``unknown`` (an address naming an
outlet the tracker does not know: counted, never refused).

The tracker knows the outlets from the database, where ``share`` and ``send`` register the
project's list (:func:`register`), so it learns a new outlet without a restart.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from newsletter.fields import Fields
    from newsletter.yamlfile import LocDict

KINDS = ("partner-newsletter", "social", "intranet", "website", "print", "screen")
# Kinds people meet away from a screen they can click on: they get a QR code.
QR_KINDS = ("print", "screen")
EMAIL, DIRECT, UNKNOWN = "email", "direct", "unknown"
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
OUTLET_KEYS = ("id", "name", "kind")


@dataclass(frozen=True)
class Outlet:
    """One place the newsletter is carried: its id (in links), name and kind."""

    id: str
    name: str
    kind: str

    @property
    def has_qr(self) -> bool:
        """Whether the share kit gives it a QR code (print and screen outlets)."""
        return self.kind in QR_KINDS

    @property
    def built_in(self) -> bool:
        return self.id in BUILT_IN


BUILT_IN: dict[str, Outlet] = {
    EMAIL: Outlet(EMAIL, "Email (the newsletter's recipients)", "email"),
    DIRECT: Outlet(DIRECT, "Direct (the archive, typed or copied addresses)", "direct"),
    UNKNOWN: Outlet(UNKNOWN, "Unknown outlet", "unknown"),
}


def view_url(tracking_url: str, slug: str, outlet: str = "") -> str:
    """The web version's address on the tracker, naming ``outlet`` (none: the plain one)."""
    base = f"{tracking_url.rstrip('/')}/v/{slug}"
    return f"{base}/{outlet}" if outlet else base


def outlet_of(text: str, known: Iterable[str]) -> str:
    """The outlet an address names (the part after ``/v/{slug}/``): its id when it is one the
    tracker knows (any case), :data:`DIRECT` when there is none, else :data:`UNKNOWN`."""
    text = text.strip("/").lower()
    if not text:
        return DIRECT
    return text if text in known or text in BUILT_IN and text != UNKNOWN else UNKNOWN


# --- newsletter.yaml ----------------------------------------------------------------------


def check(c: Fields, settings: LocDict) -> tuple[Outlet, ...]:
    """The ``outlets:`` list of the settings, each problem recorded in ``c`` where it is."""
    from newsletter.yamlfile import LocDict, LocList

    value = settings.get("outlets")
    if value is None:
        return ()
    if not isinstance(value, LocList):
        c.error(settings.value_at("outlets"), "'outlets' must be a list of outlets",
                "write each outlet on its own line: - {id: kscmp-newsletter, name: KSCMP "
                "newsletter, kind: partner-newsletter}")
        return ()
    found: list[Outlet] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        at = value.item_at(index)
        what = f"outlet {index + 1}"
        if not isinstance(item, LocDict):
            c.mapping(item, at, what)
            continue
        c.keys(item, OUTLET_KEYS, what)
        outlet_id = c.text(item, "id", what)
        name = c.header_text(item, "name", what)
        kind = c.text(item, "kind", what)
        problems = len(c.problems)
        if outlet_id and not ID_RE.fullmatch(outlet_id):
            c.error(item.value_at("id"), f"outlet id '{outlet_id}' is not a simple id",
                    "use lower-case letters, digits and hyphens, up to 40 characters, e.g. "
                    "'kscmp-newsletter': it is part of the outlet's link")
        elif outlet_id in BUILT_IN:
            c.error(item.value_at("id"), f"outlet id '{outlet_id}' is built in: "
                    f"{BUILT_IN[outlet_id].name}", "give this outlet another id")
        elif outlet_id in seen:
            c.error(item.value_at("id"), f"outlet id '{outlet_id}' is used twice (first on "
                    f"line {seen[outlet_id]})", "give each outlet an id of its own")
        if kind and kind not in KINDS:
            close = difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.6)
            c.error(item.value_at("kind"), f"'{kind}' is not a kind of outlet",
                    (f"did you mean '{close[0]}'? " if close else "")
                    + "kinds: " + ", ".join(KINDS))
        if outlet_id and outlet_id not in seen:
            seen[outlet_id] = item.value_at("id")[0]
        if len(c.problems) == problems and outlet_id and name and kind:
            found.append(Outlet(outlet_id, name, kind))
    return tuple(found)


def find(outlets: Sequence[Outlet], wanted: str) -> Outlet:
    """The project's outlet ``wanted`` (``--outlet``), or an error suggesting the close one."""
    for outlet in outlets:
        if outlet.id == wanted:
            return outlet
    ids = [o.id for o in outlets]
    close = difflib.get_close_matches(wanted, ids, n=1, cutoff=0.5)
    if not ids:
        raise NewsletterError(f"--outlet {wanted!r}: the project has no outlets",
                              hint="list them under 'outlets:' in newsletter.yaml "
                              "(docs/tracking.md, \"Outlets\")")
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise NewsletterError(f"--outlet {wanted!r} is not one of the project's outlets",
                          hint=hint + "the outlets in newsletter.yaml: " + ", ".join(ids))


# --- the database: what the tracker knows -------------------------------------------------


def register(conn: sa.Connection, outlets: Iterable[Outlet]) -> None:
    """Store (or update) ``outlets`` so the tracker counts their links as theirs. An outlet
    once registered is never removed: links printed for it may be out there for years."""
    import sqlalchemy as sa

    from newsletter import db

    t = db.outlets
    now = db.now()
    rows = [{"id": o.id, "name": o.name, "kind": o.kind, "created_at": now, "updated_at": now}
            for o in outlets if not o.built_in]
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    statement: postgresql.Insert | sqlite.Insert = (
        postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t))
    conn.execute(statement.on_conflict_do_update(
        index_elements=[t.c.id],
        set_={"name": statement.excluded.name, "kind": statement.excluded.kind,
              "updated_at": statement.excluded.updated_at},
        where=sa.or_(t.c.name != statement.excluded.name,
                     t.c.kind != statement.excluded.kind)), rows)


def registered(conn: sa.Connection) -> dict[str, Outlet]:
    """Every outlet the database knows, built-in ones included, by id."""
    import sqlalchemy as sa

    from newsletter import db

    t = db.outlets
    found = dict(BUILT_IN)
    for row in conn.execute(sa.select(t.c.id, t.c.name, t.c.kind).order_by(t.c.id)):
        found.setdefault(row.id, Outlet(row.id, row.name, row.kind))
    return found


def as_json(outlet: Outlet) -> dict[str, Any]:
    """The outlet's fields for JSON output."""
    return {"id": outlet.id, "name": outlet.name, "kind": outlet.kind}
