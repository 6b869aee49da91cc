"""The exceptions a user can cause, and how they are shown.

::

    NewsletterError                 anything the CLI turns into a message and exit code 1
    ├── InvalidIssue                an issue file with problems (carries every Problem)
    ├── InvalidSettings             newsletter.yaml with problems
    ├── InvalidAudiences            audiences.yaml or a members CSV with problems
    ├── ConfigurationError          a missing or wrong setting (names every place to set it)
    ├── NotSupported                "ADAPTER does not support FEATURE"
    └── StorageError                the database cannot be opened or migrated

A :class:`Problem` is one located finding, printed as ``file:line:column: message`` with an
optional hint on the next line. Errors stop a build; warnings do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


def display_path(path: Path) -> str:
    """How a file is named in messages: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in a user's file, with where it is and what to do about it."""

    file: str
    line: int
    column: int
    message: str
    hint: str = ""
    severity: Severity = "error"

    def format(self) -> str:
        """Render as ``file:line:column: severity: message`` plus an indented hint line."""
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class NewsletterError(Exception):
    """Base of every error a user can cause; the CLI prints it without a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        """The message, with the hint on its own line when there is one."""
        return self.message + (f"\n    hint: {self.hint}" if self.hint else "")


class _ProblemsError(NewsletterError):
    """An error carrying several located problems, all reported at once."""

    noun = "file"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in the {self.noun}")

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)


class InvalidIssue(_ProblemsError):
    """The issue YAML has at least one error."""

    noun = "issue"


class InvalidSettings(_ProblemsError):
    """newsletter.yaml has at least one error."""

    noun = "settings"


class InvalidAudiences(_ProblemsError):
    """audiences.yaml or a members file has at least one error."""

    noun = "audiences"


class ConfigurationError(NewsletterError):
    """A setting is missing or wrong; the message names every place it can be set."""


class NotSupported(NewsletterError):
    """An adapter was asked for a feature it cannot do."""

    def __init__(self, adapter: str, feature: str) -> None:
        super().__init__(f"{adapter} does not support {feature}")


class StorageError(NewsletterError):
    """The database cannot be opened, migrated or written."""
