"""YAML files that inherit from other YAML files through `_BASE_` (PaddleDetection's convention).

`_BASE_` is a path or a list of paths relative to the file. Bases merge depth-first in order, later
wins, dictionaries key by key, anything else replaced whole. Every key remembers the file that set
it last, so a validation error can name the file a user has to edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detk8s.errors import ConfigError
from detk8s.yaml_io import read_mapping

BASE_KEY = "_BASE_"

Key = tuple[str, ...]


@dataclass
class Layered:
    """A merged config and, for each key path, the file that set it."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[Key, Path] = field(default_factory=dict)

    def merge(self, data: dict[str, Any], origin: dict[Key, Path]) -> None:
        _merge_into(self.data, data, ())
        self.origin.update(origin)

    def overlay(self, other: Layered) -> None:
        self.merge(other.data, other.origin)

    def origin_of(self, key: Key, default: Path) -> Path:
        """The file that set `key`, or the nearest enclosing key that was set."""
        for n in range(len(key), 0, -1):
            if key[:n] in self.origin:
                return self.origin[key[:n]]
        return default


def _merge_into(dst: dict[str, Any], src: dict[str, Any], prefix: Key) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge_into(dst[k], v, (*prefix, k))
        else:
            dst[k] = _copy(v)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def key_origins(data: dict[str, Any], file: Path, prefix: Key = ()) -> dict[Key, Path]:
    out: dict[Key, Path] = {}
    for k, v in data.items():
        key = (*prefix, str(k))
        out[key] = file
        if isinstance(v, dict):
            out.update(key_origins(v, file, key))
    return out


MAX_DEPTH = 32  # of _BASE_ chains: deeper is a generated loop, not a config


class ParsedFiles:
    """Config files read once, by the path they were named by: a sweep's runs share bases."""

    def __init__(self) -> None:
        self._mappings: dict[Path, dict[str, Any]] = {}
        self._real: dict[Path, Path] = {}

    def mapping(self, path: Path) -> dict[str, Any]:
        """The file's mapping, a copy the caller may change."""
        if path not in self._mappings:
            self._mappings[path] = read_mapping(path)
        return _copy(self._mappings[path])

    def real(self, path: Path) -> Path:
        if path not in self._real:
            self._real[path] = path.resolve()
        return self._real[path]


def load_layered(
    path: Path, root: Path | None = None, files: ParsedFiles | None = None
) -> tuple[Layered, Layered]:
    """The file merged over its bases, and its bases alone (for checks that compare the two).
    Bases must stay inside `root` (the project), when given. `files` keeps what was read for
    the next call."""
    return _load(Path(path), (), root.resolve() if root else None, files or ParsedFiles())


def _load(
    path: Path, stack: tuple[Path, ...], root: Path | None, files: ParsedFiles
) -> tuple[Layered, Layered]:
    own = files.mapping(path)  # first: it names an unreadable file (a symlink loop) in one line
    stack = (*stack, files.real(path))
    bases = Layered()
    for base in _base_paths(path, own.pop(BASE_KEY, None), root):
        if files.real(base) in stack:  # the file that closes the loop is the one to fix
            chain = " -> ".join(p.name for p in (*stack, files.real(base)))
            raise ConfigError(path, BASE_KEY, f"inheritance cycle: {chain}")
        if len(stack) >= MAX_DEPTH:
            raise ConfigError(path, BASE_KEY, f"more than {MAX_DEPTH} levels of bases")
        full, _ = _load(base, stack, root, files)
        bases.overlay(full)
    merged = Layered(_copy(bases.data), dict(bases.origin))
    merged.merge(own, key_origins(own, path))
    return merged, bases


def _base_paths(path: Path, spec: Any, root: Path | None) -> list[Path]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(path, BASE_KEY, "must be a path or a list of paths")
    out = []
    for item in items:
        if Path(item).is_absolute():
            raise ConfigError(path, BASE_KEY, f"{item}: must be relative to this file")
        base = path.parent / item
        if root is not None and not _inside(base, root):
            raise ConfigError(path, BASE_KEY, f"{item}: leaves the project ({root})")
        if not os.path.lexists(base):
            raise ConfigError(path, BASE_KEY, f"{item} does not exist")
        out.append(base)
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.normpath(path.absolute())).relative_to(root)
    except ValueError:
        return False
    return True
