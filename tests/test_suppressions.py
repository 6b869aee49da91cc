"""`newsletter suppressions` and `audiences check`: see, add, remove, import and export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter import db, suppressions
from newsletter.cli import main
from newsletter.db import Database, open_db

DSL = "dsl@academy2.example.org"           # a member of kscmp in the sample audiences.yaml
LEAD = "safeguarding-lead@school1.example.org"


@pytest.fixture
def database(project: Path) -> Iterator[Database]:
    database = open_db("sqlite:///" + str(project / "newsletter.db"))
    with database.engine.begin() as conn:
        suppressions.add(conn, DSL, "bounced-hard", "mailbox", issue="2026-spring",
                         detail="5.1.1 550 5.1.1 User unknown", at=1_776_154_000.0)
        suppressions.add(conn, LEAD, "unsubscribed", "tracker", issue="2026-spring",
                         at=1_776_240_000.0)
        suppressions.add(conn, "old@elsewhere.example.org", "complained", "webhook",
                         at=1_770_000_000.0)
    yield database
    database.close()


def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["suppressions", *args], input=input)


def test_list_as_json_is_a_list_of_objects(database: Database) -> None:
    result = invoke("list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["address"] for r in rows] == ["old@elsewhere.example.org", DSL, LEAD]
    assert rows[1] == {"address": DSL, "reason": "bounced-hard", "source": "mailbox",
                       "at": "2026-04-14T08:06:40Z", "issue": "2026-spring",
                       "detail": "5.1.1 550 5.1.1 User unknown"}


def test_list_filters_by_reason_list_and_date(database: Database) -> None:
    rows = json.loads(invoke("list", "--reason", "bounced-hard", "--format", "json").output)
    assert [r["address"] for r in rows] == [DSL]
    rows = json.loads(invoke("list", "--list", "kscmp", "--format", "json").output)
    assert [r["address"] for r in rows] == [DSL, LEAD]
    rows = json.loads(invoke("list", "--since", "2026-04-15", "--format", "json").output)
    assert [r["address"] for r in rows] == [LEAD]
    rows = json.loads(invoke("list", "--until", "2026-03-01", "--format", "json").output)
    assert [r["address"] for r in rows] == ["old@elsewhere.example.org"]


def test_list_as_a_table_and_csv(database: Database) -> None:
    table = invoke("list").output
    assert f"{DSL:<37}  bounced-hard  mailbox  2026-04-14  2026-spring   5.1.1 550" in table
    assert table.rstrip().endswith("3 suppressed address(es)")
    lines = invoke("list", "--format", "csv").output.splitlines()
    assert lines[0] == "address,reason,source,at,issue,detail"
    assert lines[2] == f"{DSL},bounced-hard,mailbox,2026-04-14T08:06:40Z,2026-spring," \
                       "5.1.1 550 5.1.1 User unknown"


def test_a_date_that_is_not_a_date_says_how_to_write_one(database: Database) -> None:
    result = invoke("list", "--since", "last week")
    assert result.exit_code == 1
    assert result.output == ("--since 'last week' is not a date\n"
                             "    hint: write it as 2026-04-14, e.g. --since 2026-04-14\n")


def test_an_unknown_list_names_the_lists_there_are(database: Database) -> None:
    result = invoke("list", "--list", "nope")
    assert result.exit_code == 1
    assert "nope" in result.output


def test_add_then_it_is_listed_and_logged(database: Database) -> None:
    result = invoke("add", "New-Lead@School9.example.org", "--reason", "manual", "--note",
                    "left the school")
    assert result.output == "Suppressed new-lead@school9.example.org (manual).\n"
    found = suppressions.get(database, "new-lead@school9.example.org")
    assert (found.reason, found.source) == ("manual", "manual")
    assert invoke("add", "new-lead@school9.example.org").output == (
        "new-lead@school9.example.org was already suppressed; nothing changed.\n")


def test_add_refuses_what_is_not_an_address(database: Database) -> None:
    result = invoke("add", "not an address")
    assert result.exit_code == 1
    assert result.output.startswith("'not an address' is not an email address: ")


def test_remove_asks_and_is_logged(database: Database) -> None:
    result = invoke("remove", DSL, input="n\n")
    assert result.exit_code == 1
    assert "nothing changed" in result.output
    assert suppressions.get(database, DSL) is not None
    result = invoke("remove", DSL, "--note", "mailbox recreated", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"{DSL}: bounced-hard (mailbox, 2026-04-14, 2026-spring)" in result.output
    assert suppressions.get(database, DSL) is None
    with database.engine.connect() as conn:
        log = conn.execute(sa.select(db.suppression_log.c.action, db.suppression_log.c.reason,
                                     db.suppression_log.c.note)
                           .where(db.suppression_log.c.address == DSL)
                           .order_by(db.suppression_log.c.id)).all()
    assert [tuple(r) for r in log] == [("added", "bounced-hard", ""),
                                       ("removed", "bounced-hard", "mailbox recreated")]


def test_remove_of_an_address_not_suppressed_says_so(database: Database) -> None:
    result = invoke("remove", "nobody@example.org", "--yes")
    assert result.exit_code == 1
    assert result.output == ("nobody@example.org is not suppressed\n"
                             "    hint: see them all with `newsletter suppressions list`\n")


def test_export_then_import_into_another_database(database: Database, project: Path) -> None:
    result = invoke("export", "-o", "out.csv")
    assert result.output == "Wrote 3 suppression(s) to out.csv.\n"
    other = "sqlite:///" + str(project / "other.db")
    result = invoke("import", "out.csv", "--db", other)
    assert result.exit_code == 1     # a mistyped --db never starts a second database...
    assert "add --create-db" in result.output
    result = invoke("import", "out.csv", "--db", other, "--create-db")     # ...on purpose it does
    assert result.output == "Imported 3 suppression(s) from out.csv; 0 were already suppressed.\n"
    copy = open_db(other)
    try:
        assert suppressions.all_suppressions(copy) == suppressions.all_suppressions(database)
    finally:
        copy.close()


def test_a_mistyped_database_path_is_refused(database: Database) -> None:
    result = invoke("list", "--db", "newsleter.db")
    assert result.exit_code == 1
    assert result.output.startswith("no database at newsleter.db; this project's ledger is "
                                    "newsletter.db\n    hint: check the path given with --db "
                                    "or NEWSLETTER_DB\n")


def test_import_with_a_bad_line_imports_nothing(database: Database, project: Path) -> None:
    (project / "in.csv").write_text("address,reason\nfine@example.org,manual\n"
                                    "broken,manual\nok@example.org,bounced\n")
    result = invoke("import", "in.csv")
    assert result.exit_code == 1
    assert "in.csv:3:1: error: 'broken' is not an email address" in result.output
    assert ("in.csv:4:1: error: unknown reason 'bounced'\n    hint: one of: unsubscribed, "
            "bounced-hard, bounced-soft, complained, manual") in result.output
    assert result.output.rstrip().endswith("2 error(s); nothing was imported")
    assert suppressions.get(database, "fine@example.org") is None


def test_import_without_an_address_column(database: Database, project: Path) -> None:
    (project / "in.csv").write_text("who,why\nx@example.org,manual\n")
    result = invoke("import", "in.csv")
    assert result.exit_code == 1
    assert "in.csv:1:1: error: the first line must name the columns, with one called address" \
        in result.output


def test_import_of_a_missing_file(database: Database) -> None:
    result = invoke("import", "missing.csv")
    assert result.exit_code == 1
    assert result.output == "missing.csv: no such file\n"


def test_audiences_check_shows_suppressed_members_per_list(database: Database) -> None:
    result = CliRunner().invoke(main, ["audiences", "check"])
    assert result.exit_code == 0, result.output
    assert "kscmp: 2 of 4 member(s) suppressed" in result.output
    assert (f"  {DSL}  bounced-hard (mailbox, 2026-04-14, 2026-spring)  Example Academy\n"
            "      5.1.1 550 5.1.1 User unknown") in result.output


def test_audiences_check_without_a_database_creates_none(project: Path) -> None:
    result = CliRunner().invoke(main, ["audiences", "check"])
    assert result.exit_code == 0, result.output
    assert not (project / "newsletter.db").exists()


def test_a_first_release_unsubscribe_keeps_its_issue(storage_url: str) -> None:
    """m030 turns the first release's source "tracker:/u (ISSUE)" into source and issue."""
    from newsletter.db import create_db_engine
    from newsletter.migrations import MIGRATIONS, migrate

    engine = create_db_engine(storage_url)
    try:
        with engine.begin() as conn:
            for step in MIGRATIONS[:2]:
                step(conn)
            conn.exec_driver_sql(
                "CREATE TABLE migrations (name VARCHAR(100) PRIMARY KEY, applied_at FLOAT)")
            conn.exec_driver_sql("INSERT INTO migrations VALUES ('m001_initial', 0), "
                                 "('m002_report_indexes', 0)")
            conn.exec_driver_sql("INSERT INTO suppressions VALUES ('a@example.org', "
                                 "'unsubscribed', 'tracker:/u (2026-spring)', 1.0)")
        assert "m030_bounces" in migrate(engine)
    finally:
        engine.dispose()
    database = open_db(storage_url)
    try:
        found = suppressions.get(database, "a@example.org")
        assert (found.reason, found.source, found.issue) == ("unsubscribed", "tracker",
                                                             "2026-spring")
    finally:
        database.close()


def test_export_to_a_folder_that_does_not_exist_says_so(database: Database) -> None:
    result = invoke("export", "-o", "no-such-folder/out.csv")
    assert result.exit_code == 1
    assert result.output == "cannot write no-such-folder/out.csv: No such file or directory\n"
