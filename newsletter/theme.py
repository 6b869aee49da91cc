"""``theme.yaml``: the brand shared by every issue (colours, font, logo, footer text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from newsletter import model
from newsletter.errors import Problem, display_path
from newsletter.fields import Fields
from newsletter.images import check_image_src
from newsletter.yamlfile import LocDict, read_yaml

COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
COLOURS = ("brand_colour", "text_colour", "background_colour", "link_colour")
THEME_KEYS = (*COLOURS, "font_family", "logo", "footer_text")
LOGO_KEYS = ("src", "alt", "width", "url")


def load_theme(path: Path, root: Path, assets_url: str = "") -> tuple[model.Theme, list[Problem]]:
    """Read ``theme.yaml`` (brand colour, logo, footer text); defaults when the file is absent."""
    if not path.exists():
        return model.Theme(), []
    file = display_path(path)
    data, problems = read_yaml(path, file)
    c = Fields(file, problems)
    theme = c.mapping(data, (1, 1), "the theme") if data is not None else None
    if theme is None:
        return model.Theme(), c.problems
    c.keys(theme, THEME_KEYS, "the theme")
    values: dict[str, Any] = {key: _colour(c, theme, key) for key in COLOURS if key in theme}
    for key in ("font_family", "footer_text"):
        if key in theme:
            values[key] = c.text(theme, key, "the theme")
    if "logo" in theme:
        logo = _logo(c, theme, root, assets_url)
        if logo is not None:
            values["logo"] = logo
    result = model.Theme(**{k: v for k, v in values.items() if v is not None})
    from newsletter.render.colour import theme_contrast_problems

    for message in theme_contrast_problems(result):
        c.error(theme.mark, message, "pick darker text or brand colours (WCAG 2.2 AA needs 4.5:1)")
    return result, c.problems


def _colour(c: Fields, theme: LocDict, key: str) -> str | None:
    if theme[key] is None:
        c.error(theme.key_at(key), f"{key} is empty",
                'a # starts a comment in YAML: write the colour in quotes, e.g. "#1d4f91"')
        return None
    colour = c.text(theme, key, "the theme")
    if COLOUR_RE.match(colour):
        return colour.lower()
    c.error(theme.value_at(key), f"{key} '{colour}' is not a colour",
            "write six hex digits in quotes, e.g. \"#1d4f91\"")
    return None


def _logo(c: Fields, theme: LocDict, root: Path, assets_url: str) -> model.Logo | None:
    logo = c.mapping(theme["logo"], theme.value_at("logo"), "the theme's logo")
    if logo is None:
        return None
    c.keys(logo, LOGO_KEYS, "the theme's logo")
    src = c.text(logo, "src", "the theme's logo")
    if "alt" not in logo:
        c.error(logo.mark, "the theme's logo has no alt text",
                "add 'alt: ...' naming the organisation, for people who cannot see the logo")
    alt = c.text(logo, "alt", "the theme's logo", required=False)
    width = c.whole_number(logo, "width", 16, 600, "logo width must be a whole number of "
                           "pixels, 16-600", "e.g. 'width: 160'")
    url = c.url(logo, "url", "the theme's logo", required=False)
    if src:
        check_image_src(c, src, logo.value_at("src"), root, assets_url)
    if not src or "alt" not in logo:
        return None
    return model.Logo(src=src, alt=alt, url=url, width=width or 160,
                      at=(c.file, *logo.value_at("src")))
