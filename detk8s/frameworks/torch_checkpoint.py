"""The plain values of a `torch.save`d dict (YOLOX's `start_epoch`, `best_ap`, ...), read
without torch and without running anything the file names.

torch.save writes a zip whose `<name>/data.pkl` pickles the object; tensors are persistent ids
pointing at other members. This unpickles data.pkl with every class it names replaced by an
inert stand-in and every persistent id by None: the dict's numbers and strings come back, tensors
do not, and no module is imported (so a hostile file cannot execute code here). A file whose zip
directory does not read back is incomplete (torch writes the directory last).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

Plain = int | float | str | bool | None


class _Opaque:
    """Whatever the pickle builds that is not a plain value: a tensor, a storage, a class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _Inert(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return _Opaque

    def persistent_load(self, pid: Any) -> None:
        return None


def checkpoint_values(path: Path) -> dict[str, Plain] | None:
    """The top-level plain values of the checkpoint at `path`; None when it is not a whole
    torch.save zip of a dict."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                return None
            data = z.read(name)
        loaded = _Inert(io.BytesIO(data)).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError):
        return None
    if not isinstance(loaded, dict):
        return None
    return {k: v for k, v in loaded.items() if isinstance(k, str) and _plain(v)}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))
