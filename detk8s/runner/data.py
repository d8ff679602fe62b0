"""The run's dataset on local disk: synced from object storage when it lives there, and the
train list cut to the run's fraction."""

from __future__ import annotations

from pathlib import Path

from detk8s.config.schema import DatasetConfig
from detk8s.errors import DetkError
from detk8s.storage import Storage, open_storage
from detk8s.storage.base import local_path
from detk8s.util import thread_map

SYNC_THREADS = 16


class DataError(DetkError):
    pass


def sync_down(storage: Storage, dest: Path) -> tuple[int, int]:
    """Copy every object of `storage` into `dest`, skipping files already there with the same
    size. Returns (downloaded, skipped)."""
    objects = [obj for obj in storage.list("") if not obj.key.endswith("/")]
    paths = {obj.key: local_path(dest, obj.key) for obj in objects}  # all checked first
    wanted = [
        obj.key for obj in objects
        if not (paths[obj.key].is_file() and paths[obj.key].stat().st_size == obj.size)
    ]  # fmt: skip
    thread_map(lambda key: storage.download(key, paths[key]), wanted, SYNC_THREADS)
    return len(wanted), len(objects) - len(wanted)


def prepare_dataset(dataset: DatasetConfig, root: Path, results: Storage) -> None:
    """Make the dataset complete under `root`: synced from object storage (the service that
    holds the results) when it lives there."""
    if dataset.location.synced:
        got, skipped = sync_down(open_storage(dataset.source, results.connection), root)
        print(f"[detk8s] dataset {dataset.name}: {got} file(s) downloaded, {skipped} present")
    for name in (dataset.train_list, dataset.val_list, dataset.label_list):
        if not (root / name).is_file():
            raise DataError(f"dataset {dataset.name}: {root / name} does not exist")


def fetch_weights(results: Storage, uri: str, dest: Path) -> str:
    """Download the object `uri` (on the results' service) to `dest`, unless a file of the same
    size is there already. Says which it did."""
    parent, _, name = uri.rpartition("/")
    store = open_storage(parent, results.connection)
    remote = next((obj for obj in store.list(name) if obj.key == name), None)
    if remote is None:
        raise DataError(f"pretrain_weights {uri} does not exist")
    if dest.is_file() and dest.stat().st_size == remote.size:
        return "present"
    store.download(name, dest)
    return f"downloaded {remote.size / 1e6:.1f} MB"


def write_train_subset(dataset: DatasetConfig, root: Path, out: Path) -> int:
    """The first ceil(N x fraction) lines of the train list, in order (deterministic)."""
    lines = (root / dataset.train_list).read_text(encoding="utf-8").splitlines(keepends=True)
    lines = [line for line in lines if line.strip()]
    keep = dataset.subset_lines(len(lines))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines[:keep]), encoding="utf-8")
    return keep
