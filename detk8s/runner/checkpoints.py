"""Checkpoints mirrored to object storage, so a preempted or restarted pod resumes where it was.

Storage layout, per checkpoint name (ppdet's `3`, `model_final`, `best_model`):

    <run>/checkpoints/<name>/<version>/<file>   the files, under a version = hash of their content
    <run>/checkpoints/<name>.json               the manifest: version, files, sizes, sha256, epoch

The manifest is written last, in one PUT, so a reader sees either the old checkpoint or the new
one, never a mix: a checkpoint rewritten in place (best_model) is uploaded again under a new
version, then the manifest moves to it. The previous version is kept until the next one, so a
reader holding the old manifest still finds its files; readers verify sizes and checksums and
re-read the manifest when a file is gone. Only the newest `keep` resumable checkpoints stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detk8s.errors import DetkError
from detk8s.frameworks.base import Checkpoint, resume_order
from detk8s.storage import CHECKPOINTS_DIR, Storage
from detk8s.storage.base import StorageError, local_path

MANIFEST = ".json"
READ_ATTEMPTS = 3
UPLOAD_ATTEMPTS = 4  # at stop(): backoff 1, 2, 4 s between them (the background loop retries too)

Signature = tuple[tuple[str, int, int], ...]  # (file name, size, mtime) of each file


class CheckpointError(DetkError):
    pass


@dataclass(frozen=True)
class StoredCheckpoint:
    """A manifest read back from storage."""

    name: str
    version: str
    role: str
    epoch: int | None
    files: dict[str, dict[str, Any]]  # file name -> {size, sha256}

    @property
    def order(self) -> float:
        return resume_order(self.role, self.epoch)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def signature(files: tuple[Path, ...]) -> Signature:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


class _Changed(Exception):
    """The checkpoint's files changed while they were uploaded: try again at the next scan."""


