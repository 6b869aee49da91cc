"""Image sources: a picture file inside the project, or an https:// address."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from newsletter.fields import Fields
from newsletter.yamlfile import Mark


def check_image_src(c: Fields, src: str, at: Mark, root: Path, assets_url: str = "") -> None:
    """Report what is wrong with image ``src`` (written at ``at``) in the project at ``root``."""
    if "://" in src:
        if urlsplit(src).scheme not in ("https", "http"):
            c.error(at, f"image '{src}' must be a https:// URL or a file in the project",
                    "e.g. images/event.png")
        return
    path = (root / src).resolve()
    if root.resolve() not in path.parents:
        c.error(at, f"image '{src}' is outside the project folder",
                "put images in the project's images/ folder and write e.g. images/event.png")
    elif not path.is_file():
        c.error(at, f"image file '{src}' not found", "check the name; paths are relative to "
                "the project folder, e.g. images/event.png")
