"""Documentation kept true: every command has help with an example and is in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from newsletter.cli import COMMAND_MODULES, main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(main)
    found = []
    for name in sorted(COMMAND_MODULES):
        command = main.get_command(ctx, name)
        assert command is not None, f"{name} is registered but not defined"
        found.append((name, command))
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", command.commands[sub]) for sub in command.commands]
    return found


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda v: str(v))
def test_command_has_help_with_an_example(name: str, command: click.Command) -> None:
    assert command.help, f"newsletter {name} has no help"
    assert "Example" in command.help, f"newsletter {name}'s help has no Example"


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_command_is_in_the_readme(name: str) -> None:
    assert f"newsletter {name}" in README
