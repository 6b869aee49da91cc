"""The share kit: what each outlet needs to carry an issue, in ``build/<slug>/share/``.

For every outlet in ``newsletter.yaml`` (see :mod:`newsletter.outlets`):

- ``<id>.txt``: a short text (headline, two lines, the outlet's link) to paste into a post or
  an intranet news item;
- ``<id>.html``: the same as an HTML snippet with the issue's picture, to paste into a partner's
  own newsletter or intranet page;
- for print and screen outlets, ``<id>-qr.png`` and ``<id>-qr.svg``: a QR code of the outlet's
  link made by segno, sized to print (:data:`QR_SIZES`);

plus the picture itself as published (sized for email, camera metadata removed: see
:mod:`newsletter.images`), to upload beside the snippet where a system does not load pictures
from other sites, and ``README.txt`` saying what is what. The folder is written whole or not
at all, like the build.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import model
from newsletter.build import swap_in
from newsletter.errors import NewsletterError
from newsletter.images import EmailImage, image_url
from newsletter.outlets import Outlet, view_url

# Physical size of a QR code with its quiet zone, and the PNG's resolution. A code is read
# comfortably from about ten times its width: 40 mm on a leaflet held at arm's length, 100 mm
# on a screen across a waiting room.
QR_SIZES: dict[str, tuple[float, int]] = {"print": (40.0, 300), "screen": (100.0, 150)}
QR_BORDER = 4          # modules of quiet zone: what ISO/IEC 18004 asks for
MM_PER_INCH = 25.4


@dataclass(frozen=True)
class SharedOutlet:
    """One outlet's part of the kit: its link and the files written for it (relative to the
    project)."""

    outlet: Outlet
    url: str
    text: str
    snippet: str
    qr_png: str = ""
    qr_svg: str = ""

    def as_json(self) -> dict[str, str]:
        """The ``share --format json`` object for this outlet."""
        found = {"id": self.outlet.id, "name": self.outlet.name, "kind": self.outlet.kind,
                 "url": self.url, "text": self.text, "html": self.snippet}
        if self.qr_png:
            found.update(qr_png=self.qr_png, qr_svg=self.qr_svg)
        return found


@dataclass
class Kit:
    """The share kit as written: where, and each outlet's part."""

    folder: Path
    outlets: list[SharedOutlet] = field(default_factory=list)
    image: str = ""


@dataclass(frozen=True)
class Blurb:
    """What every outlet's text says: a headline, two lines and a picture."""

    headline: str
    lines: tuple[str, str]
    image: EmailImage | None = None     # the picture as published, to copy into the kit
    image_url: str = ""
    image_alt: str = ""


def blurb(issue: model.Issue, images: list[EmailImage], *, tracking_url: str,
          assets_url: str = "") -> Blurb:
    """The headline (the newsletter's name and edition), the preheader and who publishes it
    when, and the issue's first article picture (else the logo), at the address it is
    published at (``images``: the issue's published images)."""
    from newsletter.render.email import date_text

    first = issue.preheader or issue.title
    second = f"{issue.edition}, {date_text(issue.date)}, from {issue.sender.name}."
    picture: tuple[str, str] | None = None
    for section in issue.sections:
        if isinstance(section, model.Article) and section.image is not None:
            picture = (section.image.src, section.image.alt)
            break
    if picture is None and issue.theme.logo is not None:
        picture = (issue.theme.logo.src, issue.theme.logo.alt)
    found, url, alt = None, "", ""
    if picture is not None:
        src, alt = picture
        found = next((image for image in images if image.src == src), None)
        if found is not None:
            url = image_url(found.name, tracking_url, assets_url)
        elif src.startswith(("https://", "http://")):
            url = src
    return Blurb(headline=f"{issue.title}: {issue.edition}", lines=(first, second),
                 image=found, image_url=url, image_alt=alt if url else "")


def outlet_text(b: Blurb, url: str) -> str:
    """The plain text an outlet pastes: headline, two lines, the link."""
    return f"{b.headline}\n\n{b.lines[0]}\n{b.lines[1]}\n\nRead it online: {url}\n"


def outlet_snippet(b: Blurb, url: str, image_src: str) -> str:
    """The HTML snippet an outlet pastes: picture, headline, two lines, link. Inline styles
    only (a partner's newsletter tool keeps those), every value escaped."""
    e = html.escape
    picture = ""
    if image_src:
        picture = (f'  <a href="{e(url)}"><img src="{e(image_src)}" alt="{e(b.image_alt)}" '
                   'width="560" style="display:block;width:100%;max-width:560px;height:auto;'
                   'border:0"></a>\n')
    return (
        '<div style="font-family:Arial,Helvetica,sans-serif;max-width:560px;color:#1f2328">\n'
        f"{picture}"
        f'  <h2 style="font-size:22px;line-height:1.3;margin:12px 0 8px">'
        f'<a href="{e(url)}" style="color:#1d4f91">{e(b.headline)}</a></h2>\n'
        f'  <p style="font-size:16px;line-height:1.5;margin:0 0 4px">{e(b.lines[0])}</p>\n'
        f'  <p style="font-size:14px;line-height:1.5;margin:0 0 12px;color:#4b5563">'
        f'{e(b.lines[1])}</p>\n'
        f'  <p style="font-size:16px;margin:0"><a href="{e(url)}" style="color:#1d4f91">'
        "Read the newsletter online</a></p>\n"
        "</div>\n")


