"""The bounce settings in newsletter.yaml and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import InvalidSettings
from newsletter.settings import Settings


def test_bounce_settings_are_read(tmp_path: Path) -> None:
    (tmp_path / "newsletter.yaml").write_text(
        "bounce_address: Bounces@News.example.org\nsoft_bounce_limit: 5\n")
    settings = Settings.load(tmp_path, {"NEWSLETTER_BOUNCE_IMAP_URL": "imaps://b@h/INBOX",
                                        "NEWSLETTER_BOUNCE_IMAP_PASSWORD": "pw",
                                        "NEWSLETTER_BOUNCE_IMAP_CA_FILE": "ca.pem"})
    assert settings.bounce_address == "bounces@news.example.org"
    assert settings.soft_bounce_limit == 5
    assert settings.bounce_imap_url == "imaps://b@h/INBOX"
    assert settings.bounce_imap_ca_file == str(tmp_path / "ca.pem")
    assert "pw" not in repr(settings)


def test_bounce_settings_default(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, {})
    assert (settings.bounce_address, settings.soft_bounce_limit) == ("", 3)


@pytest.mark.parametrize(("text", "expected"), [
    ("bounce_address: bounces\n", "newsletter.yaml:1:17: error: bounce_address: 'bounces' is "
     "not an email address\n    hint: use a mailbox of its own on your sending domain, e.g. "
     "bounces@news.example.org"),
    ("bounce_address: bounces+x@news.example.org\n", "newsletter.yaml:1:17: error: "
     "bounce_address: 'bounces+x@news.example.org' already has a '+' in it; the tag goes after "
     "a '+'"),
    ("soft_bounce_limit: 0\n", "newsletter.yaml:1:20: error: soft_bounce_limit must be a whole "
     "number from 1, not '0'\n    hint: soft bounces in a row, across issues, that suppress an "
     "address (default 3)"),
    ("soft_bounce_limit: often\n", "newsletter.yaml:1:20: error: soft_bounce_limit must be a "
     "whole number from 1, not 'often'"),
])
def test_bad_bounce_settings_are_located(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "newsletter.yaml").write_text(text)
    with pytest.raises(InvalidSettings) as caught:
        Settings.load(tmp_path, {})
    assert caught.value.format().startswith(expected)
