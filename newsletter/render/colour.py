"""Colour contrast (WCAG 2.2 success criterion 1.4.3), so a theme cannot ship unreadable text."""

from __future__ import annotations

from newsletter.model import Theme

AA_NORMAL_TEXT = 4.5


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    """Relative luminance of ``#rrggbb``."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio between two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def theme_contrast_problems(theme: Theme) -> list[str]:
    """Every colour pairing in the theme that falls below 4.5:1."""
    pairs = [
        ("text_colour", theme.text_colour, "white content area", "#ffffff"),
        ("link_colour", theme.link_colour, "white content area", "#ffffff"),
        ("white button text", "#ffffff", "brand_colour", theme.brand_colour),
    ]
    problems = []
    for name, fg, where, bg in pairs:
        ratio = contrast_ratio(fg, bg)
        if ratio < AA_NORMAL_TEXT:
            problems.append(f"{name} on {where} has contrast {ratio:.1f}:1, below 4.5:1")
    return problems
