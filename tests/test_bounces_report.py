"""The report's bounce figures: per issue and per list, and the lists to tidy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from helpers import CORPUS_RECIPIENTS, seed_corpus_sends

from newsletter import report as reporting
from newsletter import suppressions
from newsletter.bounces.events import EventType
from newsletter.bounces.record import Event, record
from newsletter.cli import main
from newsletter.db import Database, open_db

LISTS = {1: "schools", 2: "schools", 3: "partners", 4: "partners", 5: "adults", 6: "adults",
         7: "partners", 8: "adults"}


@pytest.fixture
def database(storage_url: str) -> Iterator[Database]:
    database = open_db(storage_url)
    seed_corpus_sends(database, lists=LISTS)
    with database.engine.begin() as conn:
        for key, rid, type_, status in (("h1", 1, EventType.BOUNCED_SOFT, "4.2.2"),
                                        ("h2", 1, EventType.BOUNCED_HARD, "5.1.1"),
                                        ("s1", 2, EventType.BOUNCED_SOFT, "5.2.2"),
                                        ("c1", 7, EventType.COMPLAINED, ""),
                                        ("u1", 3, EventType.UNSUBSCRIBED, "")):
            record(conn, Event(key=key, at=1_776_200_000.0, source="mailbox", type=type_,
                               address=CORPUS_RECIPIENTS[rid], issue="2026-spring",
                               status=status, detail="server words"), 3)
        suppressions.add(conn, CORPUS_RECIPIENTS[8], "unsubscribed", "tracker",
                         issue="2026-spring")
    yield database
    database.close()


def test_per_issue_figures(database: Database) -> None:
    r = reporting.build(database, "2026-spring")
    assert (r["sent"], r["delivered"]) == (8, 6)
    assert r["bounces"] == {"bounced_hard": 1, "bounced_soft": 1, "complaints": 1,
                            "unsubscribes": 2}


def test_per_list_figures(database: Database) -> None:
    rows = {row["list"]: row for row in reporting.build(database, "2026-spring")["lists"]}
    assert {k: (v["sent"], v["bounced_hard"], v["bounced_soft"], v["complaints"],
                v["unsubscribes"], v["delivered"]) for k, v in rows.items()} == {
        "adults": (3, 0, 0, 0, 1, 3), "partners": (3, 0, 0, 1, 1, 3),
        "schools": (2, 1, 1, 0, 0, 0)}


def test_json_leaves_addresses_out_unless_asked(database: Database) -> None:
    r = reporting.build(database, "2026-spring")
    plain = json.loads(reporting.render(r, "json"))
    assert plain["lists_to_tidy"] == [
        {"list": "partners", "organisation": "kcc", "reason": "complained", "status": "",
         "detail": ""},
        {"list": "schools", "organisation": "academy2", "reason": "bounced-soft",
         "status": "5.2.2", "detail": "server words"},
        {"list": "schools", "organisation": "school1", "reason": "bounced-hard",
         "status": "5.1.1", "detail": "server words"}]
    assert "@" not in json.dumps(plain)
    full = json.loads(reporting.render(r, "json", include_addresses=True))
    assert [row["address"] for row in full["lists_to_tidy"]] == [
        CORPUS_RECIPIENTS[7], CORPUS_RECIPIENTS[2], CORPUS_RECIPIENTS[1]]


def test_the_table_by_list_shows_the_lists_to_tidy(database: Database) -> None:
    out = reporting.render(reporting.build(database, "2026-spring"), "table", "list")
    assert "Sent: 8 · Bounced: 1 hard, 1 soft · Delivered: 6 · Complaints: 1 · " \
        "Unsubscribes: 2" in out
    assert f"  schools  {CORPUS_RECIPIENTS[1]}  school1  bounced-hard 5.1.1" in out


def test_the_command_writes_the_lists_to_tidy_as_csv(database: Database) -> None:
    result = CliRunner().invoke(main, ["report", "2026-spring", "--by", "tidy", "--format",
                                       "csv", "--db", database.url])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "list,address,organisation,reason,status,detail",
        f"partners,{CORPUS_RECIPIENTS[7]},kcc,complained,,"]


def test_the_command_json_with_include_addresses(database: Database) -> None:
    result = CliRunner().invoke(main, ["report", "2026-spring", "--format", "json",
                                       "--include-addresses", "--db", database.url])
    assert CORPUS_RECIPIENTS[1] in result.output


def test_the_html_report_has_the_lists_to_tidy(database: Database) -> None:
    html = reporting.render(reporting.build(database, "2026-spring"), "html")
    assert "<h2 id=\"by-tidy\">Lists to tidy</h2>" in html
    assert CORPUS_RECIPIENTS[1] in html
