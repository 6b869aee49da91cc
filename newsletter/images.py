"""Image sources: a picture file inside the project, or an https:// address.

An image ``src`` is copied into the build folder and published, so a wrong one is not only a
broken picture: ``src: audiences.yaml`` would publish the partner list. A local source must
therefore lie inside the project, be named like an image *and* start like one. Mail programs
show PNG, JPEG and GIF everywhere; SVG and WebP are refused because Outlook and Gmail do not
show them. Three fixed signatures decide the format (the file's first bytes, as in each
format's specification); a general file-type library would add a dependency to tell apart
more formats than mail can show.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from newsletter.fields import Fields, url_problem
from newsletter.yamlfile import Mark

# Extension -> format; and each format's signature (PNG: RFC 2083 3.1; JPEG: the SOI marker
# and the next marker's 0xFF; GIF: the GIF87a/GIF89a header).
IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"))
_UNSHOWN = {".svg": "SVG", ".webp": "WebP", ".avif": "AVIF", ".heic": "HEIC", ".tif": "TIFF",
            ".tiff": "TIFF", ".bmp": "BMP"}
_HINT_FOLDER = "put images in the project's images/ folder and write e.g. images/event.png"


def image_format(head: bytes) -> str:
    """The format whose signature ``head`` (a file's first bytes) starts with, or ''."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return ""


def check_image_src(c: Fields, src: str, at: Mark, root: Path, assets_url: str = "") -> None:
    """Report what is wrong with image ``src`` (written at ``at``) in the project at ``root``."""
    if "://" in src or src.startswith("//"):
        _check_remote(c, src, at, assets_url)
    else:
        _check_local(c, src, at, root)


def _check_remote(c: Fields, src: str, at: Mark, assets_url: str) -> None:
    problem = url_problem(src, ("https", "http"))
    if problem:
        c.error(at, f"image '{src}' must be a https:// URL or a file in the project",
                f"{problem}: write an https:// address, or " + _HINT_FOLDER)
        return
    if assets_url and src.startswith(assets_url.rstrip("/") + "/"):
        return
    if urlsplit(src).scheme.lower() == "http":
        c.warn(at, f"image '{src}' is not on https://",
               "mail programs block or warn about http:// images: use https://, or "
               + _HINT_FOLDER)
        return
    c.warn(at, f"image '{src}' is on another site ({urlsplit(src).hostname})",
           "many mail programs block images from other sites, and that site learns when each "
           "reader opens the email: " + _HINT_FOLDER)


def _check_local(c: Fields, src: str, at: Mark, root: Path) -> None:
    try:
        path = (root / src).resolve()
        inside = root.resolve() in path.parents
        exists = inside and path.is_file()
        head = b""
        if exists:
            with path.open("rb") as handle:
                head = handle.read(16)
    except (OSError, ValueError) as exc:   # a name too long, a NUL byte, a loop of links
        reason = getattr(exc, "strerror", None) or str(exc)
        c.error(at, f"image '{src[:80]}' cannot be used as a file name: {reason}",
                _HINT_FOLDER)
        return
    if not inside:
        c.error(at, f"image '{src}' is outside the project folder", _HINT_FOLDER)
        return
    suffix = path.suffix.lower()
    expected = IMAGE_EXTENSIONS.get(suffix)
    if expected is None:
        unshown = _UNSHOWN.get(suffix)
        c.error(at, f"'{src}' is {'an ' + unshown + ' image' if unshown else 'not an image file'}"
                "; emails can show PNG, JPEG and GIF images",
                "save the picture as .png or .jpg in the images/ folder"
                + (": many mail programs do not show " + unshown if unshown else ""))
        return
    if not exists:
        c.error(at, f"image file '{src}' not found", "check the name; paths are relative to "
                "the project folder, e.g. images/event.png")
        return
    found = image_format(head)
    if not found:
        c.error(at, f"'{src}' is named like a {expected} image but its content is not an image",
                "save the picture again as PNG or JPEG from an image program: renaming a file "
                "does not change what is in it")
    elif found != expected:
        c.error(at, f"'{src}' is a {found} image named {suffix}",
                f"rename it to end in .{'jpg' if found == 'JPEG' else found.lower()}")
