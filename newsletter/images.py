"""Image sources: a picture file inside the project, or an https:// address.

An image ``src`` is copied into the build folder and published, so a wrong one is not only a
broken picture: ``src: audiences.yaml`` would publish the partner list. A local source must
therefore lie inside the project, be named like an image *and* start like one. Mail programs
show PNG, JPEG and GIF everywhere; SVG and WebP are refused because Outlook and Gmail do not
show them. Three fixed signatures decide the format (the file's first bytes, as in each
format's specification); a general file-type library would add a dependency to tell apart
more formats than mail can show.

Then, for an issue that passed the loader, :func:`prepare_images` makes each local image ready to
publish. One wider than :data:`WIDTH_CAP` pixels is scaled down to it, twice the 600 px column,
sharp on high-density screens without making phones download a camera's original; location
data and other metadata a camera writes (EXIF) is removed. The result is named by a hash of its
bytes, ``<hash>.<ext>``: a name that can be cached for ever, because other content gets another
name. Nothing here touches the database or the network: :mod:`newsletter.publish` stores the
result, the build writes it to ``build/<slug>/assets/`` beside the originals.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from newsletter import model
from newsletter.errors import Problem, Severity
from newsletter.fields import Fields, url_problem
from newsletter.yamlfile import Mark

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

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


# --- ready to publish -----------------------------------------------------------------

WIDTH_CAP = 1200
# Bigger than this (after sizing) and phones on mobile data wait for it: worth a warning.
LARGE_BYTES = 1_000_000
# Refuse to decode anything larger: a 10,000 x 10,000 pixel image is a mistake (or an attack).
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 30_000_000
# Pillow format -> (file extension, content type). Only what every mail client shows.
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "GIF": ("gif", "image/gif")}
CONTENT_TYPES = {ext: content_type for ext, content_type in FORMATS.values()}


@dataclass(frozen=True)
class EmailImage:
    """One local image as it is published: sized for email, named by its content."""

    src: str            # as written in the issue, relative to the project folder
    name: str           # "<hash>.<ext>", the published file name
    content_type: str
    data: bytes
    width: int
    height: int
    original_width: int

    @property
    def resized(self) -> bool:
        return self.width != self.original_width


class ImageProblem(Exception):
    """An image that cannot be published, with what to do about it."""

    def __init__(self, message: str, hint: str, severity: Severity = "error") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.severity = severity


def local_sources(issue: model.Issue) -> list[tuple[str, model.Location | None]]:
    """The project-relative images ``issue`` shows (article images, then the logo), each once,
    with where it is written."""
    found: dict[str, model.Location | None] = {}
    for section in issue.sections:
        if isinstance(section, model.Article) and section.image is not None:
            found.setdefault(section.image.src, section.image.at)
    if issue.theme.logo is not None:
        found.setdefault(issue.theme.logo.src, issue.theme.logo.at)
    return [(src, at) for src, at in found.items() if "://" not in src]


def image_url(name: str, tracking_url: str, assets_url: str = "") -> str:
    """Where a published image is read: ``assets_url`` (a CDN) or the tracker's ``/a/``."""
    if assets_url:
        return f"{assets_url.rstrip('/')}/{name}"
    return f"{tracking_url.rstrip('/')}/a/{name}"


def prepare_images(issue: model.Issue, root: Path) -> tuple[list[EmailImage], list[Problem]]:
    """Every local image of ``issue`` made ready to publish, and the problems found.

    An image with an error is left out of the list; a warning keeps it.
    """
    images: list[EmailImage] = []
    problems: list[Problem] = []
    for src, at in local_sources(issue):
        file, line, column = at or (issue.source, 1, 1)
        path = root / src
        try:
            stat = path.stat()
            image = _prepare(str(path), stat.st_mtime_ns, stat.st_size, src)
        except FileNotFoundError:
            continue    # the loader has already said "not found", at the same place
        except ImageProblem as exc:
            problems.append(Problem(file, line, column, exc.message, exc.hint, exc.severity))
            continue
        if len(image.data) > LARGE_BYTES:
            problems.append(Problem(
                file, line, column,
                f"image '{src}' is {len(image.data) // 1000} KB even at email size "
                f"({image.width} px wide); it will be slow to load on a phone",
                "save it as JPEG (photos) or with fewer colours (drawings), under 1 MB",
                "warning"))
        images.append(image)
    return images, problems


