"""audiences.yaml: loading, every problem located at file:line:column, and the send plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.audiences import load_audiences, plan_send
from newsletter.cli import main
from newsletter.errors import InvalidAudiences, NewsletterError


def write(tmp_path: Path, yaml_text: str, csv_text: str | None = None) -> Path:
    path = tmp_path / "audiences.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    if csv_text is not None:
        (tmp_path / "members.csv").write_text(csv_text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidAudiences) as info:
        load_audiences(path)
    return [p.format().replace(str(path.parent) + "/", "") for p in info.value.problems]


def test_inline_and_csv_members_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, """\
lists:
  schools:
    name: Schools
    members:
      - {email: Ann@School.Example, name: Ann, organisation: Hill}
      - bob@school.example
  councils:
    members_file: members.csv
""", "email,name,organisation\ncat@council.example,Cat,County\n\n")
    loaded = load_audiences(path)
    assert [m.address for m in loaded.lists["schools"].members] == \
        ["ann@school.example", "bob@school.example"]
    assert loaded.lists["councils"].name == "councils"
    cat = loaded.lists["councils"].members[0]
    assert (cat.address, cat.name, cat.organisation) == ("cat@council.example", "Cat", "County")


def test_every_problem_is_reported_with_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, """\
lists:
  schools:
    name: Schools
    colour: blue
    members:
      - {email: not-an-address, name: Ann}
      - {email: bob@school.example, name: "Bob\\r\\nBcc: x@evil.example"}
      - {email: cat@school.example}
      - {email: CAT@school.example}
  bad key!:
    members: []
  councils:
    members_file: members.csv
  missing:
    members_file: nowhere.csv
""", "email,name,organisation\n"
         "dan@council.example,Dan,County\n"
         "broken@,Eve,County\n"
         "dan@council.example,Dan again,County\n")
    found = problems(path)
    text = "\n".join(found)
    assert "audiences.yaml:4:5: error: unknown key 'colour' in list 'schools'" in text
    assert "audiences.yaml:6:17: error: 'not-an-address' is not a valid email address" in text
    assert "audiences.yaml:7:43: error: name contains control characters ('\\n', '\\r')" in text
    assert "audiences.yaml:9:17: error: cat@school.example is in list 'schools' twice" in text
    assert "hint: first at audiences.yaml:8; remove one" in text
    assert "audiences.yaml:10:3: error: list key 'bad key!' is not a simple name" in text
    assert "members.csv:3:1: error: 'broken@' is not a valid email address" in text
    assert "members.csv:4:1: error: dan@council.example is in list 'councils' twice" in text
    assert ("audiences.yaml:15:19: error: members file 'nowhere.csv' of list 'missing' "
            "does not exist") in text


def test_csv_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members_file: members.csv\n",
                 "name,organisation\nAnn,Hill\n")
    assert "members.csv:1:1: error: the members file has no email column (found: 'name', " \
        "'organisation')" in "\n".join(problems(path))
    (tmp_path / "members.csv").write_bytes(b"email,name\nann@x.example,Ren\xe9\n")
    assert "members.csv:2:1: error: the members file is not UTF-8 text" in \
        "\n".join(problems(path))
    (tmp_path / "members.csv").write_text('email,name\nann@x.example,"Ann\x07"\n')
    assert "members.csv:2:2: error: name contains control characters ('\\x07')" in \
        "\n".join(problems(path))


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members: [one, two\n")
    (message,) = problems(path)
    assert message.startswith("audiences.yaml:4:1: error: YAML syntax error")


def test_wrong_shape(tmp_path: Path) -> None:
    path = write(tmp_path, "- just a list\n")
    assert problems(path) == ["audiences.yaml:1:1: error: the file must start with 'lists:'\n"
                              "    hint: see docs/sending.md for the shape"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NewsletterError, match="no audiences file"):
        load_audiences(tmp_path / "audiences.yaml")


def test_plan_deduplicates_remembers_lists_and_drops_suppressed(tmp_path: Path) -> None:
    path = write(tmp_path, """\
lists:
  a: {members: [one@x.example, Two@X.example, gone@x.example]}
  b: {members: [two@x.example, three@x.example]}
