"""Pydantic validation errors as one-line messages that name the file and key to edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from detk8s.config.layered import Layered
from detk8s.credentials import credential_kind, credential_name
from detk8s.errors import ConfigError


def config_errors(
    exc: ValidationError, layered: Layered, file: Path, prefix: tuple[str, ...] = ()
) -> list[ConfigError]:
    """One error per problem; `prefix` is where the validated mapping sits in the file."""
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(str(p) for p in err["loc"] if p != "[key]")
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
    if msg[:1].isupper() and msg[1:2].islower():  # "Input should" reads "gpus: input should"
        msg = msg[0].lower() + msg[1:]
    if kind != "value_error":
        msg += f" (got {_shown(err['loc'], err.get('input'))})"
    if kind in _NUMBER_TYPES and _is_quoted_number(err.get("input")):
        msg += ": write the number without quotes"
    return msg


# Values are read as YAML typed them (as Kubernetes reads manifests): "2" is text, not a number.
_NUMBER_TYPES = {"int_type", "float_type"}


def _is_quoted_number(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


# Where a value may be a credential: never echoed, not even its start.
_SECRET_HOMES = {"env", "secret_env", "build_args", "extra_args"}


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    text = repr(value)
    if (
        _SECRET_HOMES & {str(p) for p in loc}
        or credential_kind(text)
        or (loc and credential_name(str(loc[-1])))
    ):
        return "a value not shown here"
    return text if len(text) <= 40 else text[:37] + "..."
