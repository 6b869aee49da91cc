"""Report figures against a fixture counted by hand (SQLite and PostgreSQL), and the command.

The shared fixture (``seed_tracking`` in tests/helpers.py): issue ``spring``, individual tracking,
recipients p1-p5 sent at T (p6 failed); lists schools {1,2}, partners {1..5}, police {3,4},
charities {6}; domains school {1,2}, police {3,4}, council {5}, charity {6}. The events below:

    day 2026-05-28  #8  p5 e1 10 s after delivery          scanner (after-delivery)
    day 2026-05-29  #1  p1 a1                              person
                    #2  p1 a1 again                        person (repeat click)
                    #3  p1 d1                              person, download
                    #4  p3 d1                              person, download
                    #5  p2 hp                              scanner (honeypot)
                    #6  p4 a1, d1, e1 within 1 s           scanner x3 (burst)
                    #7  p5 e1 HEAD                         scanner (head)
                    3 views                                people
    day 2026-05-30  #9  p3 a1                              person
                    #10 p2 e1                              person
                    1 view HEAD                            scanner (head)
    opens: p1 twice, p3 once

People: clicks 6 (#1,2,3,4,9,10), unique 3 (p1,p2,p3) of 5 delivered = 60%; downloads 2 (p1,p3);
scanner clicks 6 (#5, #6 x3, #7, #8); reasons: burst 3, head 2 (one click, one view),
honeypot 1, after-delivery 1. Per person: p1 3, p2 1, p3 2.

The report only counts what the classifier stored, so #6 and #8 carry their reasons as given (the
rules that reach them are tested in test_classify.py); each person and each scanner has an address
of its own, as in life.
"""

from __future__ import annotations

import json

import pytest
from helpers import TRACKING_SENT_AT as T

from newsletter import report as reporting
from newsletter.cli import main
from newsletter.errors import NewsletterError
from newsletter.tracking.events import Hit, store

DAY_A = 1_780_012_800.0 + 3600  # 2026-05-29 01:00 UTC
DAY_B = DAY_A + 86400            # 2026-05-30 01:00 UTC
AGENT = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"


def click(at: float, who: str, link: str, ip: str = "", **kw) -> Hit:  # type: ignore[no-untyped-def]
    return Hit(at=at, issue="spring", kind="click", link_id=link, pseudonym=who,
               user_agent=AGENT, ip_hash=ip or f"home-{who}", **kw)


@pytest.fixture
def events(tracking_db):  # type: ignore[no-untyped-def]
    store(tracking_db, [
        click(T + 10, "p5", "e1", ip="gateway", reasons=["after-delivery"]),
        click(DAY_A, "p1", "a1"),
        click(DAY_A + 600, "p1", "a1"),
        click(DAY_A + 700, "p1", "d1"),
        click(DAY_A + 800, "p3", "d1"),
        click(DAY_A + 900, "p2", "hp", ip="sandbox", reasons=["honeypot"]),
        click(DAY_A + 1000, "p4", "a1", ip="scanner", reasons=["burst"]),
        click(DAY_A + 1000.5, "p4", "d1", ip="scanner", reasons=["burst"]),
        click(DAY_A + 1001, "p4", "e1", ip="scanner", reasons=["burst"]),
        click(DAY_A + 1200, "p5", "e1", ip="eop", method="HEAD", reasons=["head"]),
        *[Hit(at=DAY_A + 2000 + i, issue="spring", kind="view", user_agent=AGENT,
              ip_hash=f"reader-{i}") for i in range(3)],
        click(DAY_B, "p3", "a1"),
        click(DAY_B + 100, "p2", "e1"),
        Hit(at=DAY_B + 200, issue="spring", kind="view", method="HEAD", reasons=["head"],
            ip_hash="eop"),
        Hit(at=DAY_A + 50, issue="spring", kind="open", pseudonym="p1", user_agent=AGENT),
        Hit(at=DAY_A + 60, issue="spring", kind="open", pseudonym="p1", user_agent=AGENT),
        Hit(at=DAY_A + 70, issue="spring", kind="open", pseudonym="p3", user_agent=AGENT),
        # aggregate issue: lists in the token, no recipients
        *[Hit(at=DAY_A + 10 * i, issue="autumn", kind="click", link_id="a1", list_key="schools",
              user_agent=AGENT, ip_hash=f"h{i}") for i in range(2)],
        Hit(at=DAY_A + 300, issue="autumn", kind="click", link_id="d1", list_key="police",
            user_agent=AGENT, ip_hash="h3"),
        Hit(at=DAY_A + 400, issue="autumn", kind="click", link_id="a1", list_key="police",
            user_agent="BingPreview", ip_hash="h4", reasons=["scanner-agent"]),
        Hit(at=DAY_A + 500, issue="autumn", kind="click", link_id="a1", list_key="schools",
            method="HEAD", user_agent=AGENT, ip_hash="h5", reasons=["head"]),
    ])
    return tracking_db


