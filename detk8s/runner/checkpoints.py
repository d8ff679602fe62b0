"""Checkpoints mirrored to object storage, so a preempted or restarted pod resumes where it was.

Storage layout: <run>/checkpoints/<file> for each file of a checkpoint, then
<run>/checkpoints/<name>.complete once all of them are there: a reader never resumes from half
a checkpoint. Only the newest `keep` numbered checkpoints stay in storage.
"""

from __future__ import annotations

import threading
from pathlib import Path

from detk8s.frameworks.base import FrameworkAdapter
from detk8s.storage import Storage

PREFIX = "checkpoints"
COMPLETE = ".complete"


class CheckpointSync:
    def __init__(
        self,
        storage: Storage,
        run: str,
        adapter: FrameworkAdapter,
        local_dir: Path,
        keep: int = 3,
        interval: float = 10.0,
    ) -> None:
        self.storage, self.run, self.adapter = storage, run, adapter
        self.local_dir, self.keep, self.interval = local_dir, keep, interval
        self.uploaded: set[str] = set()
        self._sizes: dict[str, tuple[int, ...]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def _key(self, name: str) -> str:
        return f"{self.run}/{PREFIX}/{name}"

    def remote(self) -> dict[str, list[str]]:
        """Complete checkpoints in storage: name -> file names."""
        files: dict[str, list[str]] = {}
        complete = set()
        for obj in self.storage.list(f"{self.run}/{PREFIX}/"):
            name = obj.key.rsplit("/", 1)[-1]
            if name.endswith(COMPLETE):
                complete.add(name.removesuffix(COMPLETE))
            else:
                files.setdefault(name.split(".", 1)[0], []).append(name)
        return {n: sorted(fs) for n, fs in files.items() if n in complete}

    def restore(self) -> Path | None:
        """Fetch the newest checkpoint (unless a newer one is already on disk); its path
        without suffix, to resume from, or None to start from scratch."""
        order = self.adapter.checkpoint_order
        local = {n for n in self.adapter.complete_checkpoints(self.local_dir) if order(n) >= 0}
        remote = {n: fs for n, fs in self.remote().items() if order(n) >= 0}
        best_local = max(local, key=order, default=None)
        best_remote = max(remote, key=order, default=None)
        if best_remote is not None and (
            best_local is None or order(best_remote) > order(best_local)
        ):
            for file in remote[best_remote]:
                self.storage.download(self._key(file), self.local_dir / file)
            best_local = best_remote
        if best_local is None:
            return None
        self.uploaded |= set(remote) | {best_local}
        return self.local_dir / best_local

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync(settle=True)

    def stop(self) -> None:
        """Stop the background thread and upload whatever is complete now (e.g. on SIGTERM)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sync(settle=False)

    def sync(self, settle: bool) -> list[str]:
        """Upload complete checkpoints not uploaded yet. With `settle`, a checkpoint is taken
        only once its file sizes are unchanged since the previous scan (still being written)."""
        with self._lock:
            done = []
            checkpoints = self.adapter.complete_checkpoints(self.local_dir)
            for name in sorted(checkpoints, key=self.adapter.checkpoint_order):
                if name in self.uploaded:
                    continue
                files = checkpoints[name]
                sizes = tuple(f.stat().st_size for f in files)
                if settle and self._sizes.get(name) != sizes:
                    self._sizes[name] = sizes
                    continue
                try:
                    for f in files:
                        self.storage.upload(self._key(f.name), f)
                    self.storage.put(self._key(name + COMPLETE), b"")
                except Exception as e:  # storage trouble must not kill training; retried next scan
                    self.errors.append(f"{name}: {e}")
                    continue
                self.uploaded.add(name)
                done.append(name)
                print(f"[detk8s] checkpoint {name} uploaded to {self.storage.uri}/{self._key('')}")
            if done:
                self._prune()
            return done

    def _prune(self) -> None:
        order = self.adapter.checkpoint_order
        numbered = sorted(
            (n for n in self.remote() if 0 <= order(n) < float("inf")), key=order, reverse=True
        )
        for name in numbered[self.keep :]:
            for obj in list(self.storage.list(f"{self.run}/{PREFIX}/{name}.")):
                self.storage.delete(obj.key)
