"""The ``newsletter`` command. Thin: each command parses options and calls one module.

Commands live one group a file (``cli/build.py``, ``cli/send.py``...), registered below.
Any :class:`~newsletter.errors.NewsletterError` becomes a message on stderr and exit code 1,
never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter import __version__
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.project import Project

# Command name -> the module under newsletter/cli/ that defines it (in its COMMANDS list).
# Modules are imported only when their command runs, so `newsletter build` does not pay for
# the database, server and HTTP libraries that `send` and `track` need.
COMMAND_MODULES = {
    "new": "build",
    "check": "build",
    "build": "build",
    "preview": "preview",
    "audiences": "send",
    "send": "send",
    "amend": "send",
    "publish": "publish",
    "doctor": "doctor",
    "track": "track",
    "report": "report",
    "share": "share",
    "bounces": "bounces",
    "suppressions": "suppressions",
}


class _Group(click.Group):
    """Lazily loaded commands; user-caused errors become messages instead of tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"newsletter.cli.{module_name}")
        for command in module.COMMANDS:
            self.add_command(command)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(exc.format(), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            # The database failed under a command (down, locked, full, read-only) after the
            # waiting each command does: a message, never a traceback.
            if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
                raise
            from newsletter.db import storage_error

            click.echo(storage_error(exc).format(), err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
@click.option("--project", "project_dir", metavar="DIR", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="The project folder (default: the one holding ISSUE, else the one around "
              "the current folder).")
def main(project_dir: Path | None) -> None:
    """Author, check, build, preview, send and measure a partner newsletter.

    Issues are YAML files in issues/. Start with:

    \b
        newsletter new            # scaffold the next issue
        newsletter check ISSUE    # find every problem at once
        newsletter build ISSUE    # write build/<slug>/email.html and friends

    Example:

        newsletter --project ~/prevent-newsletter check 2026-spring
    """


def load_project(issue: str | Path | None = None) -> Project:
    """The project a command works on: ``--project DIR``, else the one holding the ISSUE file
    (walking up to ``newsletter.yaml``), else the one around the current folder."""
    from newsletter.project import Project

    context = click.get_current_context(silent=True)
    chosen = context.find_root().params.get("project_dir") if context else None
    return Project.locate(chosen, issue)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
