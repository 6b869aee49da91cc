"""The inbox is the truth: two issues sent through SMTP to a real server, read back twice.

The sample issue and ``tests/inputs/inbox/2026-hostile.yaml`` (phone numbers with a leading
zero, times YAML 1.1 reads as numbers, accented names, a 120-character subject in several
scripts) go to the same partners through the SMTP adapter, into aiosmtpd on 127.0.0.1. Every
message that arrived is parsed by Python's ``email`` and by Perl's Email::MIME.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner
from helpers import PROJECT_FILES, REPO, line_problems, perl_parse, python_mailboxes, python_parse

HOSTILE = Path(__file__).resolve().parent / "inputs" / "inbox" / "2026-hostile.yaml"
HOSTILE_TEXT = HOSTILE.read_text(encoding="utf-8")
SAMPLE_TEXT = (REPO / "issues" / "2026-spring.yaml").read_text(encoding="utf-8")

# Recipients whose names mail systems like to mangle; the comma and quotes need quoting.
PARTNERS = [
    ("zoe@school.example.org", "Zoë Ünïcödé-Łukasiewicz", "École Sainte-Thérèse"),
    ("dsl@academy.example.org", "Δημήτρης Παπαδόπουλος-Καραγιάννης (Κοινότητα)", "Ακαδημία"),
    ("office@council.example.org", 'Lee, Sam "Safeguarding" 李', "County Council"),
    ("team@charity.example.org", "", "Helping Hands"),
]
PHONES = ["03000410000", "01622 694000"]
TIMES = [("8 July 2026", "14:00", "Maidstone"), ("9 July 2026", "9:30", "Gillingham")]


def _yaml_value(text: str, key: str) -> str:
    """The value of a top-level ``key: value`` line as written (quotes taken off), so the
    expectations do not depend on our own loader."""
    match = re.search(rf"^{key}: (.*)$", text, re.M)
    assert match, key
    value = match.group(1).strip()
    return value[1:-1] if value[:1] == '"' else value


def _sender_name(text: str) -> str:
    match = re.search(r"^sender:\n  name: (.*)$", text, re.M)
    assert match
    return match.group(1).strip()


@dataclass
class Received:
    """One message as it arrived, and who it was for."""

    issue: str
    address: str
    raw: bytes

    @property
    def python(self) -> EmailMessage:
        return python_parse(self.raw)


def _audiences() -> str:
    lines = ["lists:", "  partners:", "    name: Partners", "    members:"]
    for address, name, organisation in PARTNERS:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'      - {{email: {address}, name: "{quoted}", '
                     f'organisation: "{organisation}"}}')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Received]]:
    """Send both issues to PARTNERS through the smtp adapter; every message that arrived."""
    from aiosmtpd.controller import Controller

    from newsletter.cli import main

    root = tmp_path_factory.mktemp("inbox") / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.is_file():
            shutil.copy2(source, root / name)
    shutil.copy2(HOSTILE, root / "issues" / HOSTILE.name)
    (root / "audiences.yaml").write_text(_audiences(), encoding="utf-8")

    arrived: list[tuple[str, bytes]] = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            for address in envelope.rcpt_tos:
                arrived.append((address, envelope.original_content))
            return "250 2.0.0 queued"

    from helpers import free_port

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    received = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            for variable in ("NEWSLETTER_TRACKING_URL", "NEWSLETTER_DB", "NEWSLETTER_SECRET_KEY",
                             "NEWSLETTER_ADAPTER", "NEWSLETTER_SMTP_CA_FILE"):
                patch.delenv(variable, raising=False)
            patch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{port}")
            for issue in ("2026-spring", "2026-hostile"):
                before = len(arrived)
                result = CliRunner().invoke(main, ["send", issue, "--to", "partners",
                                                   "--adapter", "smtp", "--yes",
                                                   "--allow-local-tracking"])
                assert result.exit_code == 0, result.output
                received += [Received(issue, address, raw) for address, raw in arrived[before:]]
    finally:
        controller.stop()
    assert sorted((r.issue, r.address) for r in received) == sorted(
        (issue, address) for issue in ("2026-spring", "2026-hostile")
        for address, _, _ in PARTNERS)
    yield received


def _parts(message: EmailMessage) -> tuple[str, str]:
    """(plain text, the HTML's visible text), line ends normalised."""
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    return text, lxml.html.document_fromstring(html).text_content()


def _person(address: str) -> tuple[str, str]:
    return next((name, organisation) for a, name, organisation in PARTNERS if a == address)


def test_no_line_breaks_a_limit(inbox: list[Received]) -> None:
    for message in inbox:
        assert line_problems(message.raw) == [], (message.issue, message.address)


def test_subjects_and_names_read_back_exactly_with_python(inbox: list[Received]) -> None:
    for message in inbox:
        source = HOSTILE_TEXT if message.issue == "2026-hostile" else SAMPLE_TEXT
        name, _ = _person(message.address)
        parsed = message.python
        assert parsed["Subject"] == _yaml_value(source, "subject")
        assert python_mailboxes(message.raw, "From")[0][0] == _sender_name(source)
        assert python_mailboxes(message.raw, "To") == [(name, message.address)]
        text, html = _parts(parsed)
        greeting = f"Dear {name or 'colleague'},"
        if message.issue == "2026-hostile":
            assert greeting in text and greeting in html


def test_subjects_and_names_read_back_exactly_with_perl(inbox: list[Received]) -> None:
    for message in inbox:
        source = HOSTILE_TEXT if message.issue == "2026-hostile" else SAMPLE_TEXT
        name, _ = _person(message.address)
        parsed = perl_parse(message.raw)
        assert parsed["subject"] == _yaml_value(source, "subject")
        assert parsed["from"][0]["name"] == _sender_name(source)
        assert parsed["to"] == [{"name": name, "address": message.address}]
        if message.issue == "2026-hostile":
            text = next(p["body"] for p in parsed["parts"] if p["type"] == "text/plain")
            assert f"Dear {name or 'colleague'}," in text


def test_the_hostile_subject_is_120_characters_in_several_scripts() -> None:
    subject = _yaml_value(HOSTILE_TEXT, "subject")
    assert len(subject) == 120
    for script in ("Отчёт", "安全保障", "Νέα", "Ünïcödé", "नमस्ते", "مرحبا"):
        assert script in subject


def test_phone_numbers_times_and_organisations_arrive_as_typed(inbox: list[Received]) -> None:
    # Written unquoted in the YAML: the loader keeps them as the editor typed them.
    for phone in PHONES:
        assert f"phone: {phone}\n" in HOSTILE_TEXT
    for _, time, _ in TIMES:
        assert f"time: {time}\n" in HOSTILE_TEXT
    teams = re.findall(r"^\s*team: (.*)$", HOSTILE_TEXT, re.M)
    for message in inbox:
        if message.issue != "2026-hostile":
            continue
        text, html = _parts(message.python)
        perl_text = next(p["body"] for p in perl_parse(message.raw)["parts"]
                         if p["type"] == "text/plain")
        for body in (text, perl_text):
            for phone in PHONES:
                assert f"Phone: {phone}\n" in body
            for day, time, place in TIMES:
                assert f"{day}, {time}, {place}" in body
            for team in teams:
                assert team in body
        for phone in PHONES:
            assert f"Phone: {phone}" in html
        for day, time, place in TIMES:
            assert f"{day}, {time} · {place}" in html
        for team in teams:
            assert team in html


_TOKEN_RE = re.compile(r"/[cou]/([A-Za-z0-9_.-]{16,})")


def _per_recipient_values(message: Received) -> set[str]:
    """Every value in the message that could name its recipient: Message-ID, the pseudonym
    in the mailto: unsubscribe, every token."""
    parsed = message.python
    text, _ = _parts(parsed)
    html = parsed.get_body(("html",)).get_content()
    unsubscribe = str(parsed["List-Unsubscribe"])
    mailto = re.search(r"subject=unsubscribe%20([^>]+)>", unsubscribe)
    assert mailto
    values = {str(parsed["Message-ID"]), mailto.group(1)}
    values.update(_TOKEN_RE.findall(text + html + unsubscribe))
    return values


def test_no_per_recipient_value_repeats_across_the_two_issues(inbox: list[Received]) -> None:
    spring = set().union(*(_per_recipient_values(m) for m in inbox if m.issue == "2026-spring"))
    hostile = set().union(*(_per_recipient_values(m) for m in inbox
                            if m.issue == "2026-hostile"))
    assert spring and hostile
    assert spring & hostile == set()
    for address, _, _ in PARTNERS:
        mine = [m for m in inbox if m.address == address]
        pseudonyms = {m.issue: re.search(r"subject=unsubscribe%20([^>]+)>",
                                         str(m.python["List-Unsubscribe"])).group(1)
                      for m in mine}
        assert pseudonyms["2026-spring"] != pseudonyms["2026-hostile"]
        for m in mine:                 # and nothing in a message is the address itself
            assert address not in "".join(_per_recipient_values(m))


def test_with_individual_tracking_each_recipient_has_tokens_of_their_own(
        inbox: list[Received]) -> None:
    hostile = [_per_recipient_values(m) for m in inbox if m.issue == "2026-hostile"]
    for index, values in enumerate(hostile):
        others = set().union(*(v for i, v in enumerate(hostile) if i != index))
        assert values & others == set()
