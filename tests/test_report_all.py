"""``newsletter report --all``: every issue side by side, checked against each issue's own
report of the same data, with totals per calendar or strategy year (SQLite and PostgreSQL).

The shared tracking fixture (``spring``, individual tracking, and ``autumn``, aggregate, both
sent 2026-05-28) plus ``winter``, sent 2025-12-01 to the same people, with hits of every kind
through the email and reshared outlets, people and probable scanners.
"""

from __future__ import annotations

import csv
import io
import json
import typing

import pytest
import sqlalchemy as sa
from helpers import TRACKING_SENT_AT as T

from newsletter import db, reach
from newsletter import report as reporting
from newsletter.cli import main
from newsletter.report.contract import AcrossReport
from newsletter.tracking.events import Hit, store

WINTER = 1_764_547_200.0 + 3600     # 2025-12-01 01:00 UTC
AGENT = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"


@pytest.fixture
def issues(tracking_db):  # type: ignore[no-untyped-def]
    with tracking_db.engine.begin() as conn:
        conn.execute(db.issues.insert().values(
            slug="winter", subject="The winter issue", tracking="aggregate", opens=False,
            created_at=WINTER, updated_at=WINTER))
        conn.execute(db.links.insert(), [
            {"issue": "winter", "link_id": "d1", "url": "https://example.org/w.pdf",
             "text": "Winter guide", "section": "Resources", "kind": "download",
             "tracked": True}])
        conn.execute(db.deliveries.insert(), [
            {"issue": "winter", "recipient_id": i, "status": "sent" if i < 4 else "bounced",
             "message_id": f"<winter.{i}@test>", "pseudonym": f"w{i}", "sent_at": WINTER,
             "updated_at": WINTER} for i in range(1, 5)])
    day = T + 86400
    hits = [Hit(at=day + 100 * i, issue="spring", kind="click", link_id=link, pseudonym=who,
                user_agent=AGENT, ip_hash=f"home-{who}-{i}")
            for i, (who, link) in enumerate([("p1", "a1"), ("p1", "d1"), ("p2", "d1"),
                                              ("p3", "e1")])]
    hits += [Hit(at=day + 1000 + i, issue="spring", kind="view", outlet=o, user_agent=AGENT,
                 ip_hash=f"r{i}") for i, o in enumerate(("email", "facebook", "kelsi"))]
    hits.append(Hit(at=day + 2000, issue="spring", kind="feedback", link_id="yes",
                    user_agent=AGENT, ip_hash="fb"))
    hits.append(Hit(at=day + 3000, issue="spring", kind="click", link_id="a1", pseudonym="p4",
                    user_agent="python-requests/2.31", ip_hash="bot",
                    reasons=["scanner-agent"]))
    hits += [Hit(at=day + 4000 + 50 * i, issue="autumn", kind="click", link_id=link,
                 list_key="schools", outlet=o, user_agent=AGENT, ip_hash=f"a{i}")
             for i, (link, o) in enumerate([("a1", "email"), ("d1", "email"),
                                            ("d1", "kscmp-newsletter")])]
    hits += [Hit(at=WINTER + 86400 + 60 * i, issue="winter", kind=kind, link_id=link,
                 outlet="gp-surgeries", user_agent=AGENT, ip_hash=f"w{i}")
             for i, (kind, link) in enumerate([("view", ""), ("view", ""), ("click", "d1"),
                                               ("feedback", "no")])]
    store(tracking_db, hits)
    return tracking_db


def _line(data, slug: str) -> dict:  # type: ignore[no-untyped-def]
    return next(line for line in data["issues"] if line["issue"] == slug)


@pytest.mark.parametrize("include_scanners", [False, True])
def test_every_line_equals_the_issues_own_report(issues, include_scanners: bool) -> None:  # type: ignore[no-untyped-def]
    data = reach.across(issues, include_scanners=include_scanners)
    assert [line["issue"] for line in data["issues"]] == ["winter", "autumn", "spring"]
    for slug in ("winter", "autumn", "spring"):
        own = reporting.build(issues, slug, include_scanners=include_scanners)
        line = _line(data, slug)
        answers = own["feedback"]
        assert (line["delivered"], line["views"], line["downloads"], line["clicks"],
                line["unique_clickers"], line["unsubscribes"],
                line["bounces"], line["feedback"]) == (
            own["delivered"], own["kpi"]["viewers"], own["kpi"]["downloads"],
            own["kpi"]["clicks"], own["clicks"]["unique"], own["bounces"]["unsubscribes"],
            own["bounces"]["bounced_hard"] + own["bounces"]["bounced_soft"],
            {"yes": answers["yes"], "no": answers["no"]} if answers else {"yes": 0, "no": 0})
        assert line["sent"] == own["sent"]


