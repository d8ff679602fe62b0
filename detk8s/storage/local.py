"""A directory as a bucket (file:// storage): writes go through a temp file and a rename, like an
S3 PUT, so a reader never sees half an object."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from detk8s.storage.base import DEFAULT_CONNECTION, Connection, Listing, StoredObject, local_path
from detk8s.util import replace_atomically


class LocalStorage:
    def __init__(self, uri: str, connection: Connection = DEFAULT_CONNECTION) -> None:
        self.uri = uri
        self.connection = connection
        parsed = urlparse(uri)
        # file://output (relative, the default) and file:///abs/path both work.
        self.root = Path(parsed.netloc + parsed.path) if parsed.scheme else Path(uri)

    def _path(self, key: str) -> Path:
        return local_path(self.root, key)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def get_many(
        self, keys: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[bytes | None]:
        found = []
        for key in keys:  # a local disk answers at once: no threads
            found.append(self.get(key))
            if progress:
                progress(1)
        return found

    def put(self, key: str, data: bytes) -> None:
        replace_atomically(self._path(key), lambda tmp: tmp.write_bytes(data))

    def upload(self, key: str, path: Path) -> None:
        replace_atomically(self._path(key), lambda tmp: shutil.copyfile(path, tmp))

    def download(self, key: str, path: Path) -> bool:
        src = self._path(key)
        if not src.is_file():
            return False
        replace_atomically(path, lambda tmp: shutil.copyfile(src, tmp))
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        # Any string prefix, as in S3: walk the directory part, filter on the whole.
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not _partial(name) and key.startswith(prefix):
                    yield _stored(key, full.stat())

    def children(self, prefix: str = "") -> Listing:
        base = self.root / prefix
        listing: Listing = ([], [])
        if not base.is_dir():
            return listing
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if entry.is_dir():
                listing[0].append(entry.name)
            elif entry.is_file() and not _partial(entry.name):
                listing[1].append(_stored(prefix + entry.name, entry.stat()))
        return listing

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _partial(name: str) -> bool:
    """A write in progress (util.replace_atomically's temp file)."""
    return name.startswith(".") and name.endswith(".tmp")


def _stored(key: str, st: os.stat_result) -> StoredObject:
    return StoredObject(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")
