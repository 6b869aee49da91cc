"""Values are what the editor typed: every YAML 1.1 surprise stays text where text is meant,
and dates, numbers and true/false are converted by the field, with a located error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import MINIMAL_ISSUE

from newsletter import model
from newsletter.load import parse_issue
from newsletter.yamlfile import parse_yaml

# Every plain scalar YAML 1.1 (PyYAML) would turn into something other than the text typed.
YAML_11_SURPRISES = [
    # octal and other integers
    "03000410000", "010", "0777", "0o17", "+12", "-0", "1_000", "0b1010", "0x1F", "0xDEADBEEF",
    "2026", "007", "-12",
    # sexagesimal (base 60)
    "14:00", "9:30", "1:20:30", "190:20:30.15", "-1:30",
    # floats
    "1.10", "1.0", "1e3", "6.8523015e+5", "685.230_15e+03", "+12.5", ".5", "-.5",
    ".inf", "-.inf", "+.inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN",
    # booleans, every spelling
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE",
    "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    # timestamps
    "2026-03-17", "2026-3-7", "2026-03-17 10:00:00", "2026-03-17T10:00:00Z",
    "2001-12-14t21:59:43.10-05:00", "2026-02-30",
    # the value tag and a stray merge marker
    "=", "<<",
]


def _parse(text: str) -> tuple[model.Issue | None, list[str]]:
    data, problems = parse_yaml(text, "issue.yaml")
    assert data is not None, problems
    issue, found = parse_issue(data, "issue.yaml", Path("."), model.Theme(), "draft")
    return issue, [p.format() for p in problems + found]


def _with_contact(phone: str) -> str:
    return MINIMAL_ISSUE.replace("footer:", f"""\
  - type: contacts
    contacts:
      - role: Prevent lead
        team: Prevent team
        phone: {phone}
footer:""")


@pytest.mark.parametrize("value", YAML_11_SURPRISES)
def test_text_fields_keep_the_text_as_written(value: str) -> None:
    text = MINIMAL_ISSUE.replace("edition: Spring 2027", f"edition: {value}")
    issue, problems = _parse(text.replace("title: Prevent Partner Newsletter", f"title: {value}"))
    assert issue is not None, problems
    assert (issue.edition, issue.title) == (value, value)


@pytest.mark.parametrize("value", [v for v in YAML_11_SURPRISES if v != "<<"])  # "<<:" merges
def test_list_items_and_keys_keep_the_text(value: str) -> None:
    data, problems = parse_yaml(f"- {value}\n- {{{value}: {value}}}\n", "x.yaml")
    assert problems == []
    assert data == [value, {value: value}]


@pytest.mark.parametrize("phone", ["03000410000", "03000 41 11 11", "+44 3000 411111",
                                   "01622 694000"])
def test_phone_numbers_are_kept_digit_for_digit(phone: str) -> None:
    issue, problems = _parse(_with_contact(phone))
    assert issue is not None, problems
    assert issue.sections[-1].contacts[0].phone == phone  # type: ignore[union-attr]


@pytest.mark.parametrize("time", ["14:00", "9:30", "09:30 to 13:00", "10:00-12:00"])
def test_event_times_are_kept(time: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("footer:", f"""\
  - type: events
    events:
      - title: Learning event
        date: 2027-06-10
        time: {time}
        place: Online
        url: https://www.example.org/event
