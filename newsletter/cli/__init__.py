"""The ``newsletter`` command. Thin: each command parses options and calls one module.

Commands live one group a file (``cli/build.py``, ``cli/send.py``...), registered below.
Any :class:`~newsletter.errors.NewsletterError` becomes a message on stderr and exit code 1,
never a traceback.
"""

from __future__ import annotations

import sys

import click

from newsletter import __version__
from newsletter.errors import NewsletterError


class _Group(click.Group):
    """A group that turns user-caused errors into messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(exc.format(), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
def main() -> None:
    """Author, check, build, preview, send and measure a partner newsletter.

    Issues are YAML files in issues/. Start with:

        newsletter new            # scaffold the next issue
        newsletter check ISSUE    # find every problem at once
        newsletter build ISSUE    # write build/<slug>/email.html and friends
    """


def _register() -> None:
    from newsletter.cli import build as _build
    from newsletter.cli import report as _report
    from newsletter.cli import send as _send
    from newsletter.cli import track as _track

    for module in (_build, _track, _report, _send):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
