"""`newsletter share`: one link per outlet, the share kit, QR codes read back independently."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import TrackerClient, zbarimg

from newsletter import db
from newsletter.cli import main
from newsletter.images import prepare_images
from newsletter.load import load_issue
from newsletter.project import Project

PUBLIC = "https://news.example.org"


@pytest.fixture
def public(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample project with its tracker at a public address."""
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", PUBLIC)
    return project


def _json(runner, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_outlet_gets_a_link_naming_it(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring"])
    assert result.exit_code == 0, result.output
    assert "  KSCMP newsletter (partner-newsletter, id kscmp-newsletter)\n" \
        f"    {PUBLIC}/v/2026-spring/kscmp-newsletter\n" in result.stdout
    assert f"    {PUBLIC}/v/2026-spring/gp-surgeries\n    QR code: " \
        "build/2026-spring/share/gp-surgeries-qr.png and gp-surgeries-qr.svg\n" in result.stdout
    assert "Share kit (a text, an HTML snippet and QR codes per outlet): " \
        "build/2026-spring/share/\n" in result.stdout
    assert "warning" not in result.output


def test_json_lists_every_outlet_with_paths_in_the_project(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    data = _json(runner)
    assert data["issue"] == "2026-spring"
    assert len(data["outlets"]) == 10
    by_id = {o["id"]: o for o in data["outlets"]}
    assert by_id["facebook"] == {
        "id": "facebook", "name": "Prevent Facebook page", "kind": "social",
        "url": f"{PUBLIC}/v/2026-spring/facebook",
        "text": "build/2026-spring/share/facebook.txt",
        "html": "build/2026-spring/share/facebook.html"}
    assert by_id["public-screens"]["qr_png"] == "build/2026-spring/share/public-screens-qr.png"
    assert by_id["public-screens"]["qr_svg"] == "build/2026-spring/share/public-screens-qr.svg"
    for outlet in data["outlets"]:
        assert ("qr_png" in outlet) == (outlet["kind"] in ("print", "screen"))
        for key in ("text", "html", "qr_png", "qr_svg"):
            if key in outlet:
                assert (public / outlet[key]).is_file()


def test_one_outlet(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    data = _json(runner, "--outlet", "kelsi")
    assert [o["id"] for o in data["outlets"]] == ["kelsi"]


def test_an_unknown_outlet_gets_did_you_mean(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring", "--outlet", "facebok"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "--outlet 'facebok' is not one of the project's outlets\n    hint: did you mean "
        "'facebook'? the outlets in newsletter.yaml: kscmp-newsletter, kmsab-newsletter, ")
    assert not (public / "build").exists()


def test_a_project_without_outlets_is_told_how_to_add_them(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    settings = public / "newsletter.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text[:text.index("# Where partners reshare")], encoding="utf-8")
    result = runner.invoke(main, ["share", "2026-spring"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "the project has no outlets to share the issue through\n    hint: list them under "
        "'outlets:' in newsletter.yaml")


def test_links_to_this_computer_are_warned_about(project: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring", "--outlet", "kelsi"])
    assert result.exit_code == 0
    assert "warning: the links point at http://127.0.0.1:8025, which only this computer can " \
        "open: set tracking_url in newsletter.yaml (or NEWSLETTER_TRACKING_URL) to the " \
        "tracker's public address before anything is shared or printed\n" in result.stderr


def test_an_issue_with_errors_is_not_shared(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    issue = public / "issues" / "2026-spring.yaml"
    issue.write_text(issue.read_text(encoding="utf-8").replace("edition: Spring 2026\n", ""),
                     encoding="utf-8")
    result = runner.invoke(main, ["share", "2026-spring"])
    assert result.exit_code == 1
    assert "issues/2026-spring.yaml:5:1: error: missing required field 'edition' in the issue" \
        in result.output


def test_the_kit_has_a_text_and_a_snippet_for_each_outlet(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    _json(runner)
    share = public / "build" / "2026-spring" / "share"
    link = f"{PUBLIC}/v/2026-spring/kscmp-newsletter"
    assert (share / "kscmp-newsletter.txt").read_text(encoding="utf-8") == (
        "Prevent Partner Newsletter: Spring 2026\n\n"
        "Prevent is safeguarding. Our learning event, the Small Steps project, and how to make "
        "a referral.\n"
        "Spring 2026, Tuesday 17 March 2026, from Kent and Medway Prevent Team.\n\n"
        f"Read it online: {link}\n")
    snippet = (share / "kscmp-newsletter.html").read_text(encoding="utf-8")
    # the picture as published: sized for email, no camera metadata, served by the tracker
    [published] = [i for i in prepare_images(load_issue(
        public / "issues" / "2026-spring.yaml", Project.load(public))[0], public)[0]
        if i.src == "images/small-steps.png"]
    assert f'<a href="{link}"><img src="{PUBLIC}/a/{published.name}" alt="Small Steps ' \
        'workshop participants talking in a circle"' in snippet
    assert f'<a href="{link}" style="color:#1d4f91">Prevent Partner Newsletter: Spring 2026' \
        "</a></h2>" in snippet
    assert snippet.count(link) == 3
    assert (share / published.name).read_bytes() == published.data
    assert "Leaflets in waiting rooms and GP surgeries (print)\n" \
        f"  link:  {PUBLIC}/v/2026-spring/gp-surgeries\n" in \
        (share / "README.txt").read_text(encoding="utf-8")


def test_the_snippet_escapes_what_the_issue_says(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    issue = public / "issues" / "2026-spring.yaml"
    lines = issue.read_text(encoding="utf-8").splitlines(keepends=True)
    issue.write_text("".join('preheader: "<b>Prevent</b> & you."\n'
                             if line.startswith("preheader:") else line for line in lines),
                     encoding="utf-8")
    _json(runner, "--outlet", "kelsi")
    snippet = (public / "build" / "2026-spring" / "share" / "kelsi.html").read_text()
    assert "&lt;b&gt;Prevent&lt;/b&gt; &amp; you." in snippet and "<b>" not in snippet


def test_qr_codes_read_back_as_the_outlets_link(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    data = _json(runner)
    coded = [o for o in data["outlets"] if "qr_png" in o]
    assert [o["id"] for o in coded] == ["gp-surgeries", "public-screens"]
    for outlet in coded:
        assert zbarimg(public / outlet["qr_png"]) == outlet["url"]


def _png_size_and_dpi(path: Path) -> tuple[int, int, float]:
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    at = data.index(b"pHYs")
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert unit == 1
    return width, height, per_metre * 0.0254


def test_qr_codes_are_sized_to_print(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    share = public / "build" / "2026-spring" / "share"
    _json(runner)
    for name, millimetres, dpi in (("gp-surgeries", 40, 300), ("public-screens", 100, 150)):
        width, height, found_dpi = _png_size_and_dpi(share / f"{name}-qr.png")
        assert width == height and round(found_dpi) == dpi
        printed = width / dpi * 25.4
        assert abs(printed - millimetres) < millimetres * 0.15, (name, printed)
        svg = (share / f"{name}-qr.svg").read_text(encoding="utf-8")
        assert f'width="{millimetres:.1f}mm" height="{millimetres:.1f}mm"' in svg


def test_build_writes_the_kit_too(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["build", "issues/2026-spring.yaml"])
    assert result.exit_code == 0, result.output
    share = public / "build" / "2026-spring" / "share"
    assert zbarimg(share / "gp-surgeries-qr.png") == f"{PUBLIC}/v/2026-spring/gp-surgeries"
    assert (share / "facebook.txt").is_file()


def test_share_registers_the_outlets_with_the_tracker(public: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(main, ["share", "2026-spring"])
    assert "registered with the tracker at the next `newsletter send`" in result.stderr
    database = db.open_db("sqlite:///" + str(public / "newsletter.db"))
    try:
        runner.invoke(main, ["share", "2026-spring", "--outlet", "kelsi"])
        with database.engine.connect() as conn:
            rows = dict(conn.execute(sa.select(db.outlets.c.id, db.outlets.c.kind)).all())
    finally:
        database.close()
    assert len(rows) == 10 and rows["gp-surgeries"] == "print"


def test_send_registers_the_outlets_too(public: Path, tmp_path: Path) -> None:
    from newsletter.build import build_issue
    from newsletter.ledger import register_issue

    project = Project.load(public)
    built = build_issue(public / "issues" / "2026-spring.yaml", project)
    database = db.open_db("sqlite:///" + str(tmp_path / "sent.db"))
    try:
        register_issue(database, built)
        with database.engine.connect() as conn:
            ids = set(conn.execute(sa.select(db.outlets.c.id)).scalars())
    finally:
        database.close()
    assert ids == {o.id for o in project.settings.outlets}


def test_an_outlets_link_serves_the_web_version_and_never_redirects(tracking_db) -> None:  # type: ignore[no-untyped-def]
    from newsletter.tracking.server import create_app

    app = create_app(database=tracking_db)
    try:
        client = TrackerClient(app)
        plain = client.get("/v/spring")
        for path in ("/v/spring/kscmp-newsletter", "/v/spring/no-such-outlet",
                     "/v/spring/https:%2F%2Fevil.example", "/v/spring//evil.example"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "location" not in response.headers
            assert response.text == plain.text
    finally:
        app.close()