def test_the_figures_counted_by_hand(issues) -> None:  # type: ignore[no-untyped-def]
    data = reach.across(issues)
    spring = _line(data, "spring")
    assert (spring["date"], spring["views"], spring["downloads"], spring["clicks"],
            spring["unique_clickers"], spring["feedback"]) == (
        "2026-05-28", 3, 2, 4, 3, {"yes": 1, "no": 0})
    autumn = _line(data, "autumn")
    assert (autumn["clicks"], autumn["downloads"], autumn["unique_clickers"]) == (3, 2, None)
    winter = _line(data, "winter")
    assert (winter["date"], winter["sent"], winter["views"], winter["clicks"],
            winter["feedback"]) == ("2025-12-01", 3, 2, 1, {"yes": 0, "no": 1})


def test_years_are_calendar_years_or_the_strategys(issues) -> None:  # type: ignore[no-untyped-def]
    calendar = reach.across(issues)["years"]
    assert [(y["year"], y["issues"], y["views"], y["clicks"]) for y in calendar] == [
        ("2025", 1, 2, 1), ("2026", 2, 3, 7)]
    import datetime as dt

    strategy = reach.across(issues, strategy_start=dt.date(2025, 4, 1))["years"]
    assert [(y["year"], y["issues"], y["sent"]) for y in strategy] == [
        ("2025-04-01 to 2026-03-31", 1, 3), ("2026-04-01 to 2027-03-31", 2, 9)]


def test_from_and_to_choose_issues_by_their_first_send(issues) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    def chosen(**kw) -> list[str]:  # type: ignore[no-untyped-def]
        return [line["issue"] for line in reach.across(issues, **kw)["issues"]]

    assert chosen(since=dt.date(2026, 1, 1)) == ["autumn", "spring"]
    assert chosen(until=dt.date(2025, 12, 1)) == ["winter"]
    assert chosen(since=dt.date(2026, 5, 28), until=dt.date(2026, 5, 28)) == ["autumn", "spring"]
    assert chosen(since=dt.date(2027, 1, 1)) == []


def test_strategy_years_from_29_february() -> None:
    import datetime as dt

    start = dt.date(2024, 2, 29)
    assert reach.strategy_year(dt.date(2025, 3, 1), start) == "2025-02-28 to 2026-02-27"
    assert reach.strategy_year(dt.date(2024, 2, 28), start) == "2023-02-28 to 2024-02-28"


def test_min_count_hides_small_figures(issues) -> None:  # type: ignore[no-untyped-def]
    data = reach.across(issues, min_count=3)
    spring = _line(data, "spring")
    assert (spring["views"], spring["downloads"], spring["clicks"], spring["feedback"]) == (
        3, None, 4, {"yes": None, "no": 0})
    assert spring["delivered"] == 5
    table = reach.render_across(data, "table")
    spring_row = next(line for line in table.splitlines() if line.startswith("spring "))
    autumn_row = next(line for line in table.splitlines() if line.startswith("autumn "))
    assert spring_row.split()[:9] == ["spring", "2026-05-28", "5", "3", "<3", "4", "3", "<3",
                                      "0"]
    assert autumn_row.split()[6] == "-"     # aggregate tracking: no unique clickers at all


