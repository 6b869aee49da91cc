"""A real send refuses addresses recipients cannot reach: tracking URL and assets URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.reachable import public_url_problems

HINT = ("hint: set tracking_url in newsletter.yaml (or NEWSLETTER_TRACKING_URL) to the "
        "tracker's public https:// address, e.g. https://news.example.org (docs/deploy.md); "
        "--allow-local-tracking sends anyway (for tests only)")


def send(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["send", "2026-spring", "--to", "schools", *args])


@pytest.fixture
def smtp(send_project: Path, smtp_server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    recorder, url = smtp_server()
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", url)
    return recorder


def test_the_default_local_tracking_url_is_refused_for_smtp(smtp, send_project: Path) -> None:  # type: ignore[no-untyped-def]
    result = send("--adapter", "smtp", "--yes")
    assert result.exit_code == 1
    assert ("the tracking URL http://127.0.0.1:8025 cannot be used for a real send with the smtp "
            "adapter: it is not https, which RFC 8058 one-click unsubscribe requires (and "
            "browsers warn about plain http); 127.0.0.1 is this machine (a loopback address): "
            "recipients' computers cannot reach it. Every link, image and unsubscribe link in "
            "the messages would point there") in result.output
    assert HINT in result.output
    assert smtp.messages == []
    assert not (send_project / "newsletter.db").exists()


@pytest.mark.parametrize(("url", "why"), [
    ("http://news.example.org", "it is not https, which RFC 8058 one-click unsubscribe requires"),
    ("https://localhost:8025", "localhost is a name only this machine or network knows"),
    ("https://10.1.2.3", "10.1.2.3 is a private or reserved address: recipients outside your "
                         "network cannot reach it"),
    ("https://[::1]:8025", "::1 is this machine (a loopback address)"),
    ("https://tracker", "tracker is not a full domain name (no dot)"),
    ("https://news.partnership.internal", "news.partnership.internal is a name only this "
                                          "machine or network knows"),
])
def test_each_kind_of_unreachable_tracking_url_is_refused(smtp, monkeypatch, url: str,  # type: ignore[no-untyped-def]
                                                          why: str) -> None:
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", url)
    result = send("--adapter", "smtp", "--yes")
    assert result.exit_code == 1
    assert why in result.output
    assert smtp.messages == []


def test_a_test_copy_and_a_dry_run_are_refused_too(smtp) -> None:  # type: ignore[no-untyped-def]
    for args in (("--test", "editor@example.org"), ("--to", "schools", "--dry-run")):
        result = CliRunner().invoke(main, ["send", "2026-spring", "--adapter", "smtp", *args])
        assert result.exit_code == 1
        assert "cannot be used for a real send with the smtp adapter" in result.output
    assert smtp.messages == []


def test_an_http_cdn_is_refused(smtp, send_project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://news.example.org")
    settings = send_project / "newsletter.yaml"
    settings.write_text(settings.read_text() + "assets_url: http://cdn.example.org/news/\n")
    result = send("--adapter", "smtp", "--yes")
    assert result.exit_code == 1
    assert ("the assets_url http://cdn.example.org/news/ cannot be used for a real send with "
            "the smtp adapter: it is not https") in result.output
    assert ("hint: set assets_url in newsletter.yaml to the CDN's public https:// folder, or "
            "remove it to let the tracker serve the images") in result.output


def test_a_public_https_tracking_url_sends(smtp, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_TRACKING_URL", "https://news.example.org")
    result = send("--adapter", "smtp", "--yes")
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 3


def test_allow_local_tracking_sends_and_says_so(smtp) -> None:  # type: ignore[no-untyped-def]
    result = send("--adapter", "smtp", "--yes", "--allow-local-tracking")
    assert result.exit_code == 0, result.output
    assert ("warning: --allow-local-tracking: links point at http://127.0.0.1:8025, which "
            "recipients cannot reach") in result.output
    assert len(smtp.messages) == 3


def test_maildir_keeps_its_local_default(send_project: Path) -> None:
    result = send("--yes")
    assert result.exit_code == 0, result.output
    assert "allow-local-tracking" not in result.output


@pytest.mark.parametrize("url", ["https://news.example.org", "https://203.0.113.10",
                                 "https://[2001:db8::1]", "https://news.example.org:8443/x"])
def test_public_addresses_pass(url: str) -> None:
    problems = public_url_problems(url)
    # Documentation ranges (RFC 5737, RFC 3849) are not global: only the names may pass.
    if "example.org" in url:
        assert problems == []
    else:
        assert problems and "private or reserved" in problems[0]


@pytest.mark.parametrize("url", ["https://169.254.1.1", "https://100.64.0.1", "https://fd00::1",
                                 "https://0.0.0.0", "https://192.168.1.20"])
def test_link_local_shared_and_private_ranges_are_not_public(url: str) -> None:
    assert public_url_problems(url)