def link(report: dict, link_id: str) -> dict:
    return next(r for r in report["links"] if r["link_id"] == link_id)


def test_individual_headline(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring")
    assert (r["issue"], r["tracking"], r["delivered"]) == ("spring", "individual", 5)
    assert r["kpi"] == {"viewers": 3, "downloads": 2, "clicks": 6}
    assert r["clicks"] == {"total": 6, "unique": 3, "scanners": 6, "click_through_rate": 0.6}
    assert r["downloads"] == {"total": 2, "unique": 2, "scanners": 1}
    assert r["views"] == {"total": 3, "scanners": 1}
    assert r["opens"] == {"total": 3, "unique": 2, "scanners": 0}
    assert r["scanner_reasons"] == {"after-delivery": 1, "burst": 3, "head": 2, "honeypot": 1}


def test_individual_links(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring")
    assert [(x["link_id"], x["kind"], x["clicks"], x["unique"], x["scanners"])
            for x in r["links"]] == [("a1", "article", 3, 2, 1), ("d1", "download", 2, 2, 1),
                                     ("e1", "event", 1, 1, 3), ("hp", "honeypot", 0, 0, 1)]
    assert link(r, "d1") == {"link_id": "d1", "kind": "download", "text": "Download the guide",
                             "section": "Resources", "url": "https://example.org/guide.pdf",
                             "clicks": 2, "unique": 2, "scanners": 1}


def _click_columns(rows: list[dict]) -> list[dict]:
    """The click columns of the per-list rows (the bounce columns: test_bounces_report.py)."""
    keys = ("list", "delivered", "clicks", "unique", "click_through_rate")
    return [{k: row[k] for k in keys} for row in rows]


def test_lists_count_a_recipient_in_every_list_it_was_sent_through(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring")
    assert _click_columns(r["lists"]) == [
        {"list": "charities", "delivered": 0, "clicks": 0, "unique": 0,
         "click_through_rate": None},
        {"list": "partners", "delivered": 5, "clicks": 6, "unique": 3, "click_through_rate": 0.6},
        {"list": "police", "delivered": 2, "clicks": 2, "unique": 1, "click_through_rate": 0.5},
        {"list": "schools", "delivered": 2, "clicks": 4, "unique": 2, "click_through_rate": 1.0},
    ]


def test_organisations(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring")
    assert [(o["domain"], o["organisation"], o["delivered"], o["clicks"], o["unique"],
             o["click_through_rate"]) for o in r["organisations"]] == [
        ("charity.example", "Helping Hands", 0, 0, 0, None),
        ("council.example", "County Council", 1, 0, 0, 0.0),
        ("police.example", "County Police", 2, 2, 1, 0.5),
        ("school.example", "Hill School", 2, 4, 2, 1.0),
    ]


def test_days(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring")
    assert r["days"] == [
        {"day": "2026-05-28", "clicks": 0, "downloads": 0, "views": 0, "scanners": 1},
        {"day": "2026-05-29", "clicks": 4, "downloads": 2, "views": 3, "scanners": 5},
        {"day": "2026-05-30", "clicks": 2, "downloads": 0, "views": 0, "scanners": 0},
    ]


def test_include_scanners(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring", include_scanners=True)
    assert r["kpi"] == {"viewers": 4, "downloads": 3, "clicks": 12}
    assert r["clicks"] == {"total": 12, "unique": 5, "scanners": 6, "click_through_rate": 1.0}
    assert r["downloads"] == {"total": 3, "unique": 3, "scanners": 1}
    assert (link(r, "a1")["clicks"], link(r, "a1")["unique"]) == (4, 3)
    assert (link(r, "e1")["clicks"], link(r, "e1")["unique"]) == (4, 3)
    assert [d["downloads"] for d in r["days"]] == [0, 3, 0]


def test_aggregate_issue_has_totals_per_link_and_list_only(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "autumn")
    assert (r["tracking"], r["delivered"]) == ("aggregate", 4)
    assert r["clicks"] == {"total": 3, "unique": None, "scanners": 2,
                           "click_through_rate": None}
    assert r["downloads"] == {"total": 1, "unique": None, "scanners": 0}
    assert r["opens"] is None
    assert [(x["link_id"], x["clicks"], x["unique"], x["scanners"]) for x in r["links"]] == [
        ("a1", 2, None, 2), ("d1", 1, None, 0)]
    assert _click_columns(r["lists"]) == [
        {"list": "police", "delivered": 2, "clicks": 1, "unique": None,
         "click_through_rate": None},
        {"list": "schools", "delivered": 2, "clicks": 2, "unique": None,
         "click_through_rate": None},
    ]
    assert r["organisations"] == []
    assert r["scanner_reasons"] == {"head": 1, "scanner-agent": 1}


def test_min_count_hides_small_numbers(events) -> None:  # type: ignore[no-untyped-def]
    r = reporting.build(events, "spring", min_count=2)
    assert r["min_count"] == 2
    assert (link(r, "e1")["clicks"], link(r, "e1")["unique"]) == (None, None)
    assert link(r, "a1")["clicks"] == 3
    police = next(x for x in r["lists"] if x["list"] == "police")
    assert (police["unique"], police["click_through_rate"]) == (None, None)
    assert r["scanner_reasons"] == {"after-delivery": None, "burst": 3, "head": 2,
                                    "honeypot": None}
    table = reporting.render(r, "table", "link")
    assert "Counts from 1 to 1 are hidden (--min-count 2)." in table
    assert "<2" in table


def test_never_sent_and_unknown_issues_say_so(events) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NewsletterError) as caught:
        reporting.build(events, "draft")
    assert caught.value.message == "issue 'draft' was never sent: the ledger has no messages for it"
    assert caught.value.hint == "send it first: newsletter send draft"
    with pytest.raises(NewsletterError) as caught:
        reporting.build(events, "nope")
    assert caught.value.message == "issue 'nope' was never sent: the database has no record of it"
    assert caught.value.hint == "issues sent: autumn, spring"


def test_json_contract_keys(events) -> None:  # type: ignore[no-untyped-def]
    r = json.loads(reporting.render(reporting.build(events, "spring"), "json"))
    for key in ("issue", "delivered", "views", "downloads", "clicks", "links", "kpi", "lists",
                "organisations", "days", "scanner_reasons", "format"):
        assert key in r
    assert set(r["clicks"]) == {"total", "unique", "scanners", "click_through_rate"}
    assert set(r["links"][0]) == {"link_id", "kind", "text", "section", "url", "clicks",
                                  "unique", "scanners"}


def _follows(value, hint, where: str) -> None:  # type: ignore[no-untyped-def]
    """Assert that JSON ``value`` has the shape of the type ``hint``, recursively."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if typing.is_typeddict(hint):
        fields = typing.get_type_hints(hint)
        assert isinstance(value, dict), (where, value)
        assert hint.__required_keys__ <= set(value) <= set(fields), (where, value)
        for key, inner in fields.items():
            if key in value:
                _follows(value[key], inner, f"{where}.{key}")
    elif origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        assert any(_fits(value, option, where) for option in options), (where, value, hint)
    elif origin is list:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _follows(item, typing.get_args(hint)[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), where
        for key, item in value.items():
            _follows(item, typing.get_args(hint)[1], f"{where}.{key}")
    elif hint is type(None):
        assert value is None, where
    elif hint is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), (where, value)
    elif hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), (where, value)
    else:
        assert isinstance(value, hint), (where, value, hint)


def _fits(value, hint, where: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        _follows(value, hint, where)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("options", [{}, {"min_count": 3}, {"include_scanners": True}])
@pytest.mark.parametrize("slug", ["spring", "autumn"])
def test_json_follows_the_typed_contract(events, slug: str, options: dict) -> None:  # type: ignore[no-untyped-def]
    report = json.loads(reporting.render(reporting.build(events, slug, **options), "json"))
    _follows(report, reporting.Report, "report")
    assert report["lists"] and report["links"] and report["days"]


def test_the_report_states_the_rules_that_told_people_from_scanners(events) -> None:  # type: ignore[no-untyped-def]
    from newsletter import db
    from newsletter.tracking.classify import VERSION

    r = reporting.build(events, "spring")
    assert r["classifier"] == {"version": VERSION, "versions": [VERSION]}
    assert (f"People and scanners told apart by rules version {VERSION}; "
            "how: docs/tracking.md") in reporting.headline(r)
    with events.engine.begin() as conn:  # events of this issue stored before an upgrade
        conn.execute(db.event_classifiers.insert().values(issue="spring", classifier=1))
    r = reporting.build(events, "spring")
    assert json.loads(reporting.render(r, "json"))["classifier"] == {
        "version": VERSION, "versions": [1, VERSION]}
    assert (f"People and scanners told apart by rules version {VERSION} (events stored before "
            "an upgrade: version 1); how: docs/tracking.md") in reporting.headline(r)


# --- the command ---------------------------------------------------------------------------


def run(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(main, ["report", *args])


def test_command_table_by_link(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = run(runner, "spring", "--db", events.url)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Issue spring: The spring issue (tracking: individual)" in out
    assert "Delivered: 5" in out
    assert "Viewers: 3 · Downloads: 2 · Clicks: 6" in out
    assert "Clicks: 6 total, 3 unique clickers, click-through 60.0%" in out
    assert "Probable scanners: 6 clicks, 1 views (not counted above" in out
    lines = out.splitlines()
    first = lines.index("By link:") + 3
    assert lines[first].split()[:5] == ["a1", "article", "3", "2", "1"]


def test_command_csv_by_list_and_slug_from_a_path(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    (tmp_path / "issues" / "spring.yaml").write_text("title: Spring\n")
    result = run(runner, "issues/spring.yaml", "--by", "list", "--format", "csv",
                 "--db", events.url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "list,sent,bounced_hard,bounced_soft,complaints,unsubscribes,delivered,clicks,unique,"
        "click_through_rate",
        "charities,0,0,0,0,0,0,0,0,", "partners,5,0,0,0,0,5,6,3,0.6",
        "police,2,0,0,0,0,2,2,1,0.5", "schools,2,0,0,0,0,2,4,2,1.0"]
    (tmp_path / "issues" / "renamed.yaml").write_text("slug: autumn\n")
    aggregate = run(runner, "issues/renamed.yaml", "--by", "organisation", "--db", events.url)
    assert aggregate.exit_code == 0, aggregate.output
    assert "Organisations need individual tracking" in aggregate.output


def test_a_slug_that_is_also_a_folder_is_the_slug(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`newsletter report spring` beside a folder called spring/ reports issue spring."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spring").mkdir()
    result = run(runner, "spring", "--db", events.url)
    assert result.exit_code == 0, result.output
    assert "no such issue file" not in result.output


def test_command_html_is_self_contained(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "report.html"
    result = run(runner, "spring", "--format", "html", "--db", events.url, "-o", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text()
    assert "Chart.js v4" in page and "Released under the MIT License" in page
    assert '<canvas id="days"' in page and '<canvas id="links"' in page
    assert '"day_clicks": [0, 4, 2]' in page
    assert "src=\"http" not in page and "href=\"http" not in page  # nothing fetched: offline


def test_html_link_text_cannot_end_the_script(events) -> None:  # type: ignore[no-untyped-def]
    """A link's text is the author's: in the chart data it stays data, whatever it holds."""
    import re

    import sqlalchemy as sa

    from newsletter import db

    hostile = "</script><script>alert(1)</script><!--"
    with events.engine.begin() as conn:
        conn.execute(sa.update(db.links).where(db.links.c.issue == "spring")
                     .where(db.links.c.link_id == "a1").values(text=hostile))
    page = reporting.render(reporting.build(events, "spring"), "html")
    assert hostile not in page
    found = re.search(r"var data = (.*?);", page)
    assert found is not None
    assert any(label.startswith(hostile) for label in json.loads(found.group(1))["links"])


def test_command_errors(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    never = run(runner, "draft", "--db", events.url)
    assert never.exit_code == 1
    assert "issue 'draft' was never sent: the ledger has no messages for it" in never.output
    assert "Traceback" not in never.output
    missing = run(runner, "issues/missing.yaml", "--db", events.url)
    assert missing.exit_code == 1
    assert "issues/missing.yaml: no such issue file" in missing.output
    bad = run(runner, "spring", "--by", "colour", "--db", events.url)
    assert bad.exit_code == 2
    assert "'colour' is not one of 'link', 'list', 'organisation', 'day'" in bad.output


def test_command_refuses_a_missing_database(runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_DB", raising=False)
    result = run(runner, "spring")
    assert result.exit_code == 1
    assert f"no database at {tmp_path.resolve() / 'newsletter.db'}: nothing has been sent" \
        in result.output
    assert not (tmp_path / "newsletter.db").exists()
    purge = runner.invoke(main, ["track", "purge", "--older-than", "180d"])
    assert purge.exit_code == 1
    assert "no database at" in purge.output


def test_command_options_reach_the_figures(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    days = run(runner, "spring", "--by", "day", "--format", "csv", "--db", events.url)
    assert days.output.splitlines() == [
        "day,clicks,downloads,views,scanners", "2026-05-28,0,0,0,1", "2026-05-29,4,2,3,5",
        "2026-05-30,2,0,0,0"]
    everyone = json.loads(run(runner, "spring", "--format", "json", "--include-scanners",
                              "--db", events.url).output)
    assert everyone["clicks"]["total"] == 12 and everyone["include_scanners"] is True
    hidden = run(runner, "spring", "--by", "organisation", "--min-count", "2", "--db", events.url)
    assert hidden.exit_code == 0, hidden.output
    police = next(line for line in hidden.output.splitlines() if line.startswith("police"))
    assert police.split()[:4] == ["police.example", "County", "Police", "2"]
    assert police.split()[4:] == ["2", "<2", "-"]


def test_issue_file_that_is_not_yaml(events, runner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("slug: [spring\n")
    result = run(runner, "bad.yaml", "--db", events.url)
    assert result.exit_code == 1
    assert "bad.yaml: cannot read the issue file (YAML syntax error:" in result.output
    assert "hint: run: newsletter check bad.yaml" in result.output