def _follows(value, hint, where: str) -> None:  # type: ignore[no-untyped-def]
    """Assert that JSON ``value`` has the shape of the type ``hint``, recursively."""
    import types

    if typing.is_typeddict(hint):
        fields = typing.get_type_hints(hint)
        assert isinstance(value, dict) and set(value) == set(fields), (where, value)
        for key, inner in fields.items():
            _follows(value[key], inner, f"{where}.{key}")
    elif typing.get_origin(hint) in (types.UnionType, typing.Union):
        assert any(_fits(value, option) for option in typing.get_args(hint)), (where, value)
    elif typing.get_origin(hint) is list:
        for i, item in enumerate(value):
            _follows(item, typing.get_args(hint)[0], f"{where}[{i}]")
    elif hint is type(None):
        assert value is None, where
    elif hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), (where, value)
    else:
        assert isinstance(value, hint), (where, value, hint)


def _fits(value, hint) -> bool:  # type: ignore[no-untyped-def]
    try:
        _follows(value, hint, "")
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("options", [{}, {"min_count": 3}])
def test_json_follows_the_typed_contract(issues, options: dict) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(reach.render_across(reach.across(issues, **options), "json"))
    _follows(data, AcrossReport, "report")
    assert data["issues"] and data["years"]


def test_the_command_as_table_csv_json_and_html(issues, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    table = runner.invoke(main, ["report", "--all", "--db", issues.url])
    assert table.exit_code == 0, table.output
    assert table.output.startswith("Every issue: 3 issue(s), every issue sent; totals per "
                                   "calendar years")
    assert "By issue:" in table.output and "By year:" in table.output
    text = runner.invoke(main, ["report", "--all", "--format", "csv", "--from", "2026-01-01",
                                "--db", issues.url]).output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["row"], r["issue"] or r["year"], r["clicks"]) for r in rows] == [
        ("issue", "autumn", "3"), ("issue", "spring", "4"), ("year", "2026", "7")]
    data = json.loads(runner.invoke(main, ["report", "--all", "--format", "json",
                                           "--to", "2025-12-31", "--db", issues.url]).output)
    assert [line["issue"] for line in data["issues"]] == ["winter"]
    assert data["to"] == "2025-12-31"
    page = runner.invoke(main, ["report", "--all", "--format", "html", "--db", issues.url])
    assert '<canvas id="trend"' in page.output and "The winter issue" in page.output
    assert '"issues": ["winter (2025-12-01)"' in page.output


@pytest.mark.parametrize(("arguments", "message", "hint"), [
    ([], "no issue given", "or --all for every issue"),
    (["spring", "--all"], "both an issue (spring) and --all were given", "give an ISSUE"),
    (["spring", "--from", "2026-01-01"], "--from chooses issues for --all, not for one issue",
     "add --all"),
    (["--all", "--by", "list"], "--by list is for one issue's report, not --all",
     "newsletter report ISSUE --by list"),
    (["--all", "--from", "April"], "--from 'April' is not a date", "YYYY-MM-DD"),
    (["--all", "--to", "2026-02-30"], "--to '2026-02-30' is not a date", "YYYY-MM-DD"),
    (["--all", "--from", "2026-06-01", "--to", "2026-01-01"],
     "--from 2026-06-01 is after --to 2026-01-01", "the earlier date to --from"),
])
def test_the_command_refuses_what_it_cannot_do(issues, runner, tmp_path, monkeypatch,  # type: ignore[no-untyped-def]
                                               arguments: list[str], message: str,
                                               hint: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["report", *arguments, "--db", issues.url])
    assert result.exit_code == 1, result.output
    assert message in result.output and hint in result.output
    assert "Traceback" not in result.output


def test_an_empty_period_says_so(issues, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["report", "--all", "--from", "2030-01-01", "--db", issues.url])
    assert result.exit_code == 0, result.output
    assert "(no issue sent in this period)" in result.output


def test_unsubscribes_count_in_their_issue(issues) -> None:  # type: ignore[no-untyped-def]
    with issues.engine.begin() as conn:
        recipient = conn.execute(sa.select(db.recipients.c.address)
                                 .where(db.recipients.c.id == 1)).scalar_one()
        conn.execute(db.delivery_events.insert().values(
            event_key="test:unsubscribe:1", at=T + 86400 * 2, recorded_at=T + 86400 * 2,
            issue="spring", address=recipient, type="unsubscribed", source="link"))
    own = reporting.build(issues, "spring")
    assert own["bounces"]["unsubscribes"] == 1
    assert _line(reach.across(issues), "spring")["unsubscribes"] == 1
