"""The preview server: in-process app tests, plus real uvicorn for the event stream and watcher.

Most tests drive the app with a small stand-in build (``stub_build``) so that they test the
preview, not the renderer; the tests at the end run the real build on the sample issue.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx
import pytest
import yaml

from newsletter.errors import InvalidIssue, NewsletterError, Problem
from newsletter.preview import (
    PreviewServer,
    bind,
    create_app,
    referenced_files,
    safe_relative,
)
from newsletter.project import Project
from newsletter.settings import Settings

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100055fe2860000000049454e44ae426082")

ISSUE = """\
subject: Spring safeguarding update
preheader: New guidance for schools and three events
sender: {name: County Partnership, email: news@partnership.example,
         reply_to: team@partnership.example}
heading: Welcome to the spring issue
"""

TEMPLATE = """\
<!doctype html><html lang="en"><head><title>{subject}</title></head>
<body><h1>{heading}</h1><img src="images/logo.png" alt="Partnership logo">
<img src="../secret.txt" alt="x"><img src="https://cdn.example/remote.png" alt="remote">
<a href="https://example.org/guide">Read the guide</a></body></html>
"""


def stub_build(path: Path, project: Project, *, tracked: bool) -> SimpleNamespace:
    """A stand-in for newsletter.build.build_issue with the same contract, for these tests."""
    assert tracked is False, "the preview must not track links"
    name = str(path.relative_to(project.root))
    if not path.is_file():
        raise NewsletterError(f"{name}: file not found", hint="check the file name")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise InvalidIssue([Problem(name, mark.line + 1, mark.column + 1,
                                    f"this is not valid YAML: {exc.problem}",
                                    "check the indentation")]) from exc
    if not isinstance(data, dict) or "subject" not in data:
        raise InvalidIssue([Problem(name, 1, 1, "missing required field 'subject'",
                                    "add a line 'subject: ...'")])
    if data.get("explode"):
        raise ZeroDivisionError("division by zero")
    template = project.templates_dir / "email.html"
    html = template.read_text(encoding="utf-8").format(**data)
    sender = SimpleNamespace(**data["sender"])
    issue = SimpleNamespace(slug="demo", subject=data["subject"], preheader=data["preheader"],
                            sender=sender, title=data["heading"])
    links = [SimpleNamespace(id="a1b2c3", url="https://example.org/guide",
                             text="Read the guide", section="news", kind="article",
                             tracked=False)]
    warnings = [Problem(name, 4, 10, "the heading is in capitals", "write it in sentence case",
                        "warning")] if data["heading"].isupper() else []
    dependencies = [path, project.theme_path, template, project.root / "images" / "logo.png"]
    return SimpleNamespace(issue=issue, mjml="", html=html, text=f"{data['heading']}\n\nText.",
                           web_html=html, links=links, warnings=warnings,
                           dependencies=dependencies)


@pytest.fixture
def stub_project(tmp_path: Path) -> Project:
    """A project folder with one issue, a template, a theme and an image, plus a secret beside."""
    root = tmp_path / "proj"
    for folder in ("issues", "images", "templates/partials"):
        (root / folder).mkdir(parents=True)
    (root / "issues" / "demo.yaml").write_text(ISSUE, encoding="utf-8")
    (root / "issues" / "other.yaml").write_text(ISSUE, encoding="utf-8")
    (root / "templates" / "email.html").write_text(TEMPLATE, encoding="utf-8")
    (root / "theme.yaml").write_text("brand_colour: '#1d4f91'\n", encoding="utf-8")
    (root / "images" / "logo.png").write_bytes(PNG)
    (root / "images" / "unused.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_text("secret outside the project\n", encoding="utf-8")
    return Project(root=root, settings=Settings(root=root, env={}))


class Terminal:
    """Collects what the preview prints, as the CLI's echo would."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []

    def __call__(self, message: str, is_error: bool) -> None:
        self.lines.append((message, is_error))

    @property
    def errors(self) -> str:
        return "\n".join(m for m, is_error in self.lines if is_error)


def make_app(project: Project, terminal: Terminal | None = None, **options):  # type: ignore[no-untyped-def]
    return create_app(project.root / "issues" / "demo.yaml", project, watch=False,
                      build=stub_build, echo=terminal or Terminal(), **options)


