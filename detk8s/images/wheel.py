"""detk8s as a wheel, built from the package that is running: how the training image gets the
same detk8s as the machine that renders its jobs, whether that is a source checkout or an
installed wheel. Deterministic (sorted entries, fixed timestamps): the same files give the same
bytes, and the image tag can hash the files instead of the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import zipfile
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path

from detk8s import __version__
from detk8s.errors import DetkError
from detk8s.paths import DATA_DIR, PACKAGE_DIR, SOURCE_ROOT

NAME = "detk8s"
STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
WHEEL_TEXT = "Wheel-Version: 1.0\nGenerator: detk8s\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
_SKIP = ("__pycache__", ".pytest_cache")


class WheelError(DetkError):
    pass


def wheel_name() -> str:
    return f"{NAME}-{__version__}-py3-none-any.whl"


@cache
def package_files() -> Mapping[str, Path]:
    """Archive name -> file: the package, and its data dirs under detk8s/_data as the wheel
    pyproject.toml describes carries them (from the checkout, when running from one). Once per
    process: an image tag and the wheel both need it."""
    files = {f"{NAME}/{rel}": p for rel, p in _tree(PACKAGE_DIR)}
    if not (PACKAGE_DIR / DATA_DIR).is_dir():  # a source checkout: the force-include table
        for source, target in _force_include().items():
            src = SOURCE_ROOT / source
            found = [("", src)] if src.is_file() else _tree(src)
            files |= {f"{target}/{rel}".rstrip("/"): p for rel, p in found}
    return dict(sorted(files.items()))


def _tree(root: Path) -> list[tuple[str, Path]]:
    """(path relative to `root`, file) for the files under it, without caches and bytecode."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP]
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        out += [(prefix + n, Path(folder, n)) for n in names if not n.endswith((".pyc", ".pyo"))]
    return out


def _force_include() -> dict[str, str]:
    import tomllib

    project = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    table: dict[str, str] = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    return table


def _dist_info(name: str) -> str | None:
    try:
        return metadata.distribution(NAME).read_text(name)
    except metadata.PackageNotFoundError:
        return None


def _core_metadata() -> str | None:
    """What pip needs of METADATA (no long description: the wheel is the same whether detk8s
    was installed editable from a checkout or from a wheel)."""
    try:
        meta = metadata.metadata(NAME)
    except metadata.PackageNotFoundError:
        return None
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {__version__}"]
    for key in ("Requires-Python", "Provides-Extra", "Requires-Dist"):
        lines += [f"{key}: {value}" for value in meta.get_all(key) or []]
    return "\n".join(lines) + "\n"


def write_wheel(directory: Path) -> Path:
    """The wheel of the running detk8s in `directory`."""
    meta = _core_metadata()
    if meta is None:
        raise WheelError(f"{NAME} is not installed in {sys.prefix}: no metadata for its wheel")
    entry_points = _dist_info("entry_points.txt") or ""
    info = f"{NAME}-{__version__}.dist-info"
    contents = {name: path.read_bytes() for name, path in package_files().items()}
    contents |= {f"{info}/METADATA": meta.encode(), f"{info}/WHEEL": WHEEL_TEXT.encode(),
                 f"{info}/entry_points.txt": entry_points.encode()}  # fmt: skip
    record = [f"{n},sha256={_b64(hashlib.sha256(d).digest())},{len(d)}" for n, d in
              contents.items()]  # fmt: skip
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / wheel_name()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in contents.items():
            entry = zipfile.ZipInfo(name, STAMP)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return path


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
