"""Members files as people export them: separators, encodings, header spellings, and rows
whose field count does not match the header."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.audiences import load_audiences
from newsletter.errors import InvalidAudiences

RESAVE = ('save it from your spreadsheet program as "CSV UTF-8 (Comma delimited)" (Excel: '
          "File > Save As)")
FIELDS_HINT = ('    hint: put a field that contains the separator in double quotes ("Smith, '
               f'Jane"), or {RESAVE}, which does that for you')


def _project(tmp_path: Path, content: bytes) -> Path:
    (tmp_path / "members.csv").write_bytes(content)
    path = tmp_path / "audiences.yaml"
    path.write_text("lists:\n  partners:\n    members_file: members.csv\n")
    return path


def _members(tmp_path: Path, content: bytes) -> list[tuple[str, str, str]]:
    loaded = load_audiences(_project(tmp_path, content))
    return [(m.address, m.name, m.organisation) for m in loaded.lists["partners"].members]


def _problems(tmp_path: Path, content: bytes) -> list[str]:
    path = _project(tmp_path, content)
    with pytest.raises(InvalidAudiences) as info:
        load_audiences(path)
    return [p.format().replace(str(tmp_path) + "/", "") for p in info.value.problems]


EXPECTED = [("jane@kent.example.org", "Jane Smith", "Kent County Council"),
            ("sam@medway.example.org", "Sam Lee", "Medway Council")]
ROWS = [("jane@kent.example.org", "Jane Smith", "Kent County Council"),
        ("sam@medway.example.org", "Sam Lee", "Medway Council")]


def _table(separator: str, header: str = "email,name,organisation") -> str:
    lines = [header.replace(",", separator)] + [separator.join(row) for row in ROWS]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(("name", "content"), [
    ("CSV UTF-8 from Excel (BOM, CRLF)", b"\xef\xbb\xbf" + _table(",").encode()),
    ("plain UTF-8, LF", _table(",").replace("\r\n", "\n").encode()),
    ("old Mac line endings (CR)", _table(",").replace("\r\n", "\r").encode()),
    ("semicolons (Excel in much of Europe)", _table(";").encode()),
    ("Excel's sep=; line", ("sep=;\r\n" + _table(";")).encode()),
    ("Excel's sep=, line, quoted", ('"sep=,"\r\n' + _table(",")).encode()),
    ("tabs", _table("\t").encode()),
    ("Excel 'Unicode text': UTF-16 LE with BOM, tabs", _table("\t").encode("utf-16")),
    ("UTF-16 BE with BOM", b"\xfe\xff" + _table(",").encode("utf-16-be")),
    ("UTF-8 BOM and semicolons", b"\xef\xbb\xbf" + _table(";").encode()),
    ("quoted fields", b'"email","name","organisation"\n"jane@kent.example.org","Jane Smith",'
                      b'"Kent County Council"\n"sam@medway.example.org","Sam Lee",'
                      b'"Medway Council"\n'),
    ("non-breaking spaces around values (Word paste)",
     "email,name,organisation\n\u00a0jane@kent.example.org\u00a0,Jane Smith,Kent County "
     "Council\nsam@medway.example.org,Sam Lee\u00a0,Medway Council\n".encode()),
])
def test_exports_that_are_read(tmp_path: Path, name: str, content: bytes) -> None:
    assert _members(tmp_path, content) == EXPECTED


@pytest.mark.parametrize("header", [
    "email,name,organisation", "Email,Name,Organisation", "E-mail,Full name,Organization",
    "E-mail address,Name,Company", "Email Address,Full Name,Company Name",
    "Mail,Contact name,Organisation name", "EMAIL ADDRESS,NAME,ORGANIZATION",
    "e_mail,display name,org", " Email , Name , Company ",
])
def test_header_spellings(tmp_path: Path, header: str) -> None:
    assert _members(tmp_path, _table(",", header).encode()) == EXPECTED


@pytest.mark.parametrize("header", ["First name,Last name", "Given name,Surname",
                                    "First Name,Last Name"])
def test_first_and_last_names_are_joined(tmp_path: Path, header: str) -> None:
    content = f"Email Address,{header},Company\njane@kent.example.org,Jane,Smith,Kent\n" \
              "sam@medway.example.org,Sam,,Medway\n"
    assert _members(tmp_path, content.encode()) == [
        ("jane@kent.example.org", "Jane Smith", "Kent"), ("sam@medway.example.org", "Sam",
                                                          "Medway")]


def test_an_unquoted_comma_is_an_error_naming_the_line(tmp_path: Path) -> None:
    content = b"email,name,organisation\njane@kent.example.org,Smith, Jane,Kent County Council\n"
    assert _problems(tmp_path, content) == [
        "members.csv:2:1: error: this row has 4 fields but the header has 3\n" + FIELDS_HINT]


def test_a_row_with_fewer_fields_is_an_error(tmp_path: Path) -> None:
    content = b"email,name,organisation\njane@kent.example.org,Jane\nsam@x.example,Sam,Medway\n"
    assert _problems(tmp_path, content) == [
        "members.csv:2:1: error: this row has 2 fields but the header has 3\n" + FIELDS_HINT]


def test_the_line_counts_the_sep_line(tmp_path: Path) -> None:
    content = b"sep=;\nemail;name\njane@kent.example.org;Jane;Kent\n"
    assert _problems(tmp_path, content) == [
        "members.csv:3:1: error: this row has 3 fields but the header has 2\n" + FIELDS_HINT]


@pytest.mark.parametrize(("content", "expected"), [
    ("email,name\njane@kent.example.org,Ren\xe9\n".encode("cp1252"),
     "members.csv:2:1: error: the members file is not UTF-8 text\n    hint: " + RESAVE),
    ("email,name\njane@kent.example.org,Ren\xe9\n".encode("utf-16-le"),
     "members.csv:1:1: error: the members file looks like UTF-16 text without a byte-order "
     "mark\n    hint: " + RESAVE),
    (b"sep=|\nemail|name\n",
     "members.csv:1:1: error: the first line 'sep=|' names an unknown separator\n    hint: use "
     "sep=, or sep=; or remove the line; or " + RESAVE),
    (b"sep=;\n\n", "members.csv:2:1: error: the members file has no header line\n    hint: its "
                   "first line must name the columns, e.g. email,name,organisation"),
    (b"Email|Name\njane@kent.example.org|Jane\n",
     "members.csv:1:1: error: the members file has no email column (found: 'Email|Name')\n"
     "    hint: its first line must name the columns, e.g. email,name,organisation; a file "
     "separated by something other than commas, semicolons or tabs cannot be read: " + RESAVE),
    (b"Email,E-mail address,Name\na@x.example,a@x.example,A\n",
     "members.csv:1:2: error: columns 'Email' and 'E-mail address' both hold the email\n"
     "    hint: delete one of them, or rename it so it is not read"),
    ("email,name\njane@kent.example.org\u200b,Jane\n".encode(),
     "members.csv:2:1: error: 'jane@kent.example.org\\u200b' is not a valid email address: "
     "The email address contains unsafe characters: ZERO WIDTH SPACE."),
])
def test_files_that_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    assert _problems(tmp_path, content) == [expected]


def test_unused_columns_are_warnings(tmp_path: Path) -> None:
    loaded = load_audiences(_project(tmp_path, b"Email,Phone\na@x.example,01622\n"))
    assert [p.format().replace(str(tmp_path) + "/", "") for p in loaded.warnings] == [
        "members.csv:1:2: warning: column 'Phone' is not used\n    hint: the columns used are "
        "email, name (or first and last name) and organisation"]


def test_a_header_only_file_is_a_warning(tmp_path: Path) -> None:
    loaded = load_audiences(_project(tmp_path, b"email,name,organisation\n"))
    assert [p.format().replace(str(tmp_path) + "/", "") for p in loaded.warnings] == [
        "audiences.yaml:2:3: warning: list 'partners' has no members\n    hint: add members "
        "under 'members:' or rows to its 'members_file:'; `newsletter send` refuses to send to "
        "nobody"]


NOBODY_HINT = ("    hint: add members in audiences.yaml or its members files, and check them with "
               "`newsletter audiences check`; nothing was sent\n")


def test_audiences_check_warns_about_a_list_with_no_members(send_project: Path, runner) -> None:
    from newsletter.cli import main

    (send_project / "audiences" / "councils.csv").write_text("email,name,organisation\n")
    result = runner.invoke(main, ["audiences", "check"])
    assert result.exit_code == 0
    assert result.output == (
        "audiences.yaml:8:3: warning: list 'councils' has no members\n    hint: add members "
        "under 'members:' or rows to its 'members_file:'; `newsletter send` refuses to send to "
        "nobody\naudiences.yaml: OK (2 lists, 3 members, 1 warning(s))\n")


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_send_refuses_a_plan_of_nobody(send_project: Path, runner, extra: list[str]) -> None:
    from newsletter.cli import main

    (send_project / "audiences" / "councils.csv").write_text("Email Address;Name\r\n")
    result = runner.invoke(main, ["send", "2026-spring", "--to", "councils", "--yes", *extra])
    assert result.exit_code == 1
    assert result.output == "nothing to send: list 'councils' has no members\n" + NOBODY_HINT
    assert not (send_project / "newsletter.db").exists()
    assert not (send_project / "maildir").exists()


def test_send_refuses_when_everyone_is_suppressed(send_project: Path, runner) -> None:
    import time

    from newsletter import db
    from newsletter.cli import main

    database = db.open_db("sqlite:///" + str(send_project / "newsletter.db"))
    with database.engine.begin() as conn:
        conn.execute(db.suppressions.insert(), [
            {"address": a, "reason": "unsubscribed", "created_at": time.time()}
            for a in ("shared@council.example", "cat@council.example", "dan@district.example")])
    database.close()
    result = runner.invoke(main, ["send", "2026-spring", "--to", "councils", "--yes"])
    assert result.exit_code == 1
    assert result.output == ("nothing to send: list 'councils' has only suppressed members "
                             "(unsubscribed or bounced)\n" + NOBODY_HINT)
    assert not (send_project / "maildir").exists()
