"""What the preview may serve besides its own page: the files the built email refers to.

Only those, and nothing else: the issue YAML, the theme, the settings and the rest of the
project folder stay private. Every path is checked twice, when the email is built and again
when a file is asked for (it may have been swapped for a symlink meanwhile).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Relative references in the built email: src="...", href="...", background="...", url(...)
_REFERENCE = re.compile(
    r"""(?:\b(?:src|href|background)\s*=\s*(?:"([^"]*)"|'([^']*)'))"""
    r"""|(?:url\(\s*["']?([^"')]+)["']?\s*\))""",
    re.IGNORECASE,
)
# Encoded slashes, backslashes, dots and NUL: refused in a raw request path before decoding
# can turn them into ``../``.
_ENCODED_TRICKS = ("%2f", "%5c", "%2e", "%00")


def referenced_files(html: str, root: Path) -> dict[str, Path]:
    """Files inside ``root`` that ``html`` refers to by a relative URL, keyed by URL path."""
    served: dict[str, Path] = {}
    for match in _REFERENCE.finditer(html):
        ref = next(group for group in match.groups() if group is not None).strip()
        parts = urlsplit(ref)
        if parts.scheme or parts.netloc or not parts.path or ref.startswith(("/", "#")):
            continue
        key = safe_relative(unquote(parts.path))
        if key is None:
            continue
        path = inside(root, key)
        if path is not None:
            served[key] = path
    return served


def safe_relative(path: str) -> str | None:
    """``path`` as a plain relative POSIX path, or None when it tries to leave its folder.

    Refuses absolute paths, ``..`` and ``.`` segments, empty segments (``//``), backslashes
    and NUL bytes: callers get either a clean ``a/b/c.png`` or nothing.
    """
    if not path or "\\" in path or "\x00" in path:
        return None
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return "/".join(segments)


def inside(root: Path, relative: str) -> Path | None:
    """The regular file ``root/relative`` after following symlinks, if it is still in ``root``."""
    try:
        resolved = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        return None
    return resolved


def asset(raw_path: bytes, path: str, served: dict[str, Path], root: Path) -> Path | None:
    """The file a request for ``/<path>`` may get, or None (the caller answers 404).

    ``raw_path`` is the request's path as sent; ``served`` the files the current email refers
    to (:func:`referenced_files`).
    """
    raw = raw_path.decode("latin-1").lower()
    if any(code in raw for code in _ENCODED_TRICKS):
        return None
    key = safe_relative(path)
    if key is None or key not in served:
        return None
    return inside(root, key)
