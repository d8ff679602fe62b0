"""Every YAML file detk8s reads or writes goes through here: PyYAML's C loader and dumper where
it has them, and read errors as one line naming the file.

Config files are read strictly, since they may be anything: bounded in size, UTF-8 text,
duplicate keys refused (PyYAML keeps the last silently), numbers finite and not rounded to 0,
and aliases bounded in what they expand to (an alias bomb is a few lines)."""

from __future__ import annotations

import errno
import math
import re
from pathlib import Path
from typing import Any

import yaml

from detk8s.errors import ConfigError

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAMLError = yaml.YAMLError

MAX_CONFIG_BYTES = 1 << 20  # a run config is a screenful; anything near this is not one
MAX_VALUES = 100_000  # scalars, lists and mappings, counted through aliases
_NONZERO_DIGIT = re.compile(r"[1-9]")


class StrictLoader(Loader):
    """Refuses duplicate keys and numbers that are not finite or underflow to 0."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})",
                    key_node.start_mark,
                )  # fmt: skip
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value: float = super().construct_yaml_float(node)
        text = str(node.value)
        if not math.isfinite(value):
            problem = f"{text} is not a finite number"
        elif value == 0 and _NONZERO_DIGIT.search(text.lower().split("e")[0]):
            problem = f"{text} is too small: it rounds to 0"
        else:
            return value
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
# YAML 1.2's floats too: PyYAML (YAML 1.1) reads `lr: 1e-3` as the text "1e-3", which a number
# key would refuse, as values are taken as typed.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
StrictLoader.add_constructor(
    "tag:yaml.org,2002:map",
    lambda loader, node: loader.construct_mapping(node, deep=True),
)


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


def load_rendered(text: str) -> Any:
    """A manifest detk8s rendered from its own templates: trusted YAML 1.2 whose values are all
    `tojson`, read by a compiled parser (PyYAML builds each node in Python: most of a render)."""
    import yaml_rs

    return yaml_rs.loads(text)


def load_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None]


def dump(data: Any, dumper: type[yaml.SafeDumper] = PlainDumper, **options: Any) -> str:
    options.setdefault("sort_keys", False)
    return yaml.dump(data, Dumper=dumper, **options)


def dump_all(docs: list[Any], dumper: type[yaml.SafeDumper] = BlockDumper, **options: Any) -> str:
    options.setdefault("sort_keys", False)
    return yaml.dump_all(docs, Dumper=dumper, **options)


def read_config_text(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """A config file's text, or a one-line ConfigError naming the file and what is wrong."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, not a file") from None
    except OSError as e:
        why = "a symlink loop" if e.errno == errno.ELOOP else e.strerror or str(e)
        raise ConfigError(path, None, f"cannot read: {why}") from None
    if len(data) > limit:
        raise ConfigError(path, None, f"larger than {limit // 1024} KiB: not a config file")
    if b"\0" in data:
        raise ConfigError(path, None, "binary data (NUL bytes): not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"not UTF-8 text (byte {data[e.start]:#04x} at offset "
                                      f"{e.start})") from None  # fmt: skip


def read_mapping(path: Path, empty_ok: bool = False) -> dict[str, Any]:
    """One YAML mapping from a config file, or a one-line ConfigError naming the file. An
    empty file is {} where `empty_ok` (every key has a default), else an error."""
    text = read_config_text(path)
    try:
        data = load(text, StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(path, None, f"{where}{problem}") from None
    except RecursionError:
        raise ConfigError(path, None, "nested too deeply") from None
    if data is None:
        if empty_ok:
            return {}
        raise ConfigError(path, None, "empty: expected a mapping of settings")
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"must be a mapping, got {type(data).__name__}")
    if count_values(data, MAX_VALUES) > MAX_VALUES:
        raise ConfigError(path, None, f"expands to more than {MAX_VALUES:,} values (through "
                                      "YAML aliases?): not a config file")  # fmt: skip
    return data


def count_values(data: Any, budget: int) -> int:
    """How many values `data` holds, counting shared (aliased) ones each time they appear;
    stops counting past `budget`."""
    count, stack = 0, [data]
    while stack and count <= budget:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count
