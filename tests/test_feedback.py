"""The feedback question: wording in the issue, aggregate answers, comments with no identifier.

Answers go through the real tracker in-process (SQLite and PostgreSQL) from the sample issue as
``send`` registers it (the ``published`` fixture: three recipients on list ``schools``).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import PUBLISHED_URL, TrackerClient, messages

from newsletter import db
from newsletter import report as reporting
from newsletter.build import build_issue
from newsletter.cli import main
from newsletter.feedback import COMMENT_LIMIT, comment_from_form
from newsletter.project import Project
from newsletter.tracking.events import parse_age, purge
from newsletter.tracking.server import create_app
from newsletter.tracking.tokens import Signer

PERSON = "Mozilla/5.0 (Windows NT 10.0) Firefox/140.0"
FEEDBACK_BLOCK = 'feedback:\n  question: Was this newsletter useful?\n  yes: "Yes"\n  no: "No"\n'


def _with_feedback(sample_yaml: str, block: str) -> str:
    return sample_yaml.replace(FEEDBACK_BLOCK, block)


# --- the issue ---------------------------------------------------------------------------


def test_the_sample_issue_asks_and_the_email_shows_it(project: Path, sample_issue: Path) -> None:
    built = build_issue(sample_issue, Project.load(project))
    feedback = built.issue.feedback
    assert (feedback.question, feedback.yes, feedback.no) == ("Was this newsletter useful?",
                                                              "Yes", "No")
    assert feedback.thanks == "Thank you for your answer."
    assert '<strong>Was this newsletter useful?</strong> <a href="http://127.0.0.1:8025/f/' \
        '{{feedback:yes}}"' in built.html
    assert "Was this newsletter useful?\n  Yes: http://127.0.0.1:8025/f/{{feedback:yes}}\n" \
        "  No: http://127.0.0.1:8025/f/{{feedback:no}}\n" in built.text


def test_the_wording_is_the_issues(project: Path, sample_issue: Path, sample_yaml: str) -> None:
    sample_issue.write_text(_with_feedback(sample_yaml, (
        "feedback:\n  question: Did this help your team?\n  yes: Yes, it did\n"
        "  no: Not really\n  thanks: Thanks from the Prevent team.\n"
        "  comment: What should the next issue cover?\n")))
    built = build_issue(sample_issue, Project.load(project))
    assert "Did this help your team?" in built.html and ">Not really</a>" in built.html
    assert built.issue.feedback.comment == "What should the next issue cover?"


@pytest.mark.parametrize(("block", "expected"), [
    ("feedback:\n  yes: Yes\n",
     "issues/draft.yaml:{line}:3: error: missing required field 'question' in 'feedback'"),
    ("feedback:\n  question: Useful?\n  yess: Yes\n",
     "issues/draft.yaml:{line2}:3: error: unknown key 'yess' in 'feedback'\n    hint: did you "
     "mean 'yes'?"),
    ("feedback:\n  question: Useful?\n  no: ''\n",
     "issues/draft.yaml:{line2}:7: error: 'no' is empty in 'feedback'"),
    ("feedback:\n  question: |\n    Useful?\n    Really?\n",
     "issues/draft.yaml:{line1}:13: error: 'question' in 'feedback' must be one line"),
    ("feedback: Was it useful?\n",
     "issues/draft.yaml:{line0}:11: error: 'feedback' must be a mapping"),
])
def test_bad_feedback_is_located(check_issue, sample_yaml: str, block: str,  # type: ignore[no-untyped-def]
                                 expected: str) -> None:
    text = _with_feedback(sample_yaml, block)
    line0 = text.splitlines().index(block.splitlines()[0]) + 1
    result = check_issue(text)
    assert result.exit_code == 1
    wanted = expected.format(line=line0 + 1, line0=line0, line1=line0 + 1, line2=line0 + 2)
    assert wanted in result.output, result.output


def test_feedback_needs_tracking(check_issue, sample_yaml: str) -> None:  # type: ignore[no-untyped-def]
    text = sample_yaml.replace("tracking: aggregate", "tracking: off")
    line = text.splitlines().index("feedback:") + 1
    result = check_issue(text)
    assert result.exit_code == 1
    assert (f"issues/draft.yaml:{line}:1: error: feedback needs tracking: this issue has "
            "'tracking: off', so no answer could be counted\n    hint: remove 'feedback:', or "
            "use 'tracking: aggregate'") in result.output


def test_a_template_without_the_question_is_refused(project: Path, runner) -> None:  # type: ignore[no-untyped-def]
    template = project / "templates" / "email.mjml.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text[:text.index("    {%- if feedback %}")]
                        + text[text.index("    <mj-section background-color=\"{{ theme."
                                          "background_colour }}\" padding=\"16px 0\" "
                                          "css-class=\"footer\">"):], encoding="utf-8")
    result = runner.invoke(main, ["build", "issues/2026-spring.yaml"])
    assert result.exit_code == 1
    assert "the issue asks for feedback, but templates/email.mjml.j2 does not show the " \
        "question\n    hint: copy templates/ from the sample project" in result.output


# --- the email ---------------------------------------------------------------------------


@pytest.mark.parametrize("tracking", ["aggregate", "individual"])
def test_an_emails_answers_name_the_list_never_the_recipient(project: Path, sample_issue: Path,  # type: ignore[no-untyped-def]
                                                             sample_yaml: str,
                                                             tracking: str) -> None:
    sample_issue.write_text(sample_yaml.replace("tracking: aggregate", f"tracking: {tracking}"))
    built = build_issue(sample_issue, Project.load(project))
    first, second = messages(project, built, ["ann@school.example", "bob@school.example"])
    signer = Signer({"k": b"s"}, "k")
    answers = {}
    for message in (first, second):
        found = re.findall(r'href="http://127\.0\.0\.1:8025/f/([^"]+)"[^>]*>(Yes|No)</a>',
                           message.html)
        assert len(found) == 2
        for token, word in found:
            data = signer.verify(token)
            assert (data.kind, data.issue, data.list, data.pseudonym, data.outlet) == (
                "f", "2026-spring", "schools", None, None)
            assert data.link == word.lower()
            answers.setdefault(word, set()).add(token)
        assert re.search(r"Yes: http://127\.0\.0\.1:8025/f/\S+\n", message.text)
    # the same two links for everyone on the list: nothing in them tells people apart
    assert all(len(tokens) == 1 for tokens in answers.values())


# --- the tracker -------------------------------------------------------------------------


@pytest.fixture
def app(published):  # type: ignore[no-untyped-def]
    database, _built = published
    application = create_app(database=database)
    yield application
    application.close()


def _answer_links(page: str) -> dict[str, str]:
    found = re.findall(r'<a href="' + re.escape(PUBLISHED_URL) + r'(/f/[^"]+)">(Yes|No)</a>', page)
    return {word.lower(): path for path, word in found}


def _events(database, **where) -> list:  # type: ignore[no-untyped-def]
    query = sa.select(db.events).order_by(db.events.c.id)
    for name, value in where.items():
        query = query.where(db.events.c[name] == value)
    with database.engine.connect() as conn:
        return list(conn.execute(query))


def _email_answer(database, answer: str) -> str:  # type: ignore[no-untyped-def]
    from newsletter.tracking.tokens import signer_for

    return f"/f/{signer_for(database).feedback('2026-spring', answer, list_key='schools')}"


def test_an_answer_is_counted_for_its_list_and_thanked(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    response = TrackerClient(app).get(_email_answer(database, "yes"))
    assert response.status_code == 200
    assert "<title>Thank you for your answer.</title>" in response.text
    assert "Was this newsletter useful? <strong>Yes</strong>" in response.text
    assert f"maxlength={COMMENT_LIMIT}" in response.text and "<form method=post>" in response.text
    assert "href='/v/2026-spring/email'" in response.text
    assert "form-action 'self'" in response.headers["content-security-policy"]
    app.flush()
    [event] = _events(database)
    assert (event.kind, event.link_id, event.list_key, event.pseudonym, event.outlet,
            event.scanner) == ("feedback", "yes", "schools", "", "email", False)


def test_the_web_versions_answers_are_the_outlets(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    client = TrackerClient(app)
    page = client.get("/v/2026-spring/kelsi").text
    links = _answer_links(page)
    assert set(links) == {"yes", "no"}
    assert client.get(links["no"]).status_code == 200
    app.flush()
    [answer] = _events(database, kind="feedback")
    assert (answer.link_id, answer.outlet, answer.list_key) == ("no", "kelsi", "")


def test_answers_that_are_not_ours_get_404_and_nothing_is_counted(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    from newsletter.tracking.tokens import signer_for

    signer = signer_for(database)
    client = TrackerClient(app)
    for path in (f"/f/{signer.feedback('2026-spring', 'maybe', list_key='schools')}",
                 f"/f/{signer.feedback('no-such-issue', 'yes', list_key='schools')}",
                 f"/f/{signer.click('2026-spring', 'yes')}", "/f/garbage"):
        assert client.get(path).status_code == 404, path
    assert client.request("PUT", _email_answer(database, "yes")).status_code == 405
    app.flush()
    assert _events(database) == []


def _post(client: TrackerClient, path: str, body: bytes,  # type: ignore[no-untyped-def]
          kind: str = "application/x-www-form-urlencoded"):
    return client.post(path, content=body, headers={"content-type": kind})


def _comments(database) -> list:  # type: ignore[no-untyped-def]
    with database.engine.connect() as conn:
        return list(conn.execute(sa.select(db.feedback_comments)))


def test_a_comment_is_kept_with_nothing_to_identify_anyone(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    client = TrackerClient(app)
    path = _answer_links(client.get("/v/2026-spring/facebook").text)["yes"]
    response = _post(client, path, b"comment=Very+useful%2C+thank+you%21%0D%0ASecond+line")
    assert response.status_code == 200
    assert "Your comment has been passed on, without your name or address." in response.text
    [row] = _comments(database)
    assert set(row._mapping) == {"id", "issue", "answer", "outlet", "day", "text"}
    assert (row.issue, row.answer, row.outlet, row.text) == (
        "2026-spring", "yes", "facebook", "Very useful, thank you!\nSecond line")
    assert row.day % 86400 == 0


def test_a_long_comment_is_cut_never_refused(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    client = TrackerClient(app)
    words = ("word " * 3000).encode()
    response = _post(client, _email_answer(database, "no"), b"comment=" + words)
    assert response.status_code == 200
    assert f"It was longer than {COMMENT_LIMIT:,} characters: the first {COMMENT_LIMIT:,} " \
        "were kept." in response.text
    # a body far beyond what is read: answered at once, the start kept
    huge = _post(client, _email_answer(database, "no"), b"comment=" + b"x" * (3 << 20))
    assert huge.status_code == 200 and "were kept" in huge.text
    first, second = _comments(database)
    assert len(first.text) <= COMMENT_LIMIT + 1 and first.text.endswith("word…")
    assert second.text == "x" * COMMENT_LIMIT + "…"


def test_an_empty_comment_stores_nothing(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    response = _post(TrackerClient(app), _email_answer(database, "yes"), b"comment=+%0A+")
    assert "Nothing was written, so nothing was sent." in response.text
    assert _comments(database) == []


def test_a_comment_not_sent_by_the_form_is_refused_with_a_page(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    response = _post(TrackerClient(app), _email_answer(database, "yes"), b'{"comment": "hi"}',
                     "application/json")
    assert response.status_code == 415
    assert "Comments are sent with the form on the thank-you page." in response.text
    assert _comments(database) == []


@pytest.mark.parametrize(("body", "expected"), [
    (b"comment=caf%C3%A9+%E2%9C%93", ("café ✓", False)),
    (b"comment=a%00b%1Bc%E2%80%8Bd", ("abcd", False)),          # control and format characters
    (b"other=1&comment=two&comment=three", ("two", False)),
    (b"comment=" + b"%E2%9C%93" * 5000, ("✓" * 3637, True)),    # the form cut inside an escape
    (b"\xff\xfe=\x00", ("", False)),
    (b"a=" + b"&b=" * 30, ("", False)),                         # too many fields
])
def test_comment_forms_are_read_carefully(body: bytes, expected: tuple[str, bool]) -> None:
    text, cut = comment_from_form(body[:32 * 1024], complete=len(body) <= 32 * 1024)
    if expected[1]:
        assert cut and len(text) <= COMMENT_LIMIT + 1 and set(text) <= {"✓", "…"}
    else:
        assert (text, cut) == expected


def test_a_scanners_answers_are_not_counted(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    gateway = TrackerClient(app, client="198.51.100.9", agent="Mimecast Safe Links")
    for answer in ("yes", "no"):
        gateway.get(_email_answer(database, answer))
    TrackerClient(app, client="198.51.100.10").request("HEAD", _email_answer(database, "no"))
    TrackerClient(app, client="203.0.113.50", agent=PERSON).get(_email_answer(database, "yes"))
    app.flush()
    report = reporting.build(database, "2026-spring")
    assert {k: report["feedback"][k] for k in ("yes", "no", "scanners")} == {
        "yes": 1, "no": 0, "scanners": 3}
    with_scanners = reporting.build(database, "2026-spring", include_scanners=True)
    assert (with_scanners["feedback"]["yes"], with_scanners["feedback"]["no"]) == (2, 2)


def test_the_report_shows_answers_and_comments(app, published, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    client = TrackerClient(app)
    _post(client, _email_answer(database, "yes"), b"comment=%3Cscript%3Ealert(1)%3C/script%3E")
    _post(client, _email_answer(database, "no"), b"comment=%3DHYPERLINK(%22x%22)")
    client.get(_email_answer(database, "yes"))
    app.flush()
    report = reporting.build(database, "2026-spring")
    assert report["feedback"] == {
        "question": "Was this newsletter useful?", "yes_text": "Yes", "no_text": "No",
        "yes": 1, "no": 0, "scanners": 0,
        "comments": [{"day": report["feedback"]["comments"][0]["day"], "answer": "yes",
                      "outlet": "email", "text": "<script>alert(1)</script>"},
                     {"day": report["feedback"]["comments"][1]["day"], "answer": "no",
                      "outlet": "email", "text": '=HYPERLINK("x")'}]}
    table = reporting.render(report, "table", "feedback")
    assert "Feedback: Was this newsletter useful? Yes 1 · No 0 · 2 comment(s) (--by feedback)" \
        in table
    assert "<script>alert(1)</script>" in table
    page = reporting.render(report, "html", "link")
    assert "<script>alert(1)</script>" not in page
    assert html.escape("<script>alert(1)</script>") in page
    csv_text = reporting.render(report, "csv", "feedback")
    assert "'=HYPERLINK(\"\"x\"\")" in csv_text
    assert json.loads(reporting.render(report, "json"))["feedback"]["yes"] == 1


def test_the_report_says_when_nothing_was_asked(tracking_db) -> None:  # type: ignore[no-untyped-def]
    report = reporting.build(tracking_db, "spring")
    assert report["feedback"] is None
    assert "This issue did not ask for feedback." in reporting.render(report, "table", "feedback")


def test_purge_takes_old_comments_with_old_events(app, published) -> None:  # type: ignore[no-untyped-def]
    database, _ = published
    now = db.now()
    with database.engine.begin() as conn:
        for days in (200, 10):
            conn.execute(db.feedback_comments.insert().values(
                issue="2026-spring", answer="yes", outlet="email", text=f"{days} days ago",
                day=float(int((now - days * 86400) // 86400) * 86400)))
    assert purge(database, parse_age("180d")) == (0, 1)
    assert [row.text for row in _comments(database)] == ["10 days ago"]
