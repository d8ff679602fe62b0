"""Conversions of a dataset into a trainer's layout are written next to the run once: a stamp
records what they were made from (the dataset's place, its list files, its label list), and a
conversion is redone only when that changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from detk8s.util import write_atomic

STAMP = ".converted"


def fingerprint(root: Path, lists: dict[str, Path], label_list: Path) -> str:
    """The list files' and label list's content, and where the dataset is."""
    h = hashlib.sha256(json.dumps([str(root), sorted((k, str(v)) for k, v in lists.items())])
                       .encode())  # fmt: skip
    for path in [label_list, *lists.values()]:
        h.update(path.read_bytes())
    return h.hexdigest()


def is_current(out: Path, stamp: str) -> bool:
    try:
        return (out / STAMP).read_text() == stamp
    except OSError:
        return False


def mark_current(out: Path, stamp: str) -> None:
    """Last, after everything else of the conversion is written."""
    write_atomic(out / STAMP, stamp)