class Client:
    """A synchronous front to httpx's in-process ASGI transport (starlette's TestClient now
    wants httpx2, which this project does not install)."""

    def __init__(self, app, base_url: str = "http://127.0.0.1") -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.base_url = base_url

    def get(self, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50123))
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                response = await client.get(path, **kwargs)
                await response.aread()
                return response

        return run_async(go)


def run_async(function):  # type: ignore[no-untyped-def]
    """``anyio.run(function)`` in a thread of its own: the session's Chromium (playwright's
    sync API) keeps an event loop running in the main thread once a browser test has run."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, function).result()


def client_for(app) -> Client:  # type: ignore[no-untyped-def]
    return Client(app)


# --- the page ---------------------------------------------------------------------------------


def test_page_shows_inbox_line_email_widths_text_links_and_warnings(stub_project: Project):
    (stub_project.root / "issues" / "demo.yaml").write_text(
        ISSUE.replace("Welcome to the spring issue", "WELCOME"), encoding="utf-8")
    client = client_for(make_app(stub_project))

    page = client.get("/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="en">' in html
    assert "<title>Preview: Spring safeguarding update</title>" in html
    # the inbox line
    assert "County Partnership &lt;news@partnership.example&gt;" in html
    assert "team@partnership.example" in html
    assert "Spring safeguarding update" in html
    assert "New guidance for schools and three events" in html
    # the email in a titled frame, with the width switch
    assert 'title="The email, as a recipient sees it"' in html
    assert 'src="/_preview/email.html?v=1"' in html
    assert 'value="375"' in html and 'value="800"' in html
    assert "<legend>Width</legend>" in html
    # the plain text, the link table and the warnings
    assert '<pre class="plain-text">WELCOME' in html
    assert "<code>a1b2c3</code>" in html and "Read the guide" in html
    assert "https://example.org/guide" in html and "<td>article</td><td>news</td>" in html
    assert "issues/demo.yaml:4:10" in html and "the heading is in capitals" in html
    assert 'Warnings (<span id="warnings-count">1</span>)' in html
    assert 'Links (<span id="links-count">1</span>)' in html
    assert 'role="alert"' not in html  # no errors


def test_email_text_and_assets_of_the_page(stub_project: Project):
    client = client_for(make_app(stub_project))

    email = client.get("/_preview/email.html")
    text = client.get("/_preview/email.txt")
    script = client.get("/_preview/static/page.js")
    style = client.get("/_preview/static/page.css")

    assert email.status_code == 200
    assert email.headers["cache-control"] == "no-store"
    # images resolve from the project root; links open outside the preview frame
    assert '<head><base href="/" target="_blank"><title>' in email.text
    assert "<h1>Welcome to the spring issue</h1>" in email.text
    assert text.text == "Welcome to the spring issue\n\nText."
    assert text.headers["content-type"].startswith("text/plain")
    assert "EventSource" in script.text and script.headers["content-type"].startswith(
        "text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert client.get("/_preview/static/secret.py").status_code == 404


def test_parts_json_carries_every_panel(stub_project: Project):
    client = client_for(make_app(stub_project))

    data = client.get("/_preview/parts.json").json()

    assert data["version"] == 1 and data["ok"] is True
    assert data["title"] == "Preview: Spring safeguarding update"
    assert set(data["parts"]) == {"inbox", "status", "build-info", "text-part", "links-part",
                                  "warnings-part", "links-count", "warnings-count"}
    assert data["parts"]["status"].strip() == ""
    assert "Built issues/demo.yaml at" in data["parts"]["build-info"]


# --- bad input: errors on the page and in the terminal, and the server keeps going -----------


def test_invalid_issue_shows_errors_instead_of_the_email_and_recovers(stub_project: Project):
    terminal = Terminal()
    app = make_app(stub_project, terminal)
    client = client_for(app)
    issue = stub_project.root / "issues" / "demo.yaml"

    issue.write_text(ISSUE + "  bad: [indent\n", encoding="utf-8")
    app.state.preview.rebuild()

    page = client.get("/").text
    assert 'data-state="error"' in page
    assert 'role="alert"' in page
    assert "The issue has errors, so the email is not shown" in page
    assert '<code class="where">issues/demo.yaml:6:6</code>' in page
    assert "this is not valid YAML" in page
    assert "Hint: check the indentation" in page
    # the other tabs keep the last good build, marked as such
    assert "From the last good save" in page and "Welcome to the spring issue" in page
    email = client.get("/_preview/email.html")
    assert email.status_code == 409
    assert "issues/demo.yaml:6:6: error: this is not valid YAML" in email.text
    assert client.get("/_preview/email.txt").status_code == 409
    parts = client.get("/_preview/parts.json").json()
    assert parts["ok"] is False and parts["version"] == 2
    assert "issues/demo.yaml:6:6" in parts["parts"]["status"]
    # the terminal says the same
    assert "issues/demo.yaml has errors" in terminal.errors
    assert "issues/demo.yaml:6:6: error: this is not valid YAML" in terminal.errors

    issue.write_text(ISSUE.replace("spring issue", "mended issue"), encoding="utf-8")
    app.state.preview.rebuild()

    page = client.get("/").text
    assert 'data-state="ok"' in page and 'role="alert"' not in page
    assert "Welcome to the mended issue" in client.get("/_preview/email.html").text


def test_missing_field_error_names_file_line_and_fix(stub_project: Project):
    (stub_project.root / "issues" / "demo.yaml").write_text("heading: Hello\n", encoding="utf-8")
    client = client_for(make_app(stub_project))

    page = client.get("/").text

    assert "issues/demo.yaml:1:1" in page
    assert "missing required field &#39;subject&#39;" in page
    assert "Hint: add a line &#39;subject: ...&#39;" in page
    assert "No inbox line yet" in page
    assert "<title>Preview: issue has errors</title>" in page


def test_error_without_a_location_is_shown(stub_project: Project):
    terminal = Terminal()
    app = make_app(stub_project, terminal)
    (stub_project.root / "issues" / "demo.yaml").unlink()

    app.state.preview.rebuild()

    page = client_for(app).get("/").text
    assert "issues/demo.yaml: file not found" in page
    assert "hint: check the file name" in page
    assert "issues/demo.yaml: file not found" in terminal.errors


def test_a_bug_in_the_build_does_not_stop_the_preview(stub_project: Project):
    terminal = Terminal()
    app = make_app(stub_project, terminal)
    (stub_project.root / "issues" / "demo.yaml").write_text(ISSUE + "explode: true\n",
                                                           encoding="utf-8")

    app.state.preview.rebuild()

    client = client_for(app)
    page = client.get("/")
    assert page.status_code == 200
    assert "The build failed unexpectedly: ZeroDivisionError: division by zero" in page.text
    assert "this is a bug in newsletter, not in your issue" in page.text
    assert "ZeroDivisionError" in terminal.errors
    assert "Traceback" not in page.text


# --- what is served, and what is not ---------------------------------------------------------


def test_serves_images_the_email_references_and_nothing_else(stub_project: Project):
    client = client_for(make_app(stub_project))

    logo = client.get("/images/logo.png")

    assert logo.status_code == 200
    assert logo.content == PNG
    assert logo.headers["content-type"] == "image/png"
    for path in ("/images/unused.png", "/issues/demo.yaml", "/theme.yaml",
                 "/templates/email.html", "/images/missing.png", "/images", "/images/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.text == "Not found"


def raw_get(app, raw_path: bytes) -> int:  # type: ignore[no-untyped-def]
    """Send one GET straight to the ASGI app with ``raw_path`` as a client sent it.

    httpx (and browsers) tidy ``..`` away before sending; an attacker's client does not, and
    uvicorn passes the path on percent-decoded but otherwise as received.
    """
    from urllib.parse import unquote_to_bytes

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path, "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    status: list[int] = []
    requested = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal requested
        if requested:  # the client stays connected until the response is complete
            await anyio.sleep_forever()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def call() -> None:
        await app(scope, receive, send)

    run_async(call)
    return status[0]


TRAVERSALS = [
    b"/../secret.txt",
    b"/images/../../secret.txt",
    b"/images/../issues/demo.yaml",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/%2e%2e/secret.txt",
    b"/images/%2e%2e/%2e%2e/secret.txt",
    b"/..%2fsecret.txt",
    b"/images%2F..%2F..%2Fsecret.txt",
    b"/images%2flogo.png",  # an encoded slash is refused even when it would reach a real file
    b"/%252e%252e/secret.txt",
    b"/..%5csecret.txt",
    b"/images/..\\..\\secret.txt",
    b"//etc/passwd",
    b"/etc/passwd",
    b"/images/logo.png%00.txt",
    b"/./images/logo.png",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS, ids=[p.decode() for p in TRAVERSALS])
def test_path_traversal_is_refused(stub_project: Project, raw_path: bytes):
    app = make_app(stub_project)

    assert raw_get(app, b"/images/logo.png") == 200  # the same request shape does work
    assert raw_get(app, raw_path) == 404


def test_absolute_path_to_a_real_file_is_refused(stub_project: Project, tmp_path: Path):
    app = make_app(stub_project)
    secret = str(tmp_path / "secret.txt").encode()

    assert raw_get(app, b"/" + secret) == 404
    assert raw_get(app, secret) == 404


def test_symlink_leaving_the_project_is_refused(stub_project: Project, tmp_path: Path):
    logo = stub_project.root / "images" / "logo.png"
    logo.unlink()
    logo.symlink_to(tmp_path / "secret.txt")  # referenced by the email, but points outside
    (stub_project.root / "images" / "inner.png").write_bytes(PNG)
    app = make_app(stub_project)
    client = client_for(app)

    assert client.get("/images/logo.png").status_code == 404

    logo.unlink()
    logo.symlink_to(stub_project.root / "images" / "inner.png")  # inside the folder: fine
    app.state.preview.rebuild()  # as the watcher would on that change
    assert client.get("/images/logo.png").content == PNG


def test_file_swapped_for_a_symlink_after_the_build_is_refused(stub_project: Project,
                                                                tmp_path: Path):
    client = client_for(make_app(stub_project))
    assert client.get("/images/logo.png").status_code == 200

    logo = stub_project.root / "images" / "logo.png"
    logo.unlink()
    logo.symlink_to(tmp_path / "secret.txt")

    assert client.get("/images/logo.png").status_code == 404


def test_other_host_names_are_refused(stub_project: Project):
    """A web page elsewhere cannot reach the preview by pointing its own name at 127.0.0.1."""
    client = Client(make_app(stub_project), base_url="http://attacker.example")

    assert client.get("/").status_code == 400
    assert client_for(make_app(stub_project)).get("/", headers={"host": "localhost:8000"}
                                                  ).status_code == 200


def test_listening_beyond_loopback_answers_that_address(stub_project: Project):
    from newsletter.preview import allowed_hosts

    app = make_app(stub_project, hosts_allowed=allowed_hosts("192.0.2.10"))
    assert Client(app, base_url="http://192.0.2.10:8000").get("/").status_code == 200
    assert Client(app, base_url="http://attacker.example").get("/").status_code == 400
    assert allowed_hosts("0.0.0.0") == ["*"]
    assert "[fd00::1]" in allowed_hosts("fd00::1")


def test_referenced_files_keeps_only_plain_relative_paths(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a b.png").write_bytes(PNG)
    (tmp_path / "images" / "c.png").write_bytes(PNG)
    html = ('<img src="images/a%20b.png"><td background=\'images/c.png\'>'
            '<div style="background: url(images/c.png)"><img src="/etc/passwd">'
            '<img src="../x.png"><img src="https://example.org/x.png"><a href="mailto:a@b">'
            '<a href="#top"><img src="images/missing.png"><img src="//cdn.example/x.png">')

    served = referenced_files(html, tmp_path)

    assert served == {"images/a b.png": (tmp_path / "images" / "a b.png").resolve(),
                      "images/c.png": (tmp_path / "images" / "c.png").resolve()}
    assert safe_relative("a/./b") is None and safe_relative("a//b") is None
    assert safe_relative("a/b.png") == "a/b.png"


# --- the real server: event stream, watcher, shutdown -----------------------------------------


@pytest.fixture
def live_stub(stub_project: Project):  # type: ignore[no-untyped-def]
    """The stub project's preview under real uvicorn on a free port, watching files."""
    terminal = Terminal()
    app = create_app(stub_project.root / "issues" / "demo.yaml", stub_project,
                     build=stub_build, echo=terminal)
    server = PreviewServer(app, bind("127.0.0.1", 0)).start()
    server.terminal = terminal  # type: ignore[attr-defined]
    yield server
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5, "shutdown waited for the open event streams"


