"""Check and build an issue: load -> render -> files in ``build/<slug>/``.

Output is written to a temporary folder beside the destination and moved into place, so a
failed build never leaves half-written files and a reader never sees a mix of two builds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import model
from newsletter.errors import InvalidIssue, NewsletterError, Problem
from newsletter.fixed import duplicate_slugs
from newsletter.images import EmailImage, image_url, prepare_images
from newsletter.links import Link, links_json, web_file
from newsletter.load import load_issue
from newsletter.outlets import Outlet
from newsletter.project import Project
from newsletter.render.email import render_issue
from newsletter.render.web import add_head_tags, page_meta

GMAIL_CLIP_BYTES = 100 * 1024


@dataclass
class BuiltIssue:
    """A rendered issue, ready to write, preview or send."""

    issue: model.Issue
    mjml: str
    html: str
    text: str
    web_html: str
    links: list[Link]
    warnings: list[Problem]
    dependencies: list[Path]
    tracking_url: str
    root: Path | None = None
    email_images: list[EmailImage] = field(default_factory=list)
    # The project's outlets (newsletter.yaml): the build writes their share kit, and send
    # registers them with the tracker.
    outlets: tuple[Outlet, ...] = ()
    assets_url: str = ""

    @property
    def images(self) -> list[str]:
        """Project-relative paths of the local images the email shows (copied beside it)."""
        sources = [s.image.src for s in self.issue.sections
                   if isinstance(s, model.Article) and s.image]
        if self.issue.theme.logo:
            sources.append(self.issue.theme.logo.src)
        return sorted({src for src in sources if "://" not in src})

    def image_urls(self) -> dict[str, str]:
        """Published name -> the absolute URL the email and web version load it from."""
        return {image.name: image_url(image.name, self.tracking_url, self.assets_url)
                for image in self.email_images}

    def files(self) -> dict[str, str]:
        """File name -> content, as written to ``build/<slug>/``."""
        return {
            "email.html": self.html,
            "email.mjml": self.mjml,
            "email.txt": self.text,
            # The page the tracker serves fills its links per outlet; this copy has them plain.
            "web.html": web_file(self.web_html, self.tracking_url, self.issue.slug,
                                 self.links),
            "links.json": links_json(self.issue.slug, self.issue.tracking, self.issue.opens,
                                     self.tracking_url, self.links),
        }




def build_issue(path: Path, project: Project, *, tracked: bool = True) -> BuiltIssue:
    """Validate and render the issue at ``path``; raise InvalidIssue listing every error.

    ``tracked=False`` renders links as their destinations and images as project-relative
    paths (for the preview).
    """
    issue, problems = load_issue(path, project)
    problems = problems + duplicate_slugs(project, path, issue.slug if issue else None)
    if issue is None or any(p.severity == "error" for p in problems):
        raise InvalidIssue(problems)
    email_images, image_problems = prepare_images(issue, project.root)
    problems = problems + image_problems
    if any(p.severity == "error" for p in image_problems):
        raise InvalidIssue(problems)
    assets_url = project.settings.assets_url if tracked else ""
    # The preview shows the project's own files; everything else loads the published copies.
    image_src = {image.src: image_url(image.name, project.tracking_url, assets_url)
                 for image in email_images} if tracked else {}
    template = project.templates_dir / "email.mjml.j2"
    if not template.is_file():
        raise NewsletterError(f"{template}: template not found",
                              hint="the project needs templates/email.mjml.j2 and "
                              "templates/email.txt.j2; copy them from the sample project")
    try:
        rendered = render_issue(issue, project.templates_dir, tracking_url=project.tracking_url,
                                tracked=tracked, image_src=image_src)
    except NewsletterError:
        raise
    except Exception as exc:  # a broken template is the user's file too: name it, no traceback
        raise NewsletterError(f"templates/: rendering failed: {exc}",
                              hint="undo your last change to the templates folder") from exc
    web_html = rendered.web_html
    if tracked:
        web_html = add_head_tags(web_html, page_meta(
            issue, tracking_url=project.tracking_url, image_src=image_src,
            image_sizes={i.src: (i.width, i.height) for i in email_images},
            index=project.settings.search_engines))
    warnings = [p for p in problems if p.severity == "warning"]
    warnings += _rendered_problems(issue, rendered.html, tracked)
    built = BuiltIssue(issue=issue, mjml=rendered.mjml, html=rendered.html, text=rendered.text,
                       web_html=web_html, links=rendered.links, warnings=warnings,
                       dependencies=[], tracking_url=project.tracking_url, root=project.root,
                       email_images=email_images, assets_url=assets_url,
                       outlets=project.settings.outlets)
    built.dependencies = [p.resolve() for p in (path, project.theme_path, *rendered.templates,
                                                *(project.root / src for src in built.images))]
    return built


def swap_in(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` in ``target``'s place: the old folder is moved aside
    first and deleted after, so ``target`` is always a whole build (or kit), old or new."""
    os.chmod(staging, 0o755)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / "previous")
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _rendered_problems(issue: model.Issue, html: str, tracked: bool) -> list[Problem]:
    """What only the rendered email shows: a feedback question the templates leave out (an
    error), an email Gmail would clip (a warning)."""
    if issue.feedback is not None and tracked and "{{feedback:yes}}" not in html:
        raise NewsletterError(
            f"{issue.source}: the issue asks for feedback, but templates/email.mjml.j2 does not "
            "show the question", hint="copy templates/ from the sample project (its footer "
            "shows the question), or remove 'feedback:' from the issue")
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        return [Problem(issue.source, 1, 1, f"the built email is {size // 1024} KB; Gmail "
                        "clips messages over about 100 KB", "shorten the issue or link to the "
                        "web version for long articles", "warning")]
    return []


def write_build(built: BuiltIssue, out_dir: Path) -> Path:
    """Write ``built`` to ``out_dir/<slug>/`` atomically; return that folder."""
    target = out_dir / built.issue.slug
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{built.issue.slug}.", dir=out_dir))
    except OSError as exc:
        raise NewsletterError(f"{out_dir}: cannot create the output folder: {exc.strerror}",
                              hint="choose another folder with --out") from exc
    try:
        for name, content in built.files().items():
            (staging / name).write_text(content, encoding="utf-8", newline="\n")
        if built.root is not None:
            # Copied beside email.html so the file opens with its images from the build folder.
            for src in built.images:
                destination = staging / src
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(built.root / src, destination)
        if built.email_images:
            # The copies as published (sized for email, named by content): what `publish`
            # stores and what goes to a CDN when assets_url names one.
            (staging / "assets").mkdir()
            for image in built.email_images:
                (staging / "assets" / image.name).write_bytes(image.data)
        if built.outlets and built.root is not None:
            # Rebuilt with the issue, so a kit is never older than the issue it shares.
            from newsletter.share import fill_kit

            (staging / "share").mkdir()
            fill_kit(staging / "share", built.issue, built.outlets,
                     tracking_url=built.tracking_url, root=built.root,
                     images=built.email_images, assets_url=built.assets_url)
        swap_in(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise NewsletterError(f"{target}: cannot write the build: {exc.strerror}",
                              hint="check free disk space and permissions, or use --out") from exc
    return target
