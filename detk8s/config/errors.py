"""Pydantic validation errors as one-line messages that name the file and key to edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from detk8s.config.layered import Layered
from detk8s.errors import ConfigError


def config_errors(
    exc: ValidationError, layered: Layered, file: Path, prefix: tuple[str, ...] = ()
) -> list[ConfigError]:
    """One error per problem; `prefix` is where the validated mapping sits in the file."""
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(str(p) for p in err["loc"])
        # Missing keys belong to the file being loaded; anything else to the file that set it.
        origin = file if err["type"] == "missing" else layered.origin_of(loc, file)
        out.append(ConfigError(origin, ".".join(loc) or None, _message(err)))
    return out


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg: str = err["msg"].removeprefix("Value error, ")
    if msg[:2].istitle():  # "Input should ..." reads as "gpus: input should ..."
        msg = msg[0].lower() + msg[1:]
    if kind != "value_error":
        msg += f" (got {_short(err.get('input'))})"
    return msg


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