footer:"""))
    assert issue is not None, problems
    assert issue.sections[-1].events[0].time == time  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "expected"), [
    (word, word.strip("\"'").lower() in ("y", "yes", "true", "on"))
    for word in ("y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True",
                 "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
                 '"yes"', "'false'")])
def test_true_false_fields_accept_every_yaml_11_spelling(value: str, expected: bool) -> None:
    issue, problems = _parse(MINIMAL_ISSUE + f"opens: {value}\n")
    assert issue is not None, problems
    assert issue.opens is expected


@pytest.mark.parametrize("value", ["maybe", "1", "0", "null", "[true]", "2026-03-17"])
def test_true_false_fields_refuse_anything_else(value: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE + f"opens: {value}\n")
    assert issue is None
    shown = "a list" if value.startswith("[") else f"'{value}'"
    assert problems == [f"issue.yaml:19:8: error: 'opens' must be true or false, not {shown}"
                        "\n    hint: write 'opens: true' or 'opens: false'"]


@pytest.mark.parametrize(("value", "expected"), [
    ("2027-03-17", dt.date(2027, 3, 17)), ("2027-3-7", dt.date(2027, 3, 7)),
    ('"2027-03-17"', dt.date(2027, 3, 17)), ("'2027-03-17'", dt.date(2027, 3, 17)),
])
def test_dates_are_converted_by_the_field(value: str, expected: dt.date) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("date: 2027-03-17", f"date: {value}"))
    assert issue is not None, problems
    assert issue.date == expected


@pytest.mark.parametrize("value", ["2027-02-30", "2027-03-17 10:00:00", "2027-03-17T10:00:00Z",
                                   "17/03/2027", "20270317", "2027-13-01", "yes", "14:00"])
def test_dates_that_do_not_parse_are_located_errors(value: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("date: 2027-03-17", f"date: {value}"))
    assert issue is None
    assert problems == [f"issue.yaml:6:7: error: '{value}' is not a valid date\n    hint: write "
                        "dates as YYYY-MM-DD, e.g. 2026-03-17, and check the day exists"]


IMAGE = """\
    image:
      src: images/small-steps.png
      alt: Workshop
      width: {width}
footer:"""


@pytest.mark.parametrize("width", ["0x230", "5_60", "+560", "560.0", "560px", "1e3", "15",
                                   "601", "9" * 5000, "-560", "yes"])
def test_whole_numbers_are_plain_digits(width: str, project: Path) -> None:
    text = MINIMAL_ISSUE.replace("footer:", IMAGE.format(width=width))
    data, problems = parse_yaml(text, "issue.yaml")
    issue, found = parse_issue(data, "issue.yaml", project, model.Theme(), "draft")
    assert issue is None
    assert [p.format() for p in found] == [
        "issue.yaml:18:14: error: image width must be a whole number of pixels, 16-600"
        "\n    hint: e.g. 'width: 560', or remove it to fill the column"]


def test_a_whole_number_is_converted(project: Path) -> None:
    text = MINIMAL_ISSUE.replace("footer:", IMAGE.format(width="560"))
    data, _ = parse_yaml(text, "issue.yaml")
    issue, found = parse_issue(data, "issue.yaml", project, model.Theme(), "draft")
    assert issue is not None, found
    assert issue.sections[0].image.width == 560  # type: ignore[union-attr]


@pytest.mark.parametrize("word", ["null", "Null", "NULL"])
def test_a_bare_null_in_a_text_field_is_refused(word: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("edition: Spring 2027", f"edition: {word}"))
    assert issue is None
    assert problems == [f"issue.yaml:2:10: error: 'edition' is {word}, YAML's word for nothing"
                        f'\n    hint: write it in quotes ("{word}") if you mean the word, or '
                        "leave the value empty"]


@pytest.mark.parametrize("word", ['"null"', "'Null'"])
def test_a_quoted_null_is_the_word(word: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("edition: Spring 2027", f"edition: {word}"))
    assert issue is not None, problems
    assert issue.edition == word.strip("\"'")


@pytest.mark.parametrize("empty", ["", "~"])
def test_an_empty_value_is_nothing(empty: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE.replace("edition: Spring 2027", f"edition: {empty}"))
    assert issue is None
    assert problems == ["issue.yaml:1:1: error: missing required field 'edition' in the issue"
                        "\n    hint: add a line 'edition: ...' to the issue"]


@pytest.mark.parametrize(("tagged", "shown"), [
    ("!!int 5", "!!int"), ("!!float 1.5", "!!float"), ("!!bool yes", "!!bool"),
    ("!!timestamp 2026-03-17", "!!timestamp"), ("!!binary aGVsbG8=", "!!binary"),
    ("!!omap [a: 1]", "!!omap"), ("!!set {a, b}", "!!set"), ("!!python/object:os.system x",
                                                         "!!python/object:os.system"),
    ("!!map x", "!!map"), ("!custom x", "!custom"),
])
def test_explicit_tags_are_refused(tagged: str, shown: str) -> None:
    data, problems = parse_yaml(f"title: {tagged}\n", "issue.yaml")
    assert data is None
    assert [p.format() for p in problems] == [
        f"issue.yaml:1:8: error: the YAML tag '{shown}' is not used in these files\n    hint: "
        "remove the tag (the word starting with '!'): each field already knows whether it is "
        "text, a date, a number or true/false"]


def test_an_explicit_str_tag_is_allowed() -> None:
    data, problems = parse_yaml("title: !!str 5\n", "issue.yaml")
    assert (data, problems) == ({"title": "5"}, [])


@pytest.mark.parametrize("mode", ["off", "Off", "OFF", "individual", "aggregate"])
def test_tracking_mode_off_needs_no_special_case(mode: str) -> None:
    issue, problems = _parse(MINIMAL_ISSUE + f"tracking: {mode}\n")
    assert issue is not None, problems
    assert issue.tracking == mode.lower()


def test_yes_and_on_as_keys_stay_words() -> None:
    issue, problems = _parse(MINIMAL_ISSUE + "on: 1\n")
    assert issue is None
    assert problems[0].startswith("issue.yaml:19:1: error: unknown key 'on' in the issue")


def test_the_built_email_shows_the_phone_and_time_as_typed(project: Path, runner) -> None:
    from newsletter.cli import main

    text = _with_contact("03000410000").replace("footer:", """\
  - type: events
    events:
      - title: Learning event
        date: 2027-06-10
        time: 9:30
        place: Online
        url: https://www.example.org/event
