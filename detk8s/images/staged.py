"""The build context of the images detk8s ships, assembled for each build rather than read
from a checkout, so an installed detk8s builds them as well as a source checkout does:

    Dockerfile              detk8s's, with a target per image family (paddle, pytorch)
    requirements/           the pinned trainer stacks and the install scripts (images/), and
                            detk8s.txt: detk8s's own dependencies, from its metadata
    wheels/detk8s-*.whl     the running detk8s, as a wheel (images/wheel.py)
    configs/<framework>/    model configs: detk8s's, with the project's own of the same name
                            over them (what runs in the project were rendered against)

The tag hashes these by content without writing them; `materialize` writes them for a builder.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from importlib import metadata
from pathlib import Path

from detk8s.images.context import file_digest
from detk8s.images.wheel import NAME, package_files, wheel_name, write_wheel
from detk8s.paths import CONFIGS_DIR, DATA_DIR, data_path

DOCKERFILE = "Dockerfile"
REQUIREMENTS = "requirements"
WHEELS = "wheels"
WHEEL = f"{WHEELS}/{wheel_name()}"


# A file of the context: on disk, generated content, or None for the wheel (made with the context).
Source = Path | bytes | None


def staged_files(project_root: Path) -> dict[str, Source]:
    """Context path -> what it holds."""
    files: dict[str, Source] = {DOCKERFILE: data_path(DOCKERFILE)}
    for part in sorted(p for p in data_path("images").iterdir() if p.is_file()):
        files[f"{REQUIREMENTS}/{part.name}"] = part
    files[f"{REQUIREMENTS}/detk8s.txt"] = own_requirements()
    shipped = f"{NAME}/{DATA_DIR}/{CONFIGS_DIR}/"
    for name, path in package_files().items():
        if name.startswith(shipped):
            files[f"{CONFIGS_DIR}/{name.removeprefix(shipped)}"] = path
    for framework in {p.split("/")[1] for p in list(files) if p.startswith(CONFIGS_DIR + "/")}:
        ours = project_root / CONFIGS_DIR / framework
        if ours.is_dir():
            for f in sorted(p for p in ours.rglob("*") if p.is_file()):
                files[f"{CONFIGS_DIR}/{framework}/{f.relative_to(ours).as_posix()}"] = f
    files[WHEEL] = None
    return dict(sorted(files.items()))


def own_requirements(extras: tuple[str, ...] = ("s3",)) -> bytes:
    """detk8s's dependencies (with `extras`) as a requirements file, from its metadata."""
    lines = []
    for req in metadata.requires(NAME) or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra is None or extra.group(1) in extras:
            lines.append(spec.strip())
    return "".join(f"{line}\n" for line in sorted(lines)).encode()


def staged_digests(files: dict[str, Source]) -> dict[str, bytes]:
    return {rel: _digest(source) for rel, source in files.items()}


def _digest(source: Source) -> bytes:
    if source is None:
        return wheel_digest()
    if isinstance(source, bytes):
        return hashlib.sha256(source).digest()
    return file_digest(source)


def wheel_digest() -> bytes:
    """The wheel's by what goes into it: the same files make the same wheel."""
    h = hashlib.sha256(b"detk8s-wheel/1")
    for name, path in package_files().items():
        h.update(f"\0{name}\0".encode() + file_digest(path))
    return h.digest()


def materialize(files: dict[str, Source], dest: Path) -> Path:
    """Write the context into `dest` (an empty dir) for a builder."""
    for rel, source in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            write_wheel(target.parent)
        elif isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
    return dest
