"""Errors a user can act on: each prints as one line and maps to an exit code."""

from __future__ import annotations

import os
from pathlib import Path

EXIT_FAILED = 1  # the thing ran and failed (a job failed, a build failed)
EXIT_USAGE = 2  # bad input: a config, an argument


def display_path(file: Path | str) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = Path(file)
    try:
        return str(Path(os.path.normpath(path.absolute())).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def first_line(value: object) -> str:
    """An error (or its reason) as one line: its text's first line, else its type's name."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


class DetkError(Exception):
    """An error shown to the user as one line, never as a traceback."""

    exit_code = EXIT_FAILED


class ConfigError(DetkError):
    """A problem in a config file, located by file and key."""

    exit_code = EXIT_USAGE

    def __init__(self, file: Path | str, key: str | None, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str | None, str]]:
        return ConfigError, (self.file, self.key, self.message)  # pickled whole (a forked child's)

    def __str__(self) -> str:
        file = display_path(self.file)
        where = f"{file}: {self.key}" if self.key else file
        return f"{where}: {self.message}"


class ConfigErrors(DetkError):
    """Several config problems found in one pass, reported one per line."""

    exit_code = EXIT_USAGE

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class UsageError(DetkError):
    exit_code = EXIT_USAGE