""")
    loaded = load_audiences(path)
    plan = plan_send(loaded, ["b", "a", "b"], {"gone@x.example": "unsubscribed"})
    assert plan.list_keys == ("b", "a")
    assert {r.address: r.lists for r in plan.recipients} == {
        "two@x.example": ("b", "a"), "three@x.example": ("b",), "one@x.example": ("a",)}
    assert plan.duplicates == 1
    assert plan.suppressed == ["gone@x.example"]
    assert plan.list_sizes == {"b": 2, "a": 3}


def test_unknown_list_names_the_lists(tmp_path: Path) -> None:
    loaded = load_audiences(write(tmp_path, "lists:\n  a: {members: [one@x.example]}\n"))
    with pytest.raises(NewsletterError) as info:
        plan_send(loaded, ["nope"])
    assert info.value.format() == ("there is no list called 'nope' in audiences.yaml\n"
                                   "    hint: the lists are: a (see `newsletter audiences`)")


def test_cli_lists_and_checks(send_project: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["audiences"])
    assert result.exit_code == 0, result.output
    assert "schools         3  Schools" in result.output
    assert "councils        3  Councils" in result.output
    assert "2 lists, 5 different addresses" in result.output
    result = runner.invoke(main, ["audiences", "check"])
    assert result.exit_code == 0
    assert "audiences.yaml: OK (2 lists, 6 members, 0 warning(s))" in result.output


def test_cli_check_reports_errors_and_exits_1(send_project: Path) -> None:
    with (send_project / "audiences" / "councils.csv").open("a") as handle:
        handle.write("nobody-at-all,No One,Nowhere\n")
    result = CliRunner().invoke(main, ["audiences", "check"])
    assert result.exit_code == 1
    assert ("audiences/councils.csv:5:1: error: 'nobody-at-all' is not a valid email "
            "address") in result.output
    assert "1 error(s); fix them" in result.output
    assert "Traceback" not in result.output


def test_sample_audiences_are_valid() -> None:
    repo = Path(__file__).resolve().parent.parent
    loaded = load_audiences(repo / "audiences.yaml")
    assert "district-councils" in loaded.lists
    assert all(a.members for a in loaded.lists.values())


@pytest.mark.parametrize("address", [
    "a@b.example", "A.B@Ex.ample", "a..b@x.example", ".a@x.example", "a.@x.example", "a@x",
    "a@localhost", "a@x.invalid", "a@x.test", "a@-x.example", "a@x_y.example", "a@1.2.3.4",
    "a@[1.2.3.4]", '"q u"@x.example', "a@xn--bcher-kva.example", "a@bücher.example",
    "ü@x.example", "a" * 65 + "@x.example", "a@" + "b" * 64 + ".example",
    "a@b." + "c" * 250, "a b@x.example", "a@b..example", "a+tag@x.example", "{x}@x.example",
    "a@x.123", "a@b@c.example", "@x.example", "a@", "a@x.local", "o'neil@x.example",
])
def test_the_fast_path_agrees_with_email_validator(address: str) -> None:
    from newsletter.members import _validate, normalise_address

    fast, why_fast = normalise_address(address)
    slow, why_slow = _validate(address)
    assert fast == slow
    assert bool(why_fast) == bool(why_slow)


def test_duplicate_list_key_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members: []\n  a:\n    members: []\n")
    assert any(message.startswith("audiences.yaml:4:3: error: key 'a' appears twice")
               for message in problems(path))


def test_empty_members_file(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members_file: members.csv\n", "")
    assert "members.csv:1:1: error: the members file is empty" in problems(path)[0]


def test_members_file_that_is_not_a_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members_file: members.csv\n",
                 "email,name,organisation\n" + "x" * 200_000 + "\n")
    assert problems(path) == ["members.csv:2:1: error: cannot read the CSV: field larger "
                              "than field limit (131072)\n    hint: save it from your "
                              'spreadsheet program as "CSV UTF-8 (Comma delimited)" (Excel: '
                              "File > Save As)"]


def test_list_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a: everyone\n")
    assert problems(path) == [
        "audiences.yaml:2:3: error: list 'a' must be a mapping with name and members"]


def test_member_that_is_neither_address_nor_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "lists:\n  a:\n    members:\n      - [ann@x.example]\n")
    assert problems(path) == [
        "audiences.yaml:4:9: error: a member must be an address or a mapping with 'email'"]
