"""Outlets in newsletter.yaml: read, checked where they are written, found by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter import outlets
from newsletter.errors import InvalidSettings, NewsletterError
from newsletter.outlets import Outlet
from newsletter.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "newsletter.yaml").write_text(text, encoding="utf-8")
    return Settings.load(tmp_path, {})


def test_outlets_are_read_in_order(tmp_path: Path) -> None:
    settings = _load(tmp_path, "outlets:\n"
                               "  - {id: kscmp, name: KSCMP newsletter, kind: partner-newsletter}\n"
                               "  - id: gp\n    name: GP surgeries\n    kind: print\n")
    assert settings.outlets == (Outlet("kscmp", "KSCMP newsletter", "partner-newsletter"),
                                Outlet("gp", "GP surgeries", "print"))
    assert [o.has_qr for o in settings.outlets] == [False, True]


def test_no_outlets_by_default(tmp_path: Path) -> None:
    assert _load(tmp_path, "theme: theme.yaml\n").outlets == ()


def test_the_sample_project_has_the_strategys_channels() -> None:
    settings = Settings.load(REPO, {})
    kinds = {o.id: o.kind for o in settings.outlets}
    assert kinds == {
        "kscmp-newsletter": "partner-newsletter", "kmsab-newsletter": "partner-newsletter",
        "facebook": "social", "knet": "intranet", "viva-engage": "intranet",
        "medspace": "intranet", "kelsi": "website", "partner-websites": "website",
        "gp-surgeries": "print", "public-screens": "screen"}


@pytest.mark.parametrize(("text", "expected"), [
    ("outlets:\n  - {id: fb, name: Facebook, kind: socail}\n",
     "newsletter.yaml:2:36: error: 'socail' is not a kind of outlet\n    hint: did you mean "
     "'social'? kinds: partner-newsletter, social, intranet, website, print, screen"),
    ("outlets:\n  - {id: fb, name: Facebook, kind: blog}\n",
     "newsletter.yaml:2:36: error: 'blog' is not a kind of outlet\n    hint: kinds: "
     "partner-newsletter, social, intranet, website, print, screen"),
    ("outlets:\n  - {id: email, name: Our email, kind: social}\n",
     "newsletter.yaml:2:10: error: outlet id 'email' is built in: Email (the newsletter's "
     "recipients)\n    hint: give this outlet another id"),
    ("outlets:\n  - {id: fb, name: Facebook, kind: social}\n"
     "  - {id: fb, name: Facebook again, kind: social}\n",
     "newsletter.yaml:3:10: error: outlet id 'fb' is used twice (first on line 2)\n"
     "    hint: give each outlet an id of its own"),
    ("outlets:\n  - {id: KSCMP News, name: KSCMP, kind: partner-newsletter}\n",
     "newsletter.yaml:2:10: error: outlet id 'KSCMP News' is not a simple id\n    hint: use "
     "lower-case letters, digits and hyphens, up to 40 characters"),
    ("outlets:\n  - {id: fb, nmae: Facebook, kind: social}\n",
     "newsletter.yaml:2:5: error: missing required field 'name' in outlet 1"),
    ("outlets:\n  - {id: fb, name: Facebook, kind: social, nmae: x}\n",
     "newsletter.yaml:2:44: error: unknown key 'nmae' in outlet 1\n    hint: did you mean "
     "'name'?"),
    ("outlets: facebook\n",
     "newsletter.yaml:1:10: error: 'outlets' must be a list of outlets"),
    ("outlets:\n  - facebook\n",
     "newsletter.yaml:2:5: error: outlet 1 must be a mapping of 'key: value' lines, not text"),
    ("strategy_start: 2025-13-01\n",
     "newsletter.yaml:1:17: error: '2025-13-01' is not a valid date"),
])
def test_bad_outlets_are_located(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InvalidSettings) as caught:
        _load(tmp_path, text)
    assert caught.value.format().startswith(expected)


def test_strategy_start_is_a_date(tmp_path: Path) -> None:
    import datetime as dt

    assert _load(tmp_path, "strategy_start: 2025-9-1\n").strategy_start == dt.date(2025, 9, 1)


def test_an_unknown_outlet_id_gets_the_close_one() -> None:
    listed = (Outlet("kscmp-newsletter", "KSCMP", "partner-newsletter"),
              Outlet("gp-surgeries", "GP", "print"))
    with pytest.raises(NewsletterError) as caught:
        outlets.find(listed, "kscmp-newsleter")
    assert caught.value.format() == (
        "--outlet 'kscmp-newsleter' is not one of the project's outlets\n    hint: did you "
        "mean 'kscmp-newsletter'? the outlets in newsletter.yaml: kscmp-newsletter, "
        "gp-surgeries")
    assert outlets.find(listed, "gp-surgeries") is listed[1]


@pytest.mark.parametrize(("path", "expected"), [
    ("", "direct"), ("/", "direct"), ("kscmp", "kscmp"), ("KSCMP/", "kscmp"),
    ("email", "email"), ("direct", "direct"), ("unknown", "unknown"), ("nobody", "unknown"),
    ("kscmp/extra", "unknown"), ("%3Cscript%3E", "unknown"),
])
def test_an_address_names_an_outlet_or_unknown(path: str, expected: str) -> None:
    assert outlets.outlet_of(path, {"kscmp"}) == expected


def test_outlet_links_name_the_outlet_and_nothing_else() -> None:
    assert outlets.view_url("https://news.example.org/", "2026-spring", "kelsi") == \
        "https://news.example.org/v/2026-spring/kelsi"
    assert outlets.view_url("https://news.example.org", "2026-spring") == \
        "https://news.example.org/v/2026-spring"
