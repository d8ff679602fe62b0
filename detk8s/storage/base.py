"""What every storage backend offers: a flat key space under a root URI."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from detk8s.errors import DetkError


class StorageError(DetkError):
    """A storage call failed: one line naming the action and the object."""


def local_path(dest: Path, key: str) -> Path:
    """Where object `key` goes under `dest`. Keys are anyone's strings (whoever can write to
    the bucket): one that would leave `dest` ('..', absolute, NUL) is refused."""
    parts = key.split("/")
    if not key or key.startswith("/") or ".." in parts or "\0" in key or "\\" in key:
        raise StorageError(f"refusing storage key {key!r}: it would leave {dest}")
    return dest.joinpath(*(p for p in parts if p not in ("", ".")))


class StoredObject(NamedTuple):
    key: str  # relative to the storage root
    size: int
    etag: str  # changes whenever the content does (S3 ETag; mtime and size for files)


# What lies directly under a prefix: the names of the prefixes below it, and its objects.
Listing = tuple[list[str], list[StoredObject]]


@dataclass(frozen=True)
class Connection:
    """How to reach an S3 service besides the URI (credentials come from the environment)."""

    endpoint_url: str | None = None
    region: str | None = None


DEFAULT_CONNECTION = Connection()  # the endpoint and region of the environment (AWS_*)


class Storage(Protocol):
    uri: str
    connection: Connection  # for other locations on the same service (a dataset, weights)

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        ...

    def get_many(
        self, keys: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[bytes | None]:
        """`[get(k) for k in keys]`, as concurrently as suits the backend, with `progress(1)`
        after each object."""
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

    def children(self, prefix: str = "") -> Listing:
        """What lies directly under `prefix` ("" or ending in "/"): the names of the prefixes
        below it, and its objects. One request per 1,000 names, however deep the tree is."""
        ...

    def delete(self, key: str) -> None: ...