@lru_cache(maxsize=64)
def _prepare(path: str, _mtime_ns: int, size: int, src: str) -> EmailImage:
    # Cached by modification time and size: the preview rebuilds on every save, and sizing a
    # photo each time would make it lag.
    from PIL import Image, ImageOps, UnidentifiedImageError

    if size > MAX_FILE_BYTES:
        raise ImageProblem(f"image '{src}' is {size // 1_000_000} MB, too large to publish",
                           f"save it at most {WIDTH_CAP} pixels wide; emails need no more")
    original = Path(path).read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(original))   # reads the header only
            if picture.format in FORMATS and picture.width * picture.height > MAX_PIXELS:
                raise ImageProblem(f"image '{src}' has too many pixels to publish "
                                   f"({picture.width} x {picture.height})",
                                   f"save it at most {WIDTH_CAP} pixels wide")
            picture.load()
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageProblem(f"image '{src}' cannot be read: it starts like a picture but "
                               "its content is damaged or not a PNG, JPEG or GIF",
                               "export it again as PNG (drawings, logos) or JPEG (photos) "
                               "from an image program") from None
        raise ImageProblem(f"image '{src}' has too many pixels to publish",
                           f"save it at most {WIDTH_CAP} pixels wide") from None
    except OSError as exc:
        raise ImageProblem(f"image '{src}' cannot be read: {exc}",
                           "export it again as PNG (drawings, logos) or JPEG (photos) "
                           "from an image program") from None
    if picture.format not in FORMATS:
        raise ImageProblem(
            f"image '{src}' is {picture.format or 'an unknown format'}, which many mail "
            "clients (Outlook among them) do not show",
            "export it as PNG (drawings, logos) or JPEG (photos)")
    ext, content_type = FORMATS[picture.format]
    original_width = picture.width
    animated = getattr(picture, "n_frames", 1) > 1
    data = original
    if animated:
        if picture.width > WIDTH_CAP:
            raise ImageProblem(f"image '{src}' is an animation {picture.width} px wide; "
                               f"animations are not resized, and email needs at most "
                               f"{WIDTH_CAP} px", "make the animation smaller in the program "
                               "that made it")
    elif picture.width > WIDTH_CAP or "exif" in picture.info:
        data = _reencode(ImageOps.exif_transpose(picture), picture.format, picture.info)
    width, height = picture.size
    if data is not original:
        with Image.open(io.BytesIO(data)) as sized:
            width, height = sized.size
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{ext}"
    return EmailImage(src=src, name=name, content_type=content_type, data=data, width=width,
                      height=height, original_width=original_width)


def _reencode(picture: PILImage, image_format: str | None,
              info: dict[str | tuple[int, int], Any]) -> bytes:
    """``picture`` at most WIDTH_CAP wide, saved without EXIF (camera, place, time)."""
    from PIL import Image

    if picture.width > WIDTH_CAP:
        height = max(1, round(picture.height * WIDTH_CAP / picture.width))
        picture = picture.resize((WIDTH_CAP, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    options: dict = {}
    if info.get("icc_profile"):
        options["icc_profile"] = info["icc_profile"]   # colours stay as the author saw them
    if image_format == "JPEG":
        if picture.mode not in ("RGB", "L", "CMYK"):
            picture = picture.convert("RGB")
        options.update(quality=85, optimize=True, progressive=True)
    elif image_format == "PNG":
        options["optimize"] = True
    picture.save(out, format=image_format, **options)
    return out.getvalue()