def wait_for_version(preview, version: int, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    assert preview.wait_until(lambda: preview.snapshot.version >= version, timeout), (
        f"no rebuild to version {version}")


def watching(preview) -> None:  # type: ignore[no-untyped-def]
    """Wait until the watcher follows the files (the limit guards against hanging)."""
    assert preview.watching.wait(10), "the watcher did not start"


def seen_by_watcher(preview) -> None:  # type: ignore[no-untyped-def]
    """Wait until the watcher has been round its loop twice since now: whatever was saved
    before has reached it and been rebuilt for or filtered out."""
    watching(preview)
    start = preview.watch_passes
    assert preview.wait_until(lambda: preview.watch_passes >= start + 2, 10), (
        "the watcher stopped going round")


def test_event_stream_announces_each_rebuild(live_stub: PreviewServer, stub_project: Project):
    issue = stub_project.root / "issues" / "demo.yaml"
    with httpx.stream("GET", live_stub.url + "_preview/events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "retry: 1000"
        assert next(lines) == ""
        assert next(lines) == "event: build"
        assert json.loads(next(lines).removeprefix("data: ")) == {"version": 1, "ok": True}

        issue.write_text(ISSUE.replace("spring issue", "edited issue"), encoding="utf-8")

        for line in lines:
            if line.startswith("data: "):
                assert json.loads(line.removeprefix("data: ")) == {"version": 2, "ok": True}
                break
    email = httpx.get(live_stub.url + "_preview/email.html").text
    assert "Welcome to the edited issue" in email


@pytest.mark.parametrize("changed", ["templates/email.html", "theme.yaml", "images/logo.png",
                                     "templates/partials/footer.html"])
def test_saving_any_file_the_issue_uses_rebuilds(live_stub: PreviewServer,
                                                stub_project: Project, changed: str):
    preview = live_stub.preview
    watching(preview)
    target = stub_project.root / changed
    target.write_bytes(target.read_bytes() + b"\n" if target.exists() else b"<p></p>\n")

    wait_for_version(preview, 2)


def test_unrelated_files_do_not_rebuild(live_stub: PreviewServer, stub_project: Project):
    preview = live_stub.preview
    watching(preview)
    (stub_project.root / "issues" / "other.yaml").write_text("subject: x\n", encoding="utf-8")
    (stub_project.root / "images" / "unused.png").write_bytes(PNG + b"\0")
    (stub_project.root / "notes.txt").write_text("hello\n", encoding="utf-8")
    seen_by_watcher(preview)
    assert preview.snapshot.version == 1

    (stub_project.root / "issues" / "demo.yaml").write_text(ISSUE, encoding="utf-8")
    wait_for_version(preview, 2)


def test_bad_save_then_good_save_through_the_watcher(live_stub: PreviewServer,
                                                     stub_project: Project):
    preview = live_stub.preview
    issue = stub_project.root / "issues" / "demo.yaml"
    watching(preview)

    issue.write_text("subject: [unclosed\n", encoding="utf-8")
    wait_for_version(preview, 2)
    assert httpx.get(live_stub.url).status_code == 200
    assert "this is not valid YAML" in httpx.get(live_stub.url).text
    assert "issues/demo.yaml has errors" in live_stub.terminal.errors  # type: ignore[attr-defined]

    issue.write_text(ISSUE, encoding="utf-8")
    wait_for_version(preview, 3)
    assert preview.snapshot.ok
    assert 'data-state="ok"' in httpx.get(live_stub.url).text


def test_watcher_survives_a_watched_folder_being_removed(live_stub: PreviewServer,
                                                          stub_project: Project):
    preview = live_stub.preview
    watching(preview)
    (stub_project.root / "templates" / "partials").rmdir()
    seen_by_watcher(preview)
    start = preview.snapshot.version

    (stub_project.root / "issues" / "demo.yaml").write_text(ISSUE + "# edited\n",
                                                           encoding="utf-8")

    wait_for_version(preview, start + 1)


def test_real_server_refuses_raw_traversal(live_stub: PreviewServer):
    """Over a real socket: uvicorn hands on ``..`` as sent, and the app still says 404."""
    host, port = live_stub.sock.getsockname()[:2]
    for raw in (b"/../secret.txt", b"/images/../../secret.txt", b"/%2e%2e/secret.txt",
                b"/images/logo.png"):
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        status = reply.split(b"\r\n", 1)[0]
        expected = b"200" if raw == b"/images/logo.png" else b"404"
        assert expected in status, (raw, status)
        assert b"secret outside" not in reply


# --- binding a port ---------------------------------------------------------------------------


def test_busy_port_is_reported_with_a_way_out():
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(NewsletterError) as caught:
            bind("127.0.0.1", port)
    finally:
        taken.close()
    assert caught.value.format() == (
        f"Port {port} on 127.0.0.1 is already in use.\n"
        "    hint: Choose another with --port, or leave --port out to take the next free one "
        "from 8000.")


def test_without_a_port_the_first_free_one_from_8000_is_taken():
    held = []
    try:
        first = bind("127.0.0.1", None)
        held.append(first)
        second = bind("127.0.0.1", None)
        held.append(second)
        assert 8000 <= first.getsockname()[1] < second.getsockname()[1] < 8020
    finally:
        for sock in held:
            sock.close()


def test_every_port_from_8000_in_use_is_reported():
    held = []
    try:
        while True:  # take every free port the preview would try
            try:
                held.append(bind("127.0.0.1", None))
            except NewsletterError as exc:
                caught = exc
                break
    finally:
        for sock in held:
            sock.close()
    assert caught.format() == (
        "Ports 8000 to 8019 on 127.0.0.1 are all in use.\n"
        "    hint: Choose a free one with --port N (or --port 0 for any).")


def test_unusable_host_is_reported():
    with pytest.raises(NewsletterError) as caught:
        bind("192.0.2.1", 0)  # TEST-NET: not an address of this machine
    assert "cannot listen on 192.0.2.1:0" in caught.value.format()
    assert "hint: check --host" in caught.value.format()


# --- with the real build and the sample issue -------------------------------------------------


def test_real_build_of_the_sample_issue(project: Path, sample_issue: Path):
    terminal = Terminal()
    app = create_app(sample_issue, Project.load(project), watch=False, echo=terminal)
    client = client_for(app)

    page = client.get("/")
    email = client.get("/_preview/email.html")

    assert page.status_code == 200 and 'data-state="ok"' in page.text, terminal.lines
    snapshot = app.state.preview.snapshot
    issue = snapshot.built.issue
    assert f"<title>Preview: {issue.subject}</title>".replace("&", "&amp;") in page.text
    assert issue.sender.email in page.text
    assert email.status_code == 200
    for link in snapshot.built.links:  # links go straight to their URLs: not tracked
        assert link.url in page.text
    assert "/c/" not in email.text
    for url_path in snapshot.served:  # every image the email uses is served
        assert client.get("/" + url_path.replace(" ", "%20")).status_code == 200, url_path
    assert client.get("/issues/2026-spring.yaml").status_code == 404
    assert client.get("/newsletter.yaml").status_code == 404


@pytest.mark.parametrize("changed", ["issues/2026-spring.yaml", "theme.yaml",
                                     "templates/email.mjml.j2", "images/logo.png"])
def test_real_build_rebuilds_on_each_file_it_read(project: Path, sample_issue: Path,
                                                  changed: str):
    """The real build's dependencies are what the watcher follows."""
    app = create_app(sample_issue, Project.load(project), echo=Terminal())
    server = PreviewServer(app, bind("127.0.0.1", 0)).start()
    try:
        watching(app.state.preview)
        target = project / changed
        target.write_bytes(target.read_bytes())  # a save without changes still counts

        wait_for_version(app.state.preview, 2)
        assert app.state.preview.snapshot.ok
    finally:
        server.stop()


def test_real_build_errors_are_located(project: Path, sample_issue: Path):
    terminal = Terminal()
    app = create_app(sample_issue, Project.load(project), watch=False, echo=terminal)
    sample_issue.write_text(sample_issue.read_text(encoding="utf-8") + "\nnot_a_field: 1\n",
                            encoding="utf-8")

    app.state.preview.rebuild()

    page = client_for(app).get("/").text
    assert 'role="alert"' in page
    assert "issues/2026-spring.yaml:" in page
    assert "not_a_field" in page
    assert "issues/2026-spring.yaml:" in terminal.errors


def _wait_for_url(process: subprocess.Popen, out: list[str],  # type: ignore[type-arg]
                  readers: list[threading.Thread], timeout: float = 20.0) -> str:
    """The URL the command prints once it serves. A thread (in ``readers``) reads stdout into
    ``out`` until the command closes it."""
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: out.extend(stdout), daemon=True)
    reader.start()
    readers.append(reader)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in list(out):
            if line.startswith("Previewing") and " at http://" in line:
                return line.split(" at ", 1)[1].split()[0]
        time.sleep(0.05)
    raise AssertionError(f"no URL printed; output so far: {out!r}")


def _save_until(path: Path, text: str, shown, what: str) -> None:  # type: ignore[no-untyped-def]
    """Save ``text`` to ``path``, again each second, until ``shown()`` (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        path.write_text(text, encoding="utf-8")
        saved = time.monotonic()
        while time.monotonic() - saved < 1:
            if shown():
                return
            assert time.monotonic() < deadline, what
            time.sleep(0.05)


def test_cli_serves_until_ctrl_c_and_stops_cleanly(project: Path, sample_issue: Path):
    """The real command in a subprocess: prints the URL, answers, stops on Ctrl-C, no traceback."""
    out: list[str] = []
    readers: list[threading.Thread] = []
    with subprocess.Popen(
        [str(Path(sys.executable).parent / "newsletter"), "preview", "issues/2026-spring.yaml",
         "--port", "0", "--no-browser"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:
        try:
            url = _wait_for_url(process, out, readers)
            assert url.startswith("http://127.0.0.1:")
            page = httpx.get(url, timeout=10)
            assert page.status_code == 200 and 'data-state="ok"' in page.text
            # a bad save: errors on the page (and, below, in the terminal); the server goes on.
            # Saved again until the page shows it: the watcher may start after the first save.
            source = sample_issue.read_text(encoding="utf-8")
            bad = source.replace("subject:", "subjekt:", 1)
            _save_until(sample_issue, bad, lambda: 'data-state="error"' in
                        httpx.get(url, timeout=10).text, "the bad save was not noticed")
            _save_until(sample_issue, source, lambda: 'data-state="ok"' in
                        httpx.get(url, timeout=10).text, "the good save was not noticed")
            # an open event stream must not hold up the shutdown
            with httpx.stream("GET", url + "_preview/events", timeout=10) as events:
                next(events.iter_lines())
                process.send_signal(signal.SIGINT)
                process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
            err = process.stderr.read()  # type: ignore[union-attr]
    for reader in readers:
        reader.join(10)      # it has read everything once the command has closed stdout
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "issues/2026-spring.yaml has errors; the preview shows them" in err
    assert "issues/2026-spring.yaml:" in err and "'subjekt'" in err
    assert "Preview stopped." in "".join(out)
    assert any("built issues/2026-spring.yaml in" in line for line in out), out


def test_cli_accepts_a_slug(project: Path, sample_issue: Path, runner, monkeypatch):  # type: ignore[no-untyped-def]
    from newsletter import preview as preview_module
    from newsletter.cli import main

    served = {}
    opened: list[str] = []

    def run(self) -> None:  # instead of serving: say it started, then stop at once
        served["issue"] = self.preview.issue_path
        served["url"] = self.url
        self.on_started()
        self.sock.close()

    monkeypatch.setattr(preview_module.PreviewServer, "run", run)
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(main, ["preview", "2026-spring", "--port", "0"])

    assert result.exit_code == 0, result.output
    assert served["issue"] == sample_issue.resolve()
    assert f"Previewing issues/2026-spring.yaml at {served['url']}  (Ctrl-C to stop)" in (
        result.output)
    assert "Preview stopped." in result.output
    for _ in range(100):  # the browser opens from a thread, so as not to hold up the server
        if opened:
            break
        time.sleep(0.01)
    assert opened == [served["url"]]


def test_cli_reports_a_busy_port(project: Path, sample_issue: Path, runner):  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        result = runner.invoke(main, ["preview", "issues/2026-spring.yaml", "--port", str(port),
                                      "--no-browser"])
    finally:
        taken.close()
    assert result.exit_code == 1
    assert f"Port {port} on 127.0.0.1 is already in use." in result.output
    assert "Traceback" not in result.output


def test_cli_reports_a_missing_issue(project: Path, runner):  # type: ignore[no-untyped-def]
    from newsletter.cli import main

    result = runner.invoke(main, ["preview", "issues/nope.yaml", "--no-browser"])

    assert result.exit_code == 1
    assert result.output == (
        "issues/nope.yaml: no such issue file\n"
        "    hint: give a path such as issues/2026-spring.yaml, or a slug; "
        f"issues in {project / 'issues'}: 2026-spring\n")
