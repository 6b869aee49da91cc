"""`newsletter check`: every user-facing problem, with its location and a hint."""

from __future__ import annotations

import pytest
from helpers import MINIMAL_ISSUE as MINIMAL


def test_sample_issue_is_valid(check_issue, sample_yaml: str) -> None:
    result = check_issue(sample_yaml, "2026-spring.yaml")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_minimal_issue_is_valid(check_issue) -> None:
    result = check_issue(MINIMAL)
    assert result.exit_code == 0, result.output


def test_unknown_key_suggests_the_close_one(check_issue) -> None:
    result = check_issue(MINIMAL.replace("subject:", "subjct:"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:4:1: error: unknown key 'subjct' in the issue" in result.output
    assert "did you mean 'subject'?" in result.output


def test_missing_required_field(check_issue) -> None:
    result = check_issue(MINIMAL.replace("title: Prevent Partner Newsletter\n", ""))
    assert result.exit_code == 1
    assert "issues/draft.yaml:1:1: error: missing required field 'title' in the issue" \
        in result.output
    assert "add a line 'title: ...'" in result.output


def test_wrong_type(check_issue) -> None:
    result = check_issue(MINIMAL.replace("subject: Spring update", "subject: [a, b]"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:4:10: error: 'subject' must be text, not a list" in result.output


def test_all_problems_are_reported_at_once(check_issue) -> None:
    text = (MINIMAL.replace("subject:", "subjct:").replace("date: 2027-03-17", "date: 17/03/2027")
            .replace("https://www.example.org/privacy", "www.example.org/privacy"))
    result = check_issue(text)
    assert result.exit_code == 1
    assert "unknown key 'subjct'" in result.output
    assert "'17/03/2027' is not a valid date" in result.output
    assert "has no scheme" in result.output
    assert "4 error(s)" in result.output


def test_bad_date_format(check_issue) -> None:
    result = check_issue(MINIMAL.replace("date: 2027-03-17", "date: 17/03/2027"))
    assert "issues/draft.yaml:6:7: error: '17/03/2027' is not a valid date" in result.output
    assert "YYYY-MM-DD" in result.output


def test_impossible_date(check_issue) -> None:
    result = check_issue(MINIMAL.replace("date: 2027-03-17", "date: 2027-02-30"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:6:7: error: '2027-02-30' is not a valid date" in result.output


def test_image_without_alt_text(check_issue, project) -> None:
    text = MINIMAL.replace("    heading: Welcome\n",
                           "    heading: Welcome\n    image:\n      src: images/logo.png\n")
    result = check_issue(text)
    assert result.exit_code == 1
    assert "issues/draft.yaml:14:7: error: the image of section 1 (article) has no alt text" \
        in result.output
    assert "describing the image" in result.output


def test_image_file_missing(check_issue) -> None:
    text = MINIMAL.replace("    heading: Welcome\n", "    heading: Welcome\n    image:\n"
                           "      src: images/nope.png\n      alt: A photo\n")
    result = check_issue(text)
    assert "issues/draft.yaml:14:12: error: image file 'images/nope.png' not found" \
        in result.output


def test_image_outside_project(check_issue) -> None:
    text = MINIMAL.replace("    heading: Welcome\n", "    heading: Welcome\n    image:\n"
                           "      src: ../../etc/passwd\n      alt: A photo\n")
    result = check_issue(text)
    assert "image '../../etc/passwd' is outside the project folder" in result.output


def test_markdown_link_that_is_not_http(check_issue) -> None:
    result = check_issue(MINIMAL.replace("https://www.example.org/guidance",
                                         "javascript:alert(1)"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:14:7: error: link 'javascript:alert(1)' is not an " \
        "http/https/mailto/tel link" in result.output


def test_button_link_that_is_not_http(check_issue) -> None:
    text = MINIMAL.replace("footer:", "    button:\n      text: Book your place\n"
                           "      url: ftp://files.example.org/x\nfooter:")
    result = check_issue(text)
    assert "issues/draft.yaml:17:12: error: link 'ftp://files.example.org/x' is not an " \
        "http/https/mailto link" in result.output


def test_unknown_section_type(check_issue) -> None:
    result = check_issue(MINIMAL.replace("type: article", "type: artcle"))
    assert "issues/draft.yaml:11:11: error: section 1 has unknown type 'artcle'" in result.output
    assert "did you mean 'article'?" in result.output


def test_subject_with_line_break(check_issue) -> None:
    result = check_issue(MINIMAL.replace("subject: Spring update",
                                         'subject: "Spring\\nBcc: all@example.org"'))
    assert result.exit_code == 1
    assert "'subject' contains a line break or control character" in result.output


def test_duplicate_key(check_issue) -> None:
    result = check_issue(MINIMAL + "title: Again\n")
    assert "issues/draft.yaml:19:1: error: key 'title' appears twice" in result.output


def test_bad_tracking_mode(check_issue) -> None:
    result = check_issue(MINIMAL + "tracking: everyone\n")
    assert "tracking 'everyone' is not a tracking mode" in result.output
    assert "use aggregate (the default), individual or off" in result.output


def test_contact_without_email_or_phone(check_issue) -> None:
    text = MINIMAL.replace("footer:", "  - type: contacts\n    contacts:\n"
                           "      - role: Prevent lead\n        team: Prevent Team\nfooter:")
    result = check_issue(text)
    assert "issues/draft.yaml:17:9: error: item 1 of 'contacts' in section 2 (contacts) has " \
        "neither email nor phone" in result.output


def test_yaml_syntax_error(check_issue) -> None:
    result = check_issue(MINIMAL.replace("title: Prevent Partner Newsletter",
                                         "title: [Prevent Partner Newsletter"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:4:" in result.output
    assert "YAML syntax error" in result.output
    assert "Traceback" not in result.output


def test_tab_indentation(check_issue) -> None:
    result = check_issue(MINIMAL.replace("  name: Kent", "\tname: Kent"))
    assert result.exit_code == 1
    assert "YAML syntax error" in result.output
    assert "spaces, not tabs" in result.output


def test_wrong_encoding(check_issue) -> None:
    result = check_issue(MINIMAL.replace("Welcome", "Caf\u00e9").encode("latin-1"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:12:17: error: the file is not UTF-8 text" in result.output
    assert "save the file as UTF-8" in result.output


def test_empty_file(check_issue) -> None:
    result = check_issue("")
    assert result.exit_code == 1
    assert "issues/draft.yaml:1:1: error: the file is empty" in result.output
    assert "newsletter new" in result.output


def test_not_a_mapping(check_issue) -> None:
    result = check_issue("- just\n- a list\n")
    assert result.exit_code == 1
    assert "the issue file must be a mapping of 'key: value' lines, not a list" in result.output


def test_missing_file(project, runner) -> None:
    from newsletter.cli import main

    result = runner.invoke(main, ["check", "issues/nope.yaml"])
    assert result.exit_code == 1
    assert "issues/nope.yaml:1:1: error: file not found" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_directory(project, runner) -> None:
    from newsletter.cli import main

    result = runner.invoke(main, ["check", "issues"])
    assert result.exit_code == 1
    assert "this is a folder, not a YAML file" in result.output


def test_issue_by_slug(project, runner) -> None:
    from newsletter.cli import main

    result = runner.invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02", b"a: b: c", b"{{{{", b"---\n---\n",
                                     b"key: !!python/object:os.system ls", b"? [a]\n: b\n",
                                     b"sections: 5\n", b"sections:\n  - 5\n  - type: events\n"])
def test_garbage_never_gives_a_traceback(check_issue, garbage: bytes) -> None:
    result = check_issue(garbage)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "issues/draft.yaml:" in result.output


def test_warning_long_subject(check_issue) -> None:
    result = check_issue(MINIMAL.replace("subject: Spring update", "subject: " + "word " * 20))
    assert result.exit_code == 0
    assert "issues/draft.yaml:4:10: warning: subject is 99 characters" in result.output


def test_warning_missing_preheader(check_issue) -> None:
    result = check_issue(MINIMAL.replace("preheader: What is new this season.\n", ""))
    assert result.exit_code == 0
    assert "warning: no preheader" in result.output


def test_warning_vague_link_text(check_issue) -> None:
    result = check_issue(MINIMAL.replace("[Prevent duty guidance]", "[click here]"))
    assert result.exit_code == 0
    assert "issues/draft.yaml:14:7: warning: link text 'click here' does not say where" \
        in result.output


def test_warning_large_email(check_issue) -> None:
    big = "\n".join(f"      Paragraph {i} " + "lorem ipsum dolor sit amet " * 20 + "\n"
                    for i in range(200))
    result = check_issue(MINIMAL.replace("footer:", "  - type: article\n    heading: Long\n"
                                         "    body: |\n" + big + "footer:"))
    assert result.exit_code == 0, result.output
    assert "Gmail clips messages over about 100 KB" in result.output


def test_theme_with_poor_contrast(check_issue, project, sample_yaml) -> None:
    theme = project / "theme.yaml"
    theme.write_text(theme.read_text().replace('text_colour: "#1f2328"',
                                               'text_colour: "#bbbbbb"'))
    result = check_issue(sample_yaml, "2026-spring.yaml")
    assert result.exit_code == 1
    assert "theme.yaml:2:1: error: text_colour on white content area has contrast 1.9:1" \
        in result.output


def test_theme_bad_colour(check_issue, project, sample_yaml) -> None:
    theme = project / "theme.yaml"
    theme.write_text(theme.read_text().replace('"#1d4f91"', "blue", 1))
    result = check_issue(sample_yaml, "2026-spring.yaml")
    assert "theme.yaml:2:15: error: brand_colour 'blue' is not a colour" in result.output


def test_broken_settings_file(project, runner) -> None:
    from newsletter.cli import main

    (project / "newsletter.yaml").write_text("tracking_url: ftp://x.example.org\ntheem: a\n")
    result = runner.invoke(main, ["check", "2026-spring"])
    assert result.exit_code == 1
    assert "newsletter.yaml:1:15: error: link 'ftp://x.example.org' is not an http/https link" \
        in result.output
    assert "newsletter.yaml:2:1: error: unknown key 'theem' in the settings" in result.output
    assert "did you mean 'theme'?" in result.output


def test_key_message_that_is_not_text(check_issue) -> None:
    result = check_issue(MINIMAL.replace("footer:", "  - type: key_messages\n    messages:\n"
                                         "      - {a: b}\nfooter:"))
    assert result.exit_code == 1
    assert "issues/draft.yaml:17:9: error: key message 1 must be a line of text, not a mapping" \
        in result.output