class CheckpointSync:
    def __init__(
        self,
        storage: Storage,
        run: str,
        scan: Callable[[], list[Checkpoint]],
        local_dir: Path,
        keep: int = 3,
        interval: float = 10.0,
        say: Callable[[str], None] = print,
        backoff: float = 1.0,
    ) -> None:
        self.storage, self.run, self.scan = storage, run, scan  # scan: the adapter's, on disk
        self.local_dir, self.keep, self.interval, self.say = local_dir, keep, interval, say
        self.backoff = backoff
        self._stored: dict[str, Signature] = {}  # what storage holds, by local signature
        self._seen: dict[str, Signature] = {}  # the previous scan's, for settling
        self._versions: dict[str, list[str]] = {}  # stored versions, oldest first
        self.errors: dict[str, str] = {}  # checkpoint -> its last upload error, until it works
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _key(self, rest: str) -> str:
        return f"{self.run}/{CHECKPOINTS_DIR}/{rest}"

    def _relative(self, file: Path) -> str:
        """A checkpoint file's name in storage: its path under the checkpoint dir."""
        return file.relative_to(self.local_dir).as_posix()

    def _local(self, name: str) -> Path:
        """Where a stored file goes; a name that would leave the checkpoint dir is refused."""
        try:
            return local_path(self.local_dir, name)
        except StorageError as e:
            raise CheckpointError(f"checkpoint file: {e}") from None

    # -- reading --------------------------------------------------------------------------

    def remote(self) -> dict[str, StoredCheckpoint]:
        """The checkpoints in storage, by name, as their manifests say."""
        names = [
            obj.key.rsplit("/", 1)[-1].removesuffix(MANIFEST)
            for obj in self.storage.list(self._key(""))
            if obj.key.endswith(MANIFEST) and "/" not in obj.key[len(self._key("")) :]
        ]
        out = {}
        for name in names:
            manifest = self._manifest(name)
            if manifest is not None:
                out[name] = manifest
        return out

    def _manifest(self, name: str) -> StoredCheckpoint | None:
        raw = self.storage.get(self._key(name + MANIFEST))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return StoredCheckpoint(
                name, str(data["version"]), str(data["role"]), data.get("epoch"),
                {str(k): dict(v) for k, v in data["files"].items()},
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError):
            self.say(f"ignoring checkpoint {name}: its manifest is not valid")
            return None

    def _fetch(self, stored: StoredCheckpoint) -> None:
        """Download a checkpoint's files and check them against its manifest; if a newer
        version replaced it meanwhile, fetch that one instead."""
        for _ in range(READ_ATTEMPTS):
            try:
                for file, meta in stored.files.items():
                    dest = self._local(file)
                    key = self._key(f"{stored.name}/{stored.version}/{file}")
                    if not self.storage.download(key, dest):
                        raise _Changed(f"{key} is gone")
                    if dest.stat().st_size != meta["size"] or sha256(dest) != meta["sha256"]:
                        raise _Changed(f"{key} does not match its manifest")
                    if "mtime_ns" in meta:  # the files' order in time means something to some
                        os.utime(dest, ns=(meta["mtime_ns"], meta["mtime_ns"]))  # trainers
            except _Changed:
                newer = self._manifest(stored.name)
                if newer is None:
                    break
                stored = newer
                continue
            files = tuple(self._local(f) for f in stored.files)
            self._stored[stored.name] = signature(files)
            self._versions[stored.name] = [stored.version]
            return
        raise CheckpointError(f"checkpoint {stored.name}: cannot read a consistent copy")

    def restore(self) -> Checkpoint | None:
        """Fetch the newest resumable checkpoint (unless one as new is on disk) and the best
        model; the checkpoint to resume from, or None to start from scratch."""
        remote = self.remote()
        local = {c.name: c for c in self.scan()}
        best_local = max((c for c in local.values() if c.order >= 0), key=lambda c: c.order,
                         default=None)  # fmt: skip
        resumable = [s for s in remote.values() if s.order >= 0]
        best_remote = max(resumable, key=lambda s: s.order, default=None)
        wanted = [s for s in remote.values() if s.role == "best" and s.name not in local]
        if best_remote is not None and (best_local is None or best_remote.order > best_local.order):
            wanted.append(best_remote)
        for stored in wanted:
            self._fetch(stored)
        resume = best_remote.name if best_remote in wanted else getattr(best_local, "name", None)
        for stored in remote.values():  # what storage has needs no upload
            self._versions.setdefault(stored.name, [stored.version])
        return next((c for c in self.scan() if c.name == resume), None)

    # -- writing --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync(settle=True)

    def stop(self) -> None:
        """Stop the background thread and upload whatever is complete now (e.g. on SIGTERM),
        retrying with backoff; errors that persist stay in `errors`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for attempt in range(UPLOAD_ATTEMPTS):
            self.sync(settle=False)
            if not self.errors:
                return
            if attempt + 1 < UPLOAD_ATTEMPTS:
                time.sleep(self.backoff * 2**attempt)
        for name, error in self.errors.items():
            self.say(f"checkpoint {name} could not be stored: {error}")

    def sync(self, settle: bool) -> list[str]:
        """Upload checkpoints that are new or changed since stored. With `settle`, only those
        whose files are unchanged since the previous scan (not being written)."""
        with self._lock:
            done = []
            for ckpt in sorted(self.scan(), key=lambda c: c.order):
                try:
                    sig = signature(ckpt.files)
                except FileNotFoundError:  # replaced while we looked
                    continue
                if self._stored.get(ckpt.name) == sig:
                    continue
                if settle and self._seen.get(ckpt.name) != sig:
                    self._seen[ckpt.name] = sig
                    continue
                try:
                    self._upload(ckpt, sig)
                except _Changed:
                    continue
                except (DetkError, OSError) as e:
                    if self.errors.get(ckpt.name) != str(e):
                        self.say(f"checkpoint {ckpt.name} upload failed (will retry): {e}")
                    self.errors[ckpt.name] = str(e)
                    continue
                self.errors.pop(ckpt.name, None)
                self._stored[ckpt.name] = sig
                done.append(ckpt.name)
                epoch = f" (epoch {ckpt.epoch})" if ckpt.epoch else ""
                self.say(f"checkpoint {ckpt.name}{epoch} stored in {self.storage.uri}/"
                         f"{self._key('')}")  # fmt: skip
            if done:
                self._prune()
            return done

    def _upload(self, ckpt: Checkpoint, sig: Signature) -> None:
        files = {
            self._relative(f): {"size": size, "sha256": sha256(f), "mtime_ns": mtime}
            for f, (_, size, mtime) in zip(ckpt.files, sig, strict=True)
        }
        content = {name: (meta["size"], meta["sha256"]) for name, meta in files.items()}
        version = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        versions = self._versions.setdefault(ckpt.name, [])
        if versions and versions[-1] == version:
            return  # storage holds this content already (e.g. just restored)
        for f in ckpt.files:
            self.storage.upload(self._key(f"{ckpt.name}/{version}/{self._relative(f)}"), f)
        if signature(ckpt.files) != sig:
            raise _Changed
        manifest = {"name": ckpt.name, "version": version, "role": ckpt.role,
                    "epoch": ckpt.epoch, "files": files}  # fmt: skip
        self.storage.put(self._key(ckpt.name + MANIFEST), json.dumps(manifest, indent=1).encode())
        versions.append(version)
        for old in versions[:-2]:  # the previous version stays for readers of the old manifest
            self._delete_prefix(f"{ckpt.name}/{old}/")
        del versions[:-2]

    def _delete_prefix(self, rest: str) -> None:
        for obj in list(self.storage.list(self._key(rest))):
            self.storage.delete(obj.key)

    def _prune(self) -> None:
        resumable = sorted(
            (s for s in self.remote().values() if s.role == "resumable"),
            key=lambda s: s.order,
            reverse=True,
        )
        for stored in resumable[self.keep :]:
            self.storage.delete(self._key(stored.name + MANIFEST))  # readers stop seeing it
            self._delete_prefix(f"{stored.name}/")
            self._versions.pop(stored.name, None)
