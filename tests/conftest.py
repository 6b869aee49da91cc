"""Shared fixtures. Real parts wherever they can run here: files, SQLite, servers on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "2026-spring"
PROJECT_FILES = ("issues", "templates", "audiences", "images", "theme.yaml", "audiences.yaml",
                 "newsletter.yaml")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's sample project in a temporary folder, as the working folder."""
    root = tmp_path / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.is_file():
            shutil.copy2(source, root / name)
    monkeypatch.chdir(root)
    for var in ("NEWSLETTER_TRACKING_URL", "NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY",
                "NEWSLETTER_SMTP_URL"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def sample_issue(project: Path) -> Path:
    """The sample issue's YAML inside the temporary project."""
    return project / "issues" / f"{SAMPLE_ISSUE}.yaml"


@pytest.fixture
def runner() -> CliRunner:
    """A click runner for in-process CLI tests."""
    return CliRunner()


@pytest.fixture
def sample_yaml(sample_issue: Path) -> str:
    """The sample issue's text, to edit into broken variants."""
    return sample_issue.read_text(encoding="utf-8")


@pytest.fixture
def check_issue(project: Path, runner: CliRunner):  # type: ignore[no-untyped-def]
    """Write YAML text to issues/draft.yaml, run ``newsletter check`` on it, return the result."""
    from newsletter.cli import main

    def run(text: str | bytes, name: str = "draft.yaml"):  # type: ignore[no-untyped-def]
        path = project / "issues" / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return runner.invoke(main, ["check", f"issues/{name}"])

    return run


# --- tracking ---
# The storage tests run against SQLite and a real PostgreSQL (`make test` starts one with
# scripts/start-postgres.sh and sets NEWSLETTER_TEST_PG_URL). Each PostgreSQL test gets a database
# of its own, dropped afterwards.


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "tracking.db")
        return
    import os
    import uuid

    import sqlalchemy as sa

    base = os.environ.get("NEWSLETTER_TEST_PG_URL")
    if not base:
        pytest.skip("NEWSLETTER_TEST_PG_URL is unset (make test starts PostgreSQL and sets it)")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


TRACKING_SENT_AT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC: when the fixture issue went out


def seed_tracking(database, sent_at: float = TRACKING_SENT_AT) -> None:  # type: ignore[no-untyped-def]
    """The fixture the tracking and report tests share (figures in tests/test_report.py).

    Issue ``spring`` (individual tracking, opens on): links a1 article, d1 download, e1 event,
    hp honeypot; recipients 1-5 sent, 6 failed. Lists: schools {1,2}, partners {1..5},
    police {3,4}, charities {6}. Issue ``autumn`` (aggregate): a1, d1; 1-4 sent; schools {1,2},
    police {3,4}. Issue ``draft``: registered, never sent.
    """
    from newsletter import db

    people = [
        (1, "ann@school.example", "Hill School", "school.example"),
        (2, "bob@school.example", "Hill School", "school.example"),
        (3, "cat@police.example", "County Police", "police.example"),
        (4, "dan@police.example", "County Police", "police.example"),
        (5, "eve@council.example", "County Council", "council.example"),
        (6, "fay@charity.example", "Helping Hands", "charity.example"),
    ]
    links = {
        "spring": [("a1", "https://example.org/review", "Read the review", "News", "article"),
                   ("d1", "https://example.org/guide.pdf", "Download the guide", "Resources",
                    "download"),
                   ("e1", "https://example.org/book", "Book a place", "Events", "event"),
                   ("hp", "https://example.org/hp", "", "", "honeypot")],
        "autumn": [("a1", "https://example.org/autumn", "Autumn news", "News", "article"),
                   ("d1", "https://example.org/autumn.pdf", "Autumn guide", "Resources",
                    "download")],
        "draft": [("a1", "https://example.org/draft", "Draft", "News", "article")],
    }
    with database.engine.begin() as conn:
        conn.execute(db.recipients.insert(), [
            {"id": i, "address": a, "pseudonym": f"p{i}", "name": a.split("@")[0],
             "organisation": o, "domain": d, "created_at": sent_at - 86400}
            for i, a, o, d in people])
        for slug, mode, opens in (("spring", "individual", True), ("autumn", "aggregate", False),
                                  ("draft", "individual", False)):
            conn.execute(db.issues.insert().values(
                slug=slug, subject=f"The {slug} issue", tracking=mode, opens=opens,
                web_html=f"<h1>The {slug} issue</h1>", created_at=sent_at, updated_at=sent_at))
            conn.execute(db.links.insert(), [
                {"issue": slug, "link_id": lid, "url": url, "text": text, "section": section,
                 "kind": kind, "tracked": True} for lid, url, text, section, kind in links[slug]])
        rows = [("spring", i, "sent" if i <= 5 else "failed") for i in range(1, 7)]
        rows += [("autumn", i, "sent") for i in range(1, 5)]
        conn.execute(db.deliveries.insert(), [
            {"issue": s, "recipient_id": i, "status": st, "message_id": f"<{s}.{i}@test>",
             "sent_at": sent_at if st == "sent" else None, "updated_at": sent_at}
            for s, i, st in rows])
        memberships = {"spring": {"schools": [1, 2], "partners": [1, 2, 3, 4, 5],
                                  "police": [3, 4], "charities": [6]},
                       "autumn": {"schools": [1, 2], "police": [3, 4]}}
        conn.execute(db.delivery_lists.insert(), [
            {"issue": s, "recipient_id": i, "list_key": key}
            for s, lists in memberships.items() for key, ids in lists.items() for i in ids])


@pytest.fixture
def tracking_db(storage_url: str):  # type: ignore[no-untyped-def]
    """An open database (SQLite, then PostgreSQL) holding the shared tracking fixture."""
    from newsletter.db import open_db

    database = open_db(storage_url)
    try:
        seed_tracking(database)
        yield database
    finally:
        database.close()
