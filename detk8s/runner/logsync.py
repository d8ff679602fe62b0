"""The run's log in object storage while it trains, so it can still be read when the pods are
gone (the operator deletes every pod of a job that reached its backoff limit or deadline).

    <run>/logs/<replica>/000000.log, 000001.log, ...

Each chunk holds at most `chunk` bytes of the log; the open (last) one is uploaded again every
`interval` seconds when the log grew. An upload costs at most one chunk, whatever the log's size,
and a crash that kills `detk8s exec` itself loses at most `interval` seconds of log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from detk8s.errors import DetkError
from detk8s.storage import LOGS_DIR, Storage

CHUNK = 1 << 20
CHUNK_NAME = "{:06d}.log"


def log_prefix(run: str, replica: str) -> str:
    return f"{run}/{LOGS_DIR}/{replica}/"


class LogSync:
    def __init__(
        self,
        storage: Storage,
        run: str,
        replica: str,
        path: Path,
        interval: float = 30.0,
        chunk: int = CHUNK,
        say: Callable[[str], None] = print,
    ) -> None:
        self.storage, self.prefix, self.path = storage, log_prefix(run, replica), path
        self.interval, self.chunk, self.say = interval, chunk, say
        self._uploaded = 0  # bytes of the log in storage
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="log-sync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        """A last upload; later calls do nothing (the results, DONE last, may follow)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def flush(self) -> None:
        """Upload what the log gained since the last flush: the open chunk again, then any new
        ones. Storage errors are reported once and retried at the next flush."""
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return
            if size <= self._uploaded:
                return
            first = self._uploaded // self.chunk
            try:
                with self.path.open("rb") as f:
                    for index in range(first, (size - 1) // self.chunk + 1):
                        f.seek(index * self.chunk)
                        data = f.read(min(self.chunk, size - index * self.chunk))
                        self.storage.put(self.prefix + CHUNK_NAME.format(index), data)
            except (DetkError, OSError) as e:
                if not self._failing:
                    self.say(f"could not store the log (will retry): {e}")
                self._failing = True
                return
            self._failing = False
            self._uploaded = size


def stored_log(storage: Storage, run: str, replica: str) -> str | None:
    """The log a replica stored, or None when it stored none."""
    prefix = log_prefix(run, replica)
    chunks = sorted(o.key for o in storage.list(prefix) if o.key.endswith(".log"))
    if not chunks:
        return None
    return b"".join(storage.get(key) or b"" for key in chunks).decode("utf-8", "replace")
