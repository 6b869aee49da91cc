"""Images published with the issue: `publish`, what `send` does with them, the tracker's /a/."""

from __future__ import annotations

import email
import re
import shutil
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from helpers import AsgiClient

from newsletter import db
from newsletter.build import build_issue
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.project import Project
from newsletter.publish import publish_images
from newsletter.tracking.server import create_app

IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]+)"')


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def image_rows(url: str) -> list:  # type: ignore[type-arg]
    database = open_db(url)
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(db.issue_images.c.issue, db.issue_images.c.src,
                                          db.images.c.name, db.images.c.content_type)
                                .join(db.images, db.images.c.name == db.issue_images.c.name)
                                .order_by(db.issue_images.c.src)).all()
    finally:
        database.close()


@pytest.fixture
def tracker(project: Path, storage_url: str):  # type: ignore[no-untyped-def]
    """The sample issue's images published into ``storage_url``, and the tracker reading it."""
    built = build_issue(project / "issues" / "2026-spring.yaml", Project.load(project))
    database = open_db(storage_url)
    publish_images(database, built)
    app = create_app(database=database)
    yield app, AsgiClient(app), built
    app.close()
    database.close()


def test_publish_stores_each_image_and_says_where_it_is_served(project: Path) -> None:
    result = invoke("publish", "2026-spring")
    assert result.exit_code == 0, result.output
    rows = image_rows("sqlite:///" + str(project / "newsletter.db"))
    assert [(r.issue, r.src, r.content_type) for r in rows] == [
        ("2026-spring", "images/logo.png", "image/png"),
        ("2026-spring", "images/small-steps.png", "image/png")]
    assert "Published 2 image(s) of 2026-spring (2 new) in the database:" in result.output
    for row in rows:
        assert f"http://127.0.0.1:8025/a/{row.name}" in result.output
        assert (project / "build" / "2026-spring" / "assets" / row.name).is_file()
    assert "The tracker serves them at http://127.0.0.1:8025/a/" in result.output


def test_publishing_again_stores_nothing_twice(project: Path) -> None:
    assert invoke("publish", "2026-spring").exit_code == 0
    again = invoke("publish", "2026-spring")
    assert again.exit_code == 0
    assert "(0 new)" in again.output
    assert len(image_rows("sqlite:///" + str(project / "newsletter.db"))) == 2


def test_publish_with_a_cdn_lists_what_to_upload_where(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "assets_url: https://cdn.example.org/news/\n")
    result = invoke("publish", "2026-spring")
    assert result.exit_code == 0, result.output
    assert "assets_url is https://cdn.example.org/news/: upload these files there" \
        in result.output
    for row in image_rows("sqlite:///" + str(project / "newsletter.db")):
        assert (f"build/2026-spring/assets/{row.name}  ->  "
                f"https://cdn.example.org/news/{row.name}") in result.output


def test_publish_refuses_an_issue_with_errors(project: Path, sample_issue: Path,
                                              sample_yaml: str) -> None:
    sample_issue.write_text(sample_yaml.replace("subject:", "subjekt:"))
    result = invoke("publish", "2026-spring")
    assert result.exit_code == 1
    assert "not published; fix the errors above" in result.output
    assert not (project / "newsletter.db").exists()


def test_the_tracker_serves_a_published_image_for_ever(tracker) -> None:  # type: ignore[no-untyped-def]
    app, client, built = tracker
    for image in built.email_images:
        response = client.get(f"/a/{image.name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.content == image.data
        assert response.headers["content-length"] == str(len(image.data))


def test_an_image_request_is_not_counted(tracker) -> None:  # type: ignore[no-untyped-def]
    app, client, built = tracker
    assert client.get(f"/a/{built.email_images[0].name}").status_code == 200
    app.flush()
    with app.database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.events)).scalar() == 0