footer:""")
    (project / "issues" / "draft.yaml").write_text(text.replace("edition: Spring 2027",
                                                                "edition: 1.10"))
    result = runner.invoke(main, ["build", "issues/draft.yaml"])
    assert result.exit_code == 0, result.output
    html = (project / "build" / "draft" / "email.html").read_text()
    plain = (project / "build" / "draft" / "email.txt").read_text()
    for part in (html, plain):
        assert "03000410000" in part and "9:30" in part and "1.10" in part
    assert 'href="tel:03000410000"' in html
    assert "402788352" not in html and "570" not in plain


def test_audiences_keep_names_and_organisations_as_typed(tmp_path: Path) -> None:
    from newsletter.audiences import load_audiences

    path = tmp_path / "audiences.yaml"
    path.write_text("lists:\n  yes:\n    name: No\n    members:\n"
                    "      - {email: a@example.org, name: Off, organisation: 2026}\n"
                    "      - {email: b@example.org, name: 1.10, organisation: 0x1F}\n")
    loaded = load_audiences(path)
    audience = loaded.lists["yes"]
    assert audience.name == "No"
    assert [(m.name, m.organisation) for m in audience.members] == \
        [("Off", "2026"), ("1.10", "0x1F")]


def test_audiences_refuse_a_bare_null_name(tmp_path: Path) -> None:
    from newsletter.audiences import load_audiences
    from newsletter.errors import InvalidAudiences

    path = tmp_path / "audiences.yaml"
    path.write_text("lists:\n  staff:\n    members:\n      - {email: a@example.org, name: Null}\n")
    with pytest.raises(InvalidAudiences) as info:
        load_audiences(path)
    assert [p.message for p in info.value.problems] == ["'name' is Null, YAML's word for nothing"]


def test_theme_text_is_kept_and_numbers_are_converted(project: Path) -> None:
    from newsletter.theme import load_theme

    theme_path = project / "theme.yaml"
    theme_path.write_text(theme_path.read_text().replace("width: 160", "width: 0140")
                          .replace("footer_text: Kent", "footer_text: No. 1 in Kent"))
    theme, problems = load_theme(theme_path, project)
    assert problems == []
    assert theme.logo is not None and theme.logo.width == 140
    assert theme.footer_text.startswith("No. 1 in Kent")


def test_settings_keep_text(project: Path) -> None:
    from newsletter.settings import Settings

    path = project / "newsletter.yaml"
    path.write_text("list_id_domain: 2026.example.org\nunsubscribe_mailto: off@example.org\n")
    settings = Settings.load(project, env={})
    assert (settings.list_id_domain, settings.unsubscribe_mailto) == \
        ("2026.example.org", "off@example.org")