def write_qr(url: str, kind: str, png: Path, svg: Path, title: str) -> None:
    """The QR code of ``url`` as a PNG and an SVG of the size :data:`QR_SIZES` gives ``kind``.

    Error correction M (15% of the code may be damaged or dirty and still read); whole
    pixels per module in the PNG, so no module is blurred when it is printed at its dpi.
    """
    import segno

    code = segno.make_qr(url, error="m")
    modules = code.symbol_size(scale=1, border=QR_BORDER)[0]
    millimetres, dpi = QR_SIZES[kind]
    scale = max(1, round(millimetres / MM_PER_INCH * dpi / modules))
    code.save(str(png), kind="png", scale=scale, border=QR_BORDER, dpi=dpi)
    code.save(str(svg), kind="svg", scale=millimetres / modules, unit="mm", border=QR_BORDER,
              title=title)


def fill_kit(folder: Path, issue: model.Issue, outlets: tuple[Outlet, ...], *,
             tracking_url: str, root: Path, images: list[EmailImage], assets_url: str = "",
             shown_as: Path | None = None) -> Kit:
    """Write the kit's files into the empty ``folder``; ``shown_as`` is where the folder
    will be once moved into place (for the paths the kit reports)."""
    b = blurb(issue, images, tracking_url=tracking_url, assets_url=assets_url)
    final = shown_as or folder
    kit = Kit(folder=final)
    image_src = b.image_url
    if b.image is not None:
        kit.image = b.image.name
        (folder / kit.image).write_bytes(b.image.data)
    for outlet in outlets:
        url = view_url(tracking_url, issue.slug, outlet.id)
        (folder / f"{outlet.id}.txt").write_text(outlet_text(b, url), encoding="utf-8")
        (folder / f"{outlet.id}.html").write_text(outlet_snippet(b, url, image_src),
                                                  encoding="utf-8")
        png = svg = ""
        if outlet.has_qr:
            write_qr(url, outlet.kind, folder / f"{outlet.id}-qr.png",
                     folder / f"{outlet.id}-qr.svg", title=f"{b.headline}: {outlet.name}")
            png = _relative(final / f"{outlet.id}-qr.png", root)
            svg = _relative(final / f"{outlet.id}-qr.svg", root)
        kit.outlets.append(SharedOutlet(outlet, url, _relative(final / f"{outlet.id}.txt", root),
                                        _relative(final / f"{outlet.id}.html", root), png, svg))
    (folder / "README.txt").write_text(_readme(issue, kit, b), encoding="utf-8")
    return kit


def write_kit(issue: model.Issue, outlets: tuple[Outlet, ...], *, tracking_url: str,
              root: Path, build_dir: Path, images: list[EmailImage],
              assets_url: str = "") -> Kit:
    """Write ``build_dir/<slug>/share/`` for ``outlets``, replacing any earlier kit whole."""
    folder = build_dir / issue.slug / "share"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".share.", dir=folder.parent))
    except OSError as exc:
        raise NewsletterError(f"{folder.parent}: cannot create the build folder: "
                              f"{exc.strerror}",
                              hint="check the folder's permissions and free disk space") from exc
    try:
        kit = fill_kit(staging, issue, outlets, tracking_url=tracking_url, root=root,
                       images=images, assets_url=assets_url, shown_as=folder)
        swap_in(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise NewsletterError(f"{folder}: cannot write the share kit: {exc.strerror}",
                              hint="check free disk space and permissions") from exc
    return kit


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _readme(issue: model.Issue, kit: Kit, b: Blurb) -> str:
    lines = [f"Share kit for {b.headline} ({issue.slug})", "",
             "Each outlet has its own link: views and downloads through it are counted for",
             "that outlet, and for nobody in particular (no personal data is in the link).", ""]
    for shared in kit.outlets:
        o = shared.outlet
        lines += [f"{o.name} ({o.kind})", f"  link:  {shared.url}",
                  f"  text:  {o.id}.txt    HTML snippet: {o.id}.html"]
        if shared.qr_png:
            size = QR_SIZES[o.kind][0]
            lines.append(f"  QR code: {o.id}-qr.png, {o.id}-qr.svg ({size:.0f} mm wide; the "
                         "SVG prints sharp at any size)")
        lines.append("")
    if kit.image:
        lines.append(f"Picture: {kit.image} (the snippet loads it from {b.image_url}; upload "
                     "it with the snippet if your system does not show pictures from other "
                     "sites)")
    return "\n".join(lines) + "\n"
