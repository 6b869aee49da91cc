"""``newsletter preview``: the issue in the browser, rebuilt on every save."""

from __future__ import annotations

import contextlib
import threading
import webbrowser
from pathlib import Path

import click

from newsletter import preview as preview_module
from newsletter.cli import load_project
from newsletter.cli.build import issue_argument
from newsletter.errors import NewsletterError


def _echo(message: str, is_error: bool) -> None:
    click.echo(message, err=is_error)


@click.command()
@issue_argument
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (0: any free one).  [default: 8000, or the next free one]")
@click.option("--host", default=preview_module.DEFAULT_HOST, show_default=True,
              help="Address to listen on. Anything but 127.0.0.1 lets other machines see "
                   "the draft.")
@click.option("--no-browser", is_flag=True, help="Print the address but do not open a browser.")
def preview(issue: Path, port: int | None, host: str, no_browser: bool) -> None:
    """Preview ISSUE in the browser while you edit it.

    Shows the email at phone (375 px) and desktop (800 px) widths, the plain text, the inbox
    line, every link and the warnings. Each time you save the issue, the theme, a template or
    an image it uses, the page updates by itself. Links are not tracked and no mail is sent.
    Stop with Ctrl-C.

    Example:

        newsletter preview issues/2026-spring.yaml
    """
    project = load_project(issue)
    issue = project.issue_path(issue)
    if not issue.is_file():
        known = ", ".join(sorted(p.stem for p in project.issues_dir.glob("*.yaml"))) or "none"
        raise NewsletterError(f"{issue}: no such issue file",
                              hint="give a path such as issues/2026-spring.yaml, or a slug; "
                                   f"issues in {project.issues_dir}: {known}")
    sock = preview_module.bind(host, port)
    try:
        app = preview_module.create_app(issue, project, echo=_echo,
                                        hosts_allowed=preview_module.allowed_hosts(host))
    except BaseException:
        sock.close()
        raise
    url = preview_module.url_for(sock)
    name = app.state.preview.display(issue)

    def started() -> None:
        click.echo(f"Previewing {name} at {url}  (Ctrl-C to stop)")
        if host not in preview_module.LOOPBACK_NAMES:
            click.echo(f"Note: listening on {host}, so other machines can see this draft.",
                       err=True)
        if not no_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    server = preview_module.PreviewServer(app, sock, on_started=started)
    # uvicorn shuts down cleanly on Ctrl-C, then raises it again for us: that is the way out.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    click.echo("Preview stopped.")


COMMANDS = [preview]
