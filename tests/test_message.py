"""Per-recipient messages: made by substitution, parsed back with Python's email package."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
from email import policy
from pathlib import Path

import pytest
from helpers import line_problems, make_built, perl_parse, python_mailboxes, python_parse

from newsletter.adapters.base import AdapterSettings
from newsletter.adapters.maildir import MaildirAdapter
from newsletter.errors import NewsletterError
from newsletter.links import PLACEHOLDER_RE
from newsletter.message import MessageFactory, Recipient
from newsletter.project import Project
from newsletter.settings import Settings
from newsletter.tracking.tokens import Signer

SIGNER = Signer({"k1": b"secret"}, "k1")


def project(tmp_path: Path, list_id: str = "") -> Project:
    return Project(root=tmp_path, settings=Settings(
        root=tmp_path, env={}, list_id_domain="news.example.org", list_id=list_id,
        unsubscribe_mailto="leave@example.org", tracking_url="https://t.example.org"))


def ann(name: str = "Ann <Lee> & Co", list_key: str = "schools") -> Recipient:
    return Recipient("ann@school.example", name, "pAnn", "<spring.pAnn@news.example.org>",
                     list_key, 1)


def via_maildir(tmp_path: Path, data: bytes) -> email.message.EmailMessage:
    """Deliver through the maildir adapter and parse the file back."""
    adapter = MaildirAdapter(AdapterSettings(root=tmp_path, env={}, maildir=tmp_path / "md"))
    adapter.open()
    factory_message = type("M", (), {"mime": data})()
    name = adapter.send(factory_message)  # type: ignore[arg-type]
    raw = (tmp_path / "md" / "new" / name).read_bytes()
    assert b"\r\n" not in raw    # local line ends in Maildir files
    assert list((tmp_path / "md" / "tmp").iterdir()) == []
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_headers_and_parts_parse_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_TRACKING_URL", raising=False)
    factory = MessageFactory(make_built(), project(tmp_path), SIGNER)
    message = factory.make(ann())
    parsed = via_maildir(tmp_path, message.mime)

    assert parsed["From"].addresses[0].display_name == "Prevent Team – Kent"
    assert parsed["From"].addresses[0].addr_spec == "team@example.org"
    assert parsed["Reply-To"] == "replies@example.org"
    assert parsed["To"].addresses[0].display_name == "Ann <Lee> & Co"
    assert parsed["To"].addresses[0].addr_spec == "ann@school.example"
    assert parsed["Subject"] == "Spring update: what’s new"
    assert parsed["Message-ID"] == "<spring.pAnn@news.example.org>"
    assert parsed["Date"].datetime is not None
    assert parsed["List-Id"] == "<news.example.org>"     # list_id unset: list_id_domain
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(parsed["List-Unsubscribe"])
    token = SIGNER.unsubscribe("spring", "pAnn")
    assert f"<https://t.example.org/u/{token}>" in unsubscribe
    assert "<mailto:leave@example.org?subject=unsubscribe%20pAnn>" in unsubscribe
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]

    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    assert "Dear Ann <Lee> & Co," in text
    assert "Dear Ann &lt;Lee&gt; &amp; Co," in html          # escaped in HTML only
    assert "Café £5" in text                                   # UTF-8 safe
    assert not PLACEHOLDER_RE.search(text) and not PLACEHOLDER_RE.search(html)
    # The pseudonym, never the address, goes into URLs.
    assert "ann@school.example" not in html and "ann@school.example" not in text


def test_lines_stay_short_and_ascii(tmp_path: Path) -> None:
    factory = MessageFactory(make_built(), project(tmp_path), SIGNER)
    data = factory.make(ann()).mime
    data.decode("ascii")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_aggregate_tracking_signs_the_list_not_the_person(tmp_path: Path) -> None:
    factory = MessageFactory(make_built(tracking="aggregate"), project(tmp_path), SIGNER)
    html = factory.make(ann()).html
    click = SIGNER.click("spring", "aaa111", list_key="schools")
    assert f"/c/{click}" in html
    data = SIGNER.verify(click, "c")
    assert (data.list, data.pseudonym) == ("schools", None)
    other = factory.make(Recipient("bob@x.example", "", "pBob", "<m@x>", "schools", 2)).html
    assert f"/c/{click}" in other


def test_individual_tracking_and_opens_sign_the_pseudonym(tmp_path: Path) -> None:
    factory = MessageFactory(make_built(tracking="individual", opens=True), project(tmp_path),
                             SIGNER)
    html = factory.make(ann()).html
    assert f"/c/{SIGNER.click('spring', 'bbb222', pseudonym='pAnn')}" in html
    assert f"/o/{SIGNER.open('spring', pseudonym='pAnn')}" in html


def test_blank_name_gets_a_neutral_greeting(tmp_path: Path) -> None:
    factory = MessageFactory(make_built(), project(tmp_path), SIGNER)
    message = factory.make(ann(name=""))
    assert "Dear colleague," in message.text
    assert b"To: ann@school.example\r\n" in message.mime


def test_test_copies_are_marked(tmp_path: Path) -> None:
    factory = MessageFactory(make_built(), project(tmp_path), SIGNER, test=True)
    parsed = email.message_from_bytes(factory.make(ann()).mime, policy=policy.default)
    assert parsed["Subject"] == "[TEST] Spring update: what’s new"
    assert parsed["X-Newsletter-Test"] == "yes"


@pytest.mark.parametrize("subject", ["Hello\r\nBcc: victim@example.org", "Line\nbreak"])
def test_header_injection_is_refused(tmp_path: Path, subject: str) -> None:
    with pytest.raises(NewsletterError, match="the subject contains a line break"):
        MessageFactory(make_built(subject=subject), project(tmp_path), SIGNER)


def test_the_sample_issue_makes_valid_messages(sample_issue: Path, project: Path) -> None:
    from newsletter.build import build_issue

    proj = Project.load(project)
    built = build_issue(sample_issue, proj)
    message = MessageFactory(built, proj, SIGNER).make(ann())
    parsed = email.message_from_bytes(message.mime, policy=policy.default)
    html = parsed.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html == message.html
    assert not PLACEHOLDER_RE.search(html)


def test_smtp_data_is_the_message_dot_stuffed(tmp_path: Path) -> None:
    from newsletter.message import dot_stuff

    built = make_built(text=".starts with a dot {{name}}\n..two\n{{name}}\n",
                       html="<p>x</p>\n.{{name}}\n{{unsubscribe}}")
    factory = MessageFactory(built, project(tmp_path), SIGNER)
    message = factory.make(ann(name=".Dot"))

    def without_date(data: bytes) -> bytes:
        return b"\r\n".join(line for line in data.split(b"\r\n")
                            if not line.startswith(b"Date: "))

    assert without_date(message.smtp_data) == without_date(dot_stuff(message.mime) + b".\r\n")
    assert b"\r\n..Dot" in message.smtp_data


def test_list_id_is_the_same_for_every_issue(tmp_path: Path) -> None:
    named = project(tmp_path, list_id="Kent and Medway Prevent Partner Newsletter – Été "
                                      "<prevent-newsletter.example.org>")
    seen = set()
    for slug in ("2026-spring", "2026-summer"):
        raw = MessageFactory(make_built(slug=slug), named, SIGNER).make(ann()).mime
        seen.add(perl_parse(raw)["list_id"])
        assert python_parse(raw)["List-Id"] == ("Kent and Medway Prevent Partner Newsletter – "
                                                "Été <prevent-newsletter.example.org>")
    assert seen == {"Kent and Medway Prevent Partner Newsletter – Été "
                    "<prevent-newsletter.example.org>"}


def test_date_has_a_numeric_zone(tmp_path: Path) -> None:
    raw = MessageFactory(make_built(), project(tmp_path), SIGNER).make(ann()).mime
    date = python_parse(raw)["Date"]
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", str(date))


def test_long_non_ascii_headers_keep_every_limit(tmp_path: Path) -> None:
    subject = ("Prevent in Kent: Отчёт о работе партнёрства — 安全保障 — café ✓ Ünïcödé "
               "and a few more words to pass one line")
    name = "Zoë Ünïcödé-Łukasiewicz, Organisation für Sicherheit und Schutz der Kinder"
    factory = MessageFactory(make_built(subject=subject), project(tmp_path), SIGNER)
    raw = factory.make(ann(name=name)).mime
    assert line_problems(raw) == []
    assert python_parse(raw)["Subject"] == subject
    assert python_mailboxes(raw, "To") == [(name, "ann@school.example")]
    parsed = perl_parse(raw)
    assert (parsed["subject"], parsed["to"][0]["name"]) == (subject, name)


@pytest.mark.parametrize("tracking", ["aggregate", "individual"])
def test_quoted_printable_lines_stay_within_76_whatever_the_token_length(
        tmp_path: Path, tracking: str) -> None:
    # A literal of every length from 60 to 90 characters before a placeholder puts the fold
    # at every position around the token; 76 exactly used to become 77 with the soft break.
    lines = [("x" * width) + "{{name}}|{{unsubscribe}}" for width in range(60, 91)]
    html = "<p>" + "\n".join(lines) + "</p>"
    built = make_built(html=html, text="\n".join(lines) + "\n", tracking=tracking)
    for name in ("A", "Ann Lee", "N" * 75, "Zoë " * 30):
        message = MessageFactory(built, project(tmp_path), SIGNER).make(ann(name=name))
        assert line_problems(message.mime) == []
        parsed = python_parse(message.mime)
        assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == message.text
        assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == message.html


def test_spamassassin_sees_no_hidden_or_low_contrast_text(sample_issue: Path,
                                                          project: Path) -> None:
    from newsletter.build import build_issue

    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.fail("spamassassin is missing: run `make test` (it installs Debian's package)")
    proj = Project.load(project)
    raw = MessageFactory(build_issue(sample_issue, proj), proj, SIGNER).make(ann()).mime
    report = subprocess.run([spamassassin, "-L", "-t"], input=raw, capture_output=True,
                            check=True, timeout=120).stdout.decode("utf-8", "replace")
    assert "HTML_MESSAGE" in report          # it did read the HTML part
    assert "LOW_CONTRAST" not in report
    assert "FONT_INVIS" not in report


def test_the_html_part_starts_with_a_doctype(tmp_path: Path, sample_issue: Path,
                                             project: Path) -> None:
    from newsletter.build import build_issue

    proj = Project.load(project)
    message = MessageFactory(build_issue(sample_issue, proj), proj, SIGNER).make(ann())
    html = python_parse(message.mime).get_body(("html",)).get_content()
    assert html.lower().startswith("<!doctype html>")
