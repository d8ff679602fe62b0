"""Results already fetched, by object and ETag: a repeated `collect` (during a sweep, in CI)
downloads only what changed since the last one. One small JSON file per storage location."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from detk8s.paths import user_cache_dir
from detk8s.util import write_atomic


def cache_dir() -> Path:
    return user_cache_dir() / "collect"


class ResultCache:
    def __init__(self, uri: str, directory: Path | None = None) -> None:
        name = hashlib.sha256(uri.encode()).hexdigest()[:16]
        self.path = (directory or cache_dir()) / f"{name}.json"
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._entries: dict[str, list[str]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._entries = {}  # no cache yet, or a broken one: start over

    def get(self, key: str, etag: str) -> bytes | None:
        entry = self._entries.get(key)
        return entry[1].encode() if entry and entry[0] == etag and etag else None

    def put(self, key: str, etag: str, body: bytes) -> None:
        if not etag:
            return
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return
        with self._lock:
            self._entries[key] = [etag, text]
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self._entries))
        except OSError:
            pass  # a cache that cannot be written only costs time
