"""The report's reach: views, downloads, clicks and answers per outlet, against a fixture
counted by hand (SQLite and PostgreSQL).

The sample issue as ``send`` registers it (the ``published`` fixture: aggregate tracking, three
recipients on list ``schools``, the sample project's ten outlets registered), a day after it
was sent, each hit from an address of its own:

    email       views 2 (+1 HEAD: scanner); from the email itself (list schools): the leaflet,
                the guidance button twice; from its web version: the referral form (download);
                answers yes 2, no 1                    -> views 2, downloads 2, clicks 4
    kscmp       views 3; the leaflet, the guidance     -> views 3, downloads 1, clicks 2
    facebook    views 1 (+1 facebookexternalhit: scanner)
    gp          views 2 (leaflets' QR code)
    kelsi       views 1; answer yes 1
    direct      views 1
    unknown     views 1; the guidance                  -> clicks 1

Totals: viewers 11, downloads 3, clicks 7; reshared: views 9, downloads 1, clicks 3, yes 1.
"""

from __future__ import annotations

import json

import pytest

from newsletter import report as reporting
from newsletter.cli import main
from newsletter.tracking.events import Hit, store

DAY = 1_780_000_000.0 + 86400
PERSON = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"
LEAFLET = "https://www.example.org/prevent/downloads/what-is-prevent.pdf"
FORM = "https://www.example.org/prevent/downloads/prevent-referral-form.docx"
GUIDANCE = "https://www.gov.uk/government/publications/prevent-duty-guidance"


@pytest.fixture
def reach(published):  # type: ignore[no-untyped-def]
    database, built = published
    ids = {(link.url, link.kind): link.id for link in built.links}
    leaflet, form = ids[(LEAFLET, "download")], ids[(FORM, "download")]
    guidance = ids[(GUIDANCE, "cta")]
    hits: list[Hit] = []

    def hit(kind: str, outlet: str, link: str = "", **kw) -> None:  # type: ignore[no-untyped-def]
        n = len(hits)
        hits.append(Hit(at=DAY + 60 * n, issue="2026-spring", kind=kind, link_id=link,
                        outlet=outlet, user_agent=kw.pop("agent", PERSON),
                        ip_hash=f"reader-{n}", **kw))

    for _ in range(2):
        hit("view", "email")
    hit("view", "email", method="HEAD", reasons=["head"])
    for link in (leaflet, guidance, guidance):
        hit("click", "email", link, list_key="schools")
    hit("click", "email", form)
    for answer in ("yes", "yes", "no"):
        hit("feedback", "email", answer, list_key="schools")
    for _ in range(3):
        hit("view", "kscmp-newsletter")
    hit("click", "kscmp-newsletter", leaflet)
    hit("click", "kscmp-newsletter", guidance)
    hit("view", "facebook")
    hit("view", "facebook", agent="facebookexternalhit/1.1", reasons=["scanner-agent"])
    hit("view", "gp-surgeries")
    hit("view", "gp-surgeries")
    hit("view", "kelsi")
    hit("feedback", "kelsi", "yes")
    hit("view", "direct")
    hit("view", "unknown")
    hit("click", "unknown", guidance)
    store(database, hits)
    return database


def _line(row: dict) -> tuple:
    return (row["id"], row["views"], row["downloads"], row["clicks"], row["feedback"]["yes"],
            row["feedback"]["no"], row["scanners"])


def test_reach_per_outlet_is_counted_by_hand(reach) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(reach, "2026-spring")
    assert [_line(row) for row in report["outlets"]] == [
        ("email", 2, 2, 4, 2, 1, 1),
        ("kmsab-newsletter", 0, 0, 0, 0, 0, 0),
        ("kscmp-newsletter", 3, 1, 2, 0, 0, 0),
        ("facebook", 1, 0, 0, 0, 0, 1),
        ("knet", 0, 0, 0, 0, 0, 0),
        ("viva-engage", 0, 0, 0, 0, 0, 0),
        ("medspace", 0, 0, 0, 0, 0, 0),
        ("kelsi", 1, 0, 0, 1, 0, 0),
        ("partner-websites", 0, 0, 0, 0, 0, 0),
        ("gp-surgeries", 2, 0, 0, 0, 0, 0),
        ("public-screens", 0, 0, 0, 0, 0, 0),
        ("direct", 1, 0, 0, 0, 0, 0),
        ("unknown", 1, 0, 1, 0, 0, 0),
    ]
    email = report["outlets"][0]
    assert (email["name"], email["kind"]) == ("Email (the newsletter's recipients)", "email")
    assert report["outlets"][9]["name"] == "Leaflets in waiting rooms and GP surgeries"
    assert report["reach"] == {
        "email": {"views": 2, "downloads": 2, "clicks": 4, "feedback": {"yes": 2, "no": 1}},
        "reshared": {"views": 9, "downloads": 1, "clicks": 3, "feedback": {"yes": 1, "no": 0}}}
    assert report["kpi"] == {"viewers": 11, "downloads": 3, "clicks": 7}
    assert (report["feedback"]["yes"], report["feedback"]["no"]) == (3, 1)


def test_lists_count_only_the_emails_own_clicks(reach) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(reach, "2026-spring")
    assert [(row["list"], row["clicks"]) for row in report["lists"]] == [("schools", 3)]


def test_scanners_through_outlets_are_apart_unless_asked_for(reach) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(reach, "2026-spring", include_scanners=True)
    views = {row["id"]: row["views"] for row in report["outlets"]}
    assert (views["email"], views["facebook"]) == (3, 2)
    assert report["reach"]["reshared"]["views"] == 10


def test_small_outlet_figures_are_hidden_with_min_count(reach) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(reach, "2026-spring", min_count=3)
    lines = {row["id"]: _line(row) for row in report["outlets"]}
    assert lines["kscmp-newsletter"] == ("kscmp-newsletter", 3, None, None, 0, 0, 0)
    assert lines["email"] == ("email", None, None, 4, None, None, None)
    assert report["reach"]["email"]["feedback"] == {"yes": None, "no": None}


def test_outlets_as_a_table_csv_json_and_a_chart(reach, runner, project) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(reach, "2026-spring")
    table = reporting.render(report, "table", "outlet")
    assert "Reach: email 2 views, 2 downloads, 4 clicks · reshared 9 views, 1 downloads, " \
        "3 clicks (--by outlet)" in table
    assert "By outlet:" in table
    header = table.splitlines()[table.splitlines().index("By outlet:") + 1]
    assert header.split() == ["Outlet", "Kind", "Views", "Downloads", "Clicks", "Yes", "No",
                              "Scanners", "Id"]
    csv_text = reporting.render(report, "csv", "outlet")
    assert csv_text.splitlines()[:2] == [
        "name,kind,views,downloads,clicks,feedback_yes,feedback_no,scanners,id",
        "Email (the newsletter's recipients),email,2,2,4,2,1,1,email"]
    data = json.loads(reporting.render(report, "json"))
    assert set(data["outlets"][0]) == {"id", "name", "kind", "views", "downloads", "clicks",
                                       "feedback", "scanners"}
    page = reporting.render(report, "html", "link")
    assert 'id="outlets"' in page
    assert '"outlets": ["Email (the newsletter\\u0027s recipients)"' in page
    assert "Prevent Facebook page" in page


def test_the_command_shows_outlets(reach, runner, project) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["report", "2026-spring", "--db", reach.url, "--by", "outlet"])
    assert result.exit_code == 0, result.output
    assert "KSCMP newsletter" in result.output and "Screens in public buildings" in result.output
