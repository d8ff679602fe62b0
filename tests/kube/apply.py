"""Server-side apply's field ownership, as the emulator keeps it (KEP-555, simplified: lists are
atomic, as for `x-kubernetes-list-type: atomic`). Each manager owns field paths; an apply sets
the fields it sends and drops those it sent before but no longer does; a field another manager
owns with another value is a conflict unless `force`. Other writes (create, update, patch) make
their manager the owner of what they touched, without conflicts, as the API server does."""

from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]
JSON = dict[str, Any]
# What a client does not own: the server's own metadata, and the object's identity.
_SERVER_FIELDS = {("metadata", k) for k in ("name", "namespace", "uid", "resourceVersion",
                  "generation", "creationTimestamp", "managedFields")} | {("status",)}  # fmt: skip


def leaf_paths(obj: Any, prefix: Path = ()) -> set[Path]:
    """The paths of `obj`'s leaves; a list or an empty mapping is a leaf."""
    if isinstance(obj, dict) and obj:
        out: set[Path] = set()
        for k, v in obj.items():
            path = (*prefix, str(k))
            if path in _SERVER_FIELDS or path[:1] in (("apiVersion",), ("kind",)):
                continue
            out |= leaf_paths(v, path)
        return out
    return {prefix} if prefix else set()


def value_at(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _remove(obj: JSON, path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for parent, key in zip(reversed(parents[:-1]), reversed(path[:-1]), strict=True):
        if parent.get(key) == {}:  # a mapping emptied by the removal goes too
            parent.pop(key)


def _set(obj: JSON, path: Path, value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def to_fields_v1(paths: set[Path]) -> JSON:
    root: JSON = {}
    for path in sorted(paths):
        node = root
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return root


def from_fields_v1(fields: JSON, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in fields.items():
        path = (*prefix, key.removeprefix("f:"))
        out |= from_fields_v1(sub, path) if sub else {path}
    return out


def owners(obj: JSON) -> dict[str, tuple[str, set[Path]]]:
    """manager -> (operation, paths)."""
    return {e["manager"]: (e["operation"], from_fields_v1(e.get("fieldsV1") or {}))
            for e in obj.get("metadata", {}).get("managedFields") or []}  # fmt: skip


def _entries(owned: dict[str, tuple[str, set[Path]]], api_version: str) -> list[JSON]:
    return [
        {"manager": m, "operation": op, "apiVersion": api_version, "fieldsType": "FieldsV1",
         "fieldsV1": to_fields_v1(paths)}
        for m, (op, paths) in owned.items() if paths
    ]  # fmt: skip


def apply(old: JSON | None, config: JSON, manager: str, force: bool) -> tuple[JSON, list[str]]:
    """The object after `manager` applies `config`, and the conflicts (empty when applied)."""
    sent = leaf_paths(config)
    owned = owners(old) if old else {}
    current = copy.deepcopy(old) if old else {"metadata": {}}
    conflicts = sorted(
        f'conflict with "{other}": .{".".join(path)}'
        for other, (_, paths) in owned.items() if other != manager
        for path in sent & paths if value_at(current, path) != value_at(config, path)
    )  # fmt: skip
    if conflicts and not force:
        return current, conflicts
    before = owned.get(manager, ("Apply", set()))[1]
    others = set().union(*(p for m, (_, p) in owned.items() if m != manager))
    for path in before - sent - others:  # no longer applied, and nobody else's: pruned
        _remove(current, path)
    for path in sent:
        _set(current, path, value_at(config, path))
    for other, (op, paths) in list(owned.items()):  # forced: the fields change hands
        if other != manager:
            taken = {p for p in paths & sent if value_at(old, p) != value_at(config, p)}
            owned[other] = (op, paths - taken)
    owned[manager] = ("Apply", sent)
    for key in ("apiVersion", "kind"):
        current[key] = config.get(key, current.get(key))
    current.setdefault("metadata", {})["managedFields"] = _entries(owned, config.get(
        "apiVersion", ""))  # fmt: skip
    return current, []


def record_update(old: JSON | None, new: JSON, manager: str) -> JSON:
    """`new` with `manager` owning the fields this (non-apply) write changed."""
    owned = owners(old) if old else {}
    changed = {p for p in leaf_paths(new) if old is None or value_at(old, p) != value_at(new, p)}
    for other, (op, paths) in list(owned.items()):
        owned[other] = (op, paths - changed)
    op, mine = owned.get(manager, ("Update", set()))
    owned[manager] = ("Update" if op != "Apply" else op, mine | changed)
    new.setdefault("metadata", {})["managedFields"] = _entries(owned, new.get("apiVersion", ""))
    return new
