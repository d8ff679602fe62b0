"""Every YAML file detk8s reads or writes goes through here: PyYAML's C loader and dumper where
it has them, and read errors as one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from detk8s.errors import ConfigError

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAMLError = yaml.YAMLError


class PlainDumper(Dumper):
    """No &anchors/*aliases: files written for people (and ppdet) to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class BlockDumper(Dumper):
    """Multi-line strings as readable `|` blocks (manifests with files inside)."""


def _block_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


BlockDumper.add_representer(str, _block_str)


def load(text: str, loader: type[yaml.SafeLoader] = Loader) -> Any:
    return yaml.load(text, Loader=loader)


def load_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None]


def dump(data: Any, dumper: type[yaml.SafeDumper] = PlainDumper, **options: Any) -> str:
    options.setdefault("sort_keys", False)
    return yaml.dump(data, Dumper=dumper, **options)


def dump_all(docs: list[Any], dumper: type[yaml.SafeDumper] = BlockDumper, **options: Any) -> str:
    options.setdefault("sort_keys", False)
    return yaml.dump_all(docs, Dumper=dumper, **options)


def read_mapping(path: Path) -> dict[str, Any]:
    """One YAML mapping from a file (empty: {}), or a one-line ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    try:
        data = load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(path, None, f"{where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"must be a mapping, got {type(data).__name__}")
    return data
