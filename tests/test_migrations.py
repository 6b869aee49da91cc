"""Migrations give every database the same schema, whether new or made by the first release.

The fixtures in ``tests/fixtures/`` are dumps of a database that the first release of the
schema (m001 + m002, as shipped) created by sending the sample issue to two lists, with a few
tracking events and an unsubscribe. Every migration added later must turn that database into
exactly what a new database gets, keep its rows, and must also be the schema ``db.py``
describes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import db
from newsletter.db import create_db_engine, open_db
from newsletter.migrations import MIGRATIONS, migrate, pending

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIRST_RELEASE = ("m001_initial", "m002_report_indexes")


def _load_first_release(url: str) -> None:
    engine = create_db_engine(url)
    try:
        kind = engine.dialect.name
        script = (FIXTURES / f"first-release.{kind}.sql").read_text(encoding="utf-8")
        raw = engine.raw_connection()
        try:
            if kind == "sqlite":
                raw.driver_connection.executescript(script)  # type: ignore[union-attr]
            else:
                with raw.cursor() as cursor:
                    cursor.execute(script)
                raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


def _schema(url: str) -> dict[str, object]:
    """Tables, columns, keys and indexes as the database reports them, comparable."""
    engine = create_db_engine(url)
    try:
        inspector = sa.inspect(engine)
        found: dict[str, object] = {}
        for table in sorted(inspector.get_table_names()):
            columns = [(c["name"], str(c["type"]), c["nullable"],
                        _default(c.get("default"))) for c in inspector.get_columns(table)]
            found[table] = {
                "columns": sorted(columns),
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
                "unique": sorted(tuple(u["column_names"])
                                 for u in inspector.get_unique_constraints(table)),
                "foreign keys": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                                       for f in inspector.get_foreign_keys(table)),
            }
        return found
    finally:
        engine.dispose()


def _default(value: object) -> object:
    # PostgreSQL reports DEFAULT '0' on a double as '0'::double precision: same default.
    if value is None:
        return None
    text = str(value).split("::", 1)[0].strip("'\"")
    return {"false": "0", "true": "1"}.get(text, text)


@pytest.fixture
def second_url(request: pytest.FixtureRequest, storage_url: str, tmp_path: Path) -> str:
    """Another fresh database of the same kind as ``storage_url``."""
    if storage_url.startswith("sqlite"):
        return "sqlite:///" + str(tmp_path / "fresh.db")
    import uuid

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(storage_url.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = storage_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return url


def test_a_first_release_database_migrates_to_the_new_schema(storage_url: str,
                                                               second_url: str) -> None:
    _load_first_release(storage_url)
    open_db(storage_url).close()
    open_db(second_url).close()
    assert _schema(storage_url) == _schema(second_url)


def test_the_first_release_fixture_is_what_the_first_release_made(storage_url: str) -> None:
    _load_first_release(storage_url)
    engine = create_db_engine(storage_url)
    try:
        assert pending(engine) == [s.__name__ for s in MIGRATIONS
                                   if s.__name__ not in FIRST_RELEASE]
    finally:
        engine.dispose()


def test_migrating_keeps_every_row_of_a_first_release_database(storage_url: str) -> None:
    _load_first_release(storage_url)
    database = open_db(storage_url)
    try:
        with database.engine.connect() as conn:
            def count(table: sa.Table) -> int:
                return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

            assert count(db.recipients) == 6
            assert count(db.deliveries) == 6
            assert count(db.events) == 3
            assert count(db.suppressions) == 1
            assert count(db.signing_keys) == 1
            assert conn.execute(sa.select(db.issues.c.slug)).scalars().all() == ["2026-spring"]
    finally:
        database.close()


def test_events_stored_by_the_first_release_count_as_classified_by_rules_version_1(
        storage_url: str) -> None:
    _load_first_release(storage_url)
    database = open_db(storage_url)
    try:
        with database.engine.connect() as conn:
            assert set(conn.execute(sa.select(db.events.c.classifier)).scalars()) == {1}
            assert [tuple(r) for r in conn.execute(sa.select(db.event_classifiers))] == [
                ("2026-spring", 1)]
    finally:
        database.close()


def test_a_migrated_first_release_database_takes_new_rows(storage_url: str) -> None:
    # The auto-increment keys of the old tables still work after every later migration.
    _load_first_release(storage_url)
    database = open_db(storage_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(db.recipients.insert().values(
                address="new-partner@example.org", pseudonym="p-new", created_at=db.now()))
            ids = conn.execute(sa.select(db.recipients.c.id)
                               .order_by(db.recipients.c.id)).scalars().all()
        assert ids == [1, 2, 3, 4, 5, 6, 7]
    finally:
        database.close()


def test_the_tables_in_db_py_match_what_the_migrations_make(storage_url: str) -> None:
    open_db(storage_url).close()
    engine = create_db_engine(storage_url)
    try:
        inspector = sa.inspect(engine)
        for table in db.metadata.sorted_tables:
            made = {c["name"] for c in inspector.get_columns(table.name)}
            assert made == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()


def test_migrating_twice_changes_nothing(storage_url: str) -> None:
    open_db(storage_url).close()
    engine = create_db_engine(storage_url)
    try:
        assert migrate(engine) == []
        assert pending(engine) == []
    finally:
        engine.dispose()


def test_links_and_unsubscribes_sent_before_tokens_were_per_issue_keep_working(
        storage_url: str) -> None:
    # Messages already sent carry tokens in the old form, naming the recipient's one
    # pseudonym of those days: after migrating, each delivery row holds that pseudonym, so the
    # tracker still resolves them through the ledger.
    import asyncio

    import httpx
    from helpers import legacy_token

    from newsletter.tracking.server import create_app

    _load_first_release(storage_url)
    database = open_db(storage_url)
    try:
        with database.engine.connect() as conn:
            kid, secret = conn.execute(sa.select(db.signing_keys.c.kid,
                                                 db.signing_keys.c.secret)).one()
            old_pseudonym, message_id = conn.execute(
                sa.select(db.deliveries.c.pseudonym, db.deliveries.c.message_id)
                .where(db.deliveries.c.recipient_id == 3)).one()
            address = conn.execute(sa.select(db.recipients.c.address, db.recipients.c.pseudonym)
                                   .where(db.recipients.c.id == 3)).one()
        assert old_pseudonym == address.pseudonym
        assert message_id == f"<2026-spring.{old_pseudonym}@prevent-newsletter.example.org>"
        click = legacy_token(secret.encode(), kid, "c", "2026-spring", "3rzsd72l", "l:kscmp")
        unsubscribe = legacy_token(secret.encode(), kid, "u", "2026-spring", "",
                                   f"r:{old_pseudonym}")
        app = create_app(database=database)

        async def visit() -> tuple[httpx.Response, httpx.Response]:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50123))
            async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as http:
                return (await http.get(f"/c/{click}"), await http.post(
                    f"/u/{unsubscribe}", content=b"List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"}))

        try:
            clicked, unsubscribed = asyncio.run(visit())
        finally:
            app.close()
        assert clicked.status_code == 302
        assert clicked.headers["location"] == \
            "https://www.example.org/prevent/downloads/what-is-prevent.pdf"
        assert unsubscribed.status_code == 200
        with database.engine.connect() as conn:
            assert conn.execute(sa.select(db.suppressions.c.address)
                                .where(db.suppressions.c.address == address.address)).all()
    finally:
        database.close()
