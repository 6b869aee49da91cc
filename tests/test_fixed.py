"""One slug, one issue, forever: duplicate slugs, a sent issue's content, amendments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter import db, fixed, ledger
from newsletter.build import build_issue
from newsletter.cli import main
from newsletter.db import open_db
from newsletter.project import Project

SAMPLE = "issues/2026-spring.yaml"
SUBJECT = "Prevent in Kent and Medway: Spring 2026 partner update"
HINT = ("    hint: for a new issue, give it a slug of its own (e.g. its season and year) and "
        "rename its file to match; only to correct the issue already sent, run `newsletter "
        "amend 2026-spring --reason \"what you corrected\"`, which replaces its web version and "
        "records who changed what and when")


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def sent(project: Path) -> None:
    """Send the sample issue to the schools list (3 recipients) through Maildir."""
    result = run("send", "2026-spring", "--to", "schools", "--yes")
    assert result.exit_code == 0, result.output


def edit(project: Path, old: str, new: str) -> None:
    path = project / SAMPLE
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def maildir_count(project: Path) -> int:
    return len(list((project / "maildir" / "new").iterdir()))


def stored_issue(project: Path) -> sa.Row:
    database = open_db(Project.load(project).db_url())
    try:
        with database.engine.connect() as conn:
            return conn.execute(sa.select(db.issues).where(db.issues.c.slug == "2026-spring")
                                ).one()
    finally:
        database.close()


# --- duplicate slugs ---------------------------------------------------------------------


def test_two_files_with_one_slug_are_refused_naming_both(project: Path) -> None:
    (project / "issues" / "2026-summer.yaml").write_text(
        (project / SAMPLE).read_text(encoding="utf-8"), encoding="utf-8")
    result = run("check", "issues/2026-summer.yaml")
    assert result.exit_code == 1
    assert ("issues/2026-summer.yaml:5:7: error: the slug '2026-spring' is also the slug of "
            "issues/2026-spring.yaml:5:7; one slug names one issue\n"
            "    hint: give the new issue a slug of its own (e.g. its season and year) and "
            "rename its file to match; an issue's slug never changes once it is sent\n"
            ) in result.output
    # The first file is in conflict too, until one of them changes.
    result = run("check", SAMPLE)
    assert result.exit_code == 1
    assert ("issues/2026-spring.yaml:5:7: error: the slug '2026-spring' is also the slug of "
            "issues/2026-summer.yaml:5:7") in result.output


def test_a_slug_taken_from_a_file_name_counts_too(project: Path, sample_yaml: str) -> None:
    (project / "issues" / "2026-autumn.yaml").write_text(
        sample_yaml.replace("slug: 2026-spring\n", ""), encoding="utf-8")
    (project / "issues" / "copy.yaml").write_text(
        sample_yaml.replace("slug: 2026-spring", "slug: 2026-autumn"), encoding="utf-8")
    result = run("check", "issues/copy.yaml")
    assert result.exit_code == 1
    assert ("issues/copy.yaml:5:7: error: the slug '2026-autumn' is also the slug of "
            "issues/2026-autumn.yaml (from its file name)") in result.output


def test_build_and_send_refuse_a_duplicate_slug_too(send_project: Path) -> None:
    (send_project / "issues" / "copy.yaml").write_text(
        (send_project / SAMPLE).read_text(encoding="utf-8"), encoding="utf-8")
    for command in (["build", "issues/copy.yaml"],
                    ["send", "issues/copy.yaml", "--to", "schools", "--yes"]):
        result = run(*command)
        assert result.exit_code == 1
        assert "the slug '2026-spring' is also the slug of issues/2026-spring.yaml:5:7" \
            in result.output
    assert not (send_project / "build").exists()
    assert not (send_project / "newsletter.db").exists()


def test_issues_with_slugs_of_their_own_pass(project: Path, sample_yaml: str) -> None:
    (project / "issues" / "2026-summer.yaml").write_text(
        sample_yaml.replace("slug: 2026-spring", "slug: 2026-summer"), encoding="utf-8")
    assert run("check", "issues/2026-summer.yaml").exit_code == 0
    assert run("check", SAMPLE).exit_code == 0


# --- a sent issue is fixed ---------------------------------------------------------------


def test_a_sent_issue_that_changed_is_refused_saying_what_differs(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, SUBJECT, "Summer 2026 partner update")
    edit(send_project, "heading: Join the Prevent Advisory Group",
         "heading: Join the Advisory Group")
    edit(send_project, "https://www.example.org/prevent/small-steps",
         "https://www.example.org/prevent/small-steps-2026")
    result = run("check", SAMPLE)
    assert result.exit_code == 1
    first = result.output.index("issues/2026-spring.yaml:5:7: error:")
    assert result.output[first:].startswith(
        "issues/2026-spring.yaml:5:7: error: '2026-spring' was sent on ")
    assert ("to 3 recipient(s), and a sent issue is fixed; this differs from what was sent "
            "(check fails):\n"
            f'  - subject: sent as "{SUBJECT}", now "Summer 2026 partner update"\n'
            '  - section "Join the Advisory Group" changed\n'
            '  - section "The Small Steps project" changed\n'
            '  - link https://www.example.org/prevent/small-steps-2026 is new '
            '(in "small-steps")\n'
            '  - link https://www.example.org/prevent/small-steps was removed '
            '(from "small-steps")\n' + HINT) in result.output


def test_build_of_a_changed_sent_issue_writes_nothing(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, SUBJECT, "Summer 2026 partner update")
    result = run("build", SAMPLE)
    assert result.exit_code == 1
    assert "differs from what was sent (not built):" in result.output
    assert not (send_project / "build").exists()


def test_send_of_a_changed_sent_issue_sends_and_replaces_nothing(send_project: Path) -> None:
    sent(send_project)
    before = stored_issue(send_project)
    delivered = maildir_count(send_project)
    edit(send_project, SUBJECT, "Summer 2026 partner update")
    result = run("send", "2026-spring", "--to", "schools", "--to", "councils", "--yes")
    assert result.exit_code == 1
    assert "differs from what was sent (nothing sent):" in result.output
    assert 'subject: sent as "Prevent in Kent' in result.output
    assert maildir_count(send_project) == delivered
    after = stored_issue(send_project)
    assert (after.subject, after.web_html, after.fingerprint) == \
        (before.subject, before.web_html, before.fingerprint)


def test_a_sent_issue_unchanged_checks_builds_and_resumes(send_project: Path) -> None:
    sent(send_project)
    assert run("check", SAMPLE).exit_code == 0
    assert run("build", SAMPLE).exit_code == 0
    result = run("send", "2026-spring", "--to", "schools", "--to", "councils", "--yes")
    assert result.exit_code == 0, result.output
    assert maildir_count(send_project) == 5


def test_a_changed_tracker_address_is_named(send_project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sent(send_project)
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://track.example.org")
    result = run("check", SAMPLE)
    assert result.exit_code == 1
    assert ('  - tracking_url: sent with "http://127.0.0.1:8025", now '
            '"https://track.example.org"\n') in result.output


def test_a_template_change_alone_is_named(send_project: Path) -> None:
    sent(send_project)
    template = send_project / "templates" / "email.txt.j2"
    template.write_text(template.read_text(encoding="utf-8") + "\nP.S. hello\n",
                        encoding="utf-8")
    result = run("check", SAMPLE)
    assert result.exit_code == 1
    assert ("  - the rendered email.txt differ(s) from what was sent: the templates "
            "(templates/) or the program that renders them changed\n") in result.output


def test_the_stored_content_is_kept_from_the_first_send(send_project: Path) -> None:
    sent(send_project)
    row = stored_issue(send_project)
    content = json.loads(row.content)
    assert content["subject"] == SUBJECT
    assert row.fingerprint == fixed.fingerprint(content)
    assert [s["id"] for s in content["sections"]][:2] == ["welcome", "what-is-prevent"]


def test_registering_a_sent_issue_again_replaces_nothing(send_project: Path) -> None:
    # Even below the check: the ledger never overwrites a sent issue's web version or links.
    sent(send_project)
    project = Project.load(send_project)
    before = stored_issue(send_project)
    edit(send_project, SUBJECT, "Something else entirely")
    edit(send_project, "https://www.example.org/prevent/small-steps",
         "https://www.example.org/other")
    changed = build_issue(send_project / SAMPLE, project)
    database = open_db(project.db_url())
    try:
        ledger.register_issue(database, changed)
        with database.engine.connect() as conn:
            urls = set(conn.execute(sa.select(db.links.c.url)
                                    .where(db.links.c.issue == "2026-spring")).scalars())
    finally:
        database.close()
    after = stored_issue(send_project)
    assert (after.subject, after.web_html, after.content) == \
        (before.subject, before.web_html, before.content)
    assert "https://www.example.org/other" not in urls


def test_an_issue_sent_before_contents_were_stored_is_compared_with_what_was_kept(
        send_project: Path) -> None:
    sent(send_project)
    database = open_db(Project.load(send_project).db_url())
    try:
        with database.engine.begin() as conn:    # as a database from before m011 has it
            conn.execute(db.issues.update().values(fingerprint="", content=""))
    finally:
        database.close()
    assert run("check", SAMPLE).exit_code == 0
    edit(send_project, SUBJECT, "Summer 2026 partner update")
    edit(send_project, "Twice a year", "Three times a year")
    result = run("check", SAMPLE)
    assert result.exit_code == 1
    assert (f'  - subject: sent as "{SUBJECT}", now "Summer 2026 partner update"\n'
            "  - the web version differs from the one published for it\n") in result.output
    edit(send_project, "Summer 2026 partner update", SUBJECT)
    edit(send_project, "Three times a year", "Twice a year")
    assert run("send", "2026-spring", "--to", "schools", "--yes").exit_code == 0
    assert stored_issue(send_project).fingerprint     # stored at this send


# --- amending ----------------------------------------------------------------------------


def test_amend_replaces_the_web_version_and_records_the_change(send_project: Path) -> None:
    sent(send_project)
    before = stored_issue(send_project)
    edit(send_project, "phone: 03000 000 000", "phone: 03000 410000")
    result = run("amend", "2026-spring", "--reason", "the duty desk's number was wrong",
                 "--yes")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "'2026-spring' went to 3 recipient(s). Amending replaces its web version and adds its "
        "new links; messages already sent keep what they said. What changes:\n"
        '  - section "Contact the Prevent team" changed\n'
        '  - link tel:03000410000 is new (in "contacts")\n'
        '  - link tel:03000000000 was removed (from "contacts")\n'
        f"Amended 2026-spring: amendment 1, by {fixed.who_am_i()}. The web version now shows "
        "the correction.\n")
    after = stored_issue(send_project)
    assert "03000 410000" in after.web_html and "03000 410000" not in before.web_html
    database = open_db(Project.load(send_project).db_url())
    try:
        with database.engine.connect() as conn:
            [record] = conn.execute(sa.select(db.amendments)).all()
            links = conn.execute(sa.select(db.links.c.url)
                                 .where(db.links.c.issue == "2026-spring")).scalars().all()
    finally:
        database.close()
    assert (record.issue, record.who, record.reason) == \
        ("2026-spring", fixed.who_am_i(), "the duty desk's number was wrong")
    assert record.changes.splitlines() == [
        'section "Contact the Prevent team" changed',
        'link tel:03000410000 is new (in "contacts")',
        'link tel:03000000000 was removed (from "contacts")']
    assert (record.old_web_html, record.old_subject) == (before.web_html, before.subject)
    assert record.old_fingerprint == before.fingerprint != record.new_fingerprint
    assert "tel:03000000000" in links and "tel:03000410000" in links  # old links still work
    # The corrected issue is now what was sent: check passes, the send resumes.
    assert run("check", SAMPLE).exit_code == 0
    assert run("send", "2026-spring", "--to", "councils", "--yes").exit_code == 0


def test_amend_brings_the_archive_entry_up_to_date(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, "preheader: ", "preheader: Corrected. ")
    result = run("amend", "2026-spring", "--reason", "preheader typo", "--yes")
    assert result.exit_code == 0, result.output
    database = open_db(Project.load(send_project).db_url())
    try:
        with database.engine.connect() as conn:
            preheader = conn.execute(sa.select(db.archive.c.preheader)
                                     .where(db.archive.c.issue == "2026-spring")).scalar_one()
    finally:
        database.close()
    assert preheader.startswith("Corrected. ")


def test_amend_of_an_issue_not_sent_is_refused(send_project: Path) -> None:
    run("send", "2026-spring", "--test", "me@example.org")     # a test copy is not a send
    result = run("amend", "2026-spring", "--reason", "x", "--yes")
    assert result.exit_code == 1
    assert result.output == ("'2026-spring' has not been sent: there is nothing to amend\n"
                             "    hint: until it is sent its content can still change: build "
                             "or send it as it is\n")


def test_amend_without_a_database_says_where_it_looked(send_project: Path) -> None:
    result = run("amend", "2026-spring", "--reason", "x", "--yes")
    assert result.exit_code == 1
    assert result.output == (f"'2026-spring' has not been sent: there is no database at "
                             f"{send_project / 'newsletter.db'}\n"
                             "    hint: name the database it was sent from with --db or "
                             "NEWSLETTER_DB\n")


def test_amend_with_nothing_changed_is_refused(send_project: Path) -> None:
    sent(send_project)
    result = run("amend", "2026-spring", "--reason", "x", "--yes")
    assert result.exit_code == 1
    assert result.output == ("'2026-spring' is the same as what was sent: nothing to amend\n"
                             "    hint: edit the issue file first, then run amend\n")


def test_amend_needs_a_reason(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, SUBJECT, "Corrected")
    result = run("amend", "2026-spring", "--reason", "   ", "--yes")
    assert result.exit_code == 1
    assert result.output == ("--reason is empty\n    hint: say what you corrected, e.g. "
                             "--reason \"wrong phone number for the referrals team\"\n")
    assert run("amend", "2026-spring", "--yes").exit_code == 2   # click: missing option


def test_amend_asks_first_and_refuses_without_a_terminal(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, SUBJECT, "Corrected")
    result = run("amend", "2026-spring", "--reason", "subject")
    assert result.exit_code == 1
    assert result.output.endswith("not amending without confirmation\n"
                                  "    hint: add --yes to amend when there is no terminal to "
                                  "ask\n")
    assert stored_issue(send_project).subject == SUBJECT


def test_a_summary_written_by_an_older_version_compares_field_by_field(project: Path) -> None:
    # Another fingerprint for the same content must not read as a change.
    built = build_issue(project / SAMPLE, Project.load(project))
    content = fixed.content_of(built)
    older = json.loads(json.dumps(content))
    older["version"] = 0
    del older["fields"]["greeting"]
    assert fixed.fingerprint(older) != fixed.fingerprint(content)
    assert fixed.differences(older, content) == []


def test_check_with_a_mistyped_database_is_refused_not_skipped(send_project: Path) -> None:
    sent(send_project)
    edit(send_project, SUBJECT, "Summer 2026 partner update")
    result = run("check", SAMPLE, "--db", "newsletter-typo.db")
    assert result.exit_code == 1
    assert result.output.endswith(
        "no database at newsletter-typo.db; this project's ledger is newsletter.db\n"
        "    hint: check the path given with --db or NEWSLETTER_DB\n")
    assert not (send_project / "newsletter-typo.db").exists()
