"""The storage interface and its two backends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import urlparse

from detk8s.errors import UsageError
from detk8s.util import replace_atomically


class StoredObject(NamedTuple):
    key: str  # relative to the storage root
    size: int
    etag: str  # changes whenever the content does (S3 ETag; mtime and size for files)


class Storage(Protocol):
    uri: str

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        ...

    def put(self, key: str, data: bytes) -> None: ...

    def upload(self, key: str, path: Path) -> None: ...

    def download(self, key: str, path: Path) -> bool:
        """Fetch to `path` (atomically); False when the object does not exist."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix`, keys relative to the root."""
        ...

    def delete(self, key: str) -> None: ...

    def sibling(self, uri: str) -> Storage:
        """Another location on the same service (endpoint, credentials): e.g. a dataset."""
        ...


def open_storage(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Storage:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from detk8s.storage.s3 import S3Storage

        return S3Storage(uri, endpoint_url=endpoint_url, region=region)
    if parsed.scheme == "file" or not parsed.scheme:
        return LocalStorage(uri)
    raise UsageError(f"storage {uri!r}: use s3://bucket/prefix or file:///path")


class LocalStorage:
    """A directory as a bucket; writes go through a temp file and a rename, like an S3 PUT."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        parsed = urlparse(uri)
        # file://output (relative, the default) and file:///abs/path both work.
        self.root = Path(parsed.netloc + parsed.path) if parsed.scheme else Path(uri)

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

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
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield StoredObject(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sibling(self, uri: str) -> Storage:
        return open_storage(uri)