def test_head_and_a_revalidation_send_no_body(tracker) -> None:  # type: ignore[no-untyped-def]
    _app, client, built = tracker
    name = built.email_images[0].name
    head = client.head(f"/a/{name}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(built.email_images[0].data))
    again = client.get(f"/a/{name}", headers={"if-none-match": head.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", [
    "/a/0123456789abcdef0123456789abcdef.png",        # well formed, never published
    "/a/logo.png", "/a/..%2F..%2Fnewsletter.db", "/a/", "/a/images/logo.png",
    "/a/A97FFD17C01662CB64A2A35C21089F1A.png",
])
def test_anything_not_published_is_404(tracker, path: str) -> None:  # type: ignore[no-untyped-def]
    _app, client, _built = tracker
    assert client.get(path).status_code == 404


def test_an_image_no_issue_published_is_404(tracker) -> None:  # type: ignore[no-untyped-def]
    app, client, built = tracker
    name = built.email_images[0].name
    with app.database.engine.begin() as conn:
        conn.execute(db.issue_images.delete())
    fresh = create_app(database=app.database)      # no cached copy
    try:
        assert AsgiClient(fresh).get(f"/a/{name}").status_code == 404
    finally:
        fresh.close()


def test_an_image_cannot_be_posted_to(tracker) -> None:  # type: ignore[no-untyped-def]
    _app, client, built = tracker
    response = client.post(f"/a/{built.email_images[0].name}")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"


def test_send_publishes_the_images_it_shows(send_project: Path) -> None:
    result = invoke("send", "2026-spring", "--to", "schools", "--yes")
    assert result.exit_code == 0, result.output
    assert "Images:   2, published with the issue at http://127.0.0.1:8025/a/" in result.output
    names = {r.name for r in image_rows("sqlite:///" + str(send_project / "newsletter.db"))}
    message = email.message_from_bytes(
        next((send_project / "maildir" / "new").iterdir()).read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert set(IMG_SRC.findall(html)) == {f"http://127.0.0.1:8025/a/{n}" for n in names}


@pytest.fixture
def cdn(http_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A static file server on 127.0.0.1 standing in for a CDN: (folder, base URL)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    folder = tmp_path / "cdn"
    folder.mkdir()
    base = http_server(Starlette(routes=[Mount("/news", StaticFiles(directory=folder))]))
    return folder, f"{base}/news/"


def test_send_checks_every_image_is_on_the_cdn_first(send_project: Path, cdn) -> None:  # type: ignore[no-untyped-def]
    folder, base = cdn
    settings = send_project / "newsletter.yaml"
    settings.write_text(settings.read_text() + f"assets_url: {base}\n")
    refused = invoke("send", "2026-spring", "--to", "schools", "--yes")
    assert refused.exit_code == 1
    assert (f"2 image(s) of 2026-spring are not online at assets_url ({base}), so recipients "
            "would see broken images:") in refused.output
    assert re.search(rf"  {re.escape(base)}[0-9a-f]{{32}}\.png: 404 Not Found", refused.output)
    assert "hint: run `newsletter publish 2026-spring` and upload the files it lists" \
        in refused.output
    assert not (send_project / "maildir").exists()
    # Uploaded as `publish` says, the send goes ahead.
    assert invoke("publish", "2026-spring").exit_code == 0
    for file in (send_project / "build" / "2026-spring" / "assets").iterdir():
        shutil.copy(file, folder / file.name)
    sent = invoke("send", "2026-spring", "--to", "schools", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "sent 3" in sent.output


def test_delivered_messages_load_every_image_over_https(send_project: Path, smtp_server,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://news.example.org")
    result = invoke("send", "2026-spring", "--to", "schools", "--adapter", "smtp", "--yes")
    assert result.exit_code == 0, result.output
    assert len(recorder.messages) == 3
    sources = set()
    for raw in recorder.messages:
        message = email.message_from_bytes(raw, policy=policy.default)
        sources |= set(IMG_SRC.findall(
            message.get_body(("html",)).get_content()))  # type: ignore[union-attr]
    assert sources and all(s.startswith("https://news.example.org/a/") for s in sources)
    # The tracker on this machine stands in for https://news.example.org.
    app = create_app("sqlite:///" + str(send_project / "newsletter.db"))
    try:
        client = AsgiClient(app)
        for source in sources:
            response = client.get(urlsplit(source).path)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("image/")
            assert len(response.content) > 0
    finally:
        app.close()


def test_a_real_tracker_serves_the_images(send_project: Path, http_server) -> None:  # type: ignore[no-untyped-def]
    assert invoke("publish", "2026-spring").exit_code == 0
    app = create_app("sqlite:///" + str(send_project / "newsletter.db"))
    try:
        base = http_server(app)
        for file in (send_project / "build" / "2026-spring" / "assets").iterdir():
            response = httpx.get(f"{base}/a/{file.name}")
            assert response.status_code == 200
            assert response.content == file.read_bytes()
    finally:
        app.close()
