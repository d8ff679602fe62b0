"""The runner's parts on their own: data subsets, rank, checkpoint mirroring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detk8s.config.schema import DatasetConfig
from detk8s.frameworks.base import Run
from detk8s.frameworks.paddledet import PaddleDetAdapter
from detk8s.project import Project
from detk8s.replica import is_rank0
from detk8s.runner.checkpoints import CheckpointError, CheckpointSync
from detk8s.runner.data import write_train_subset
from detk8s.storage import LocalStorage, Storage, StorageError, open_storage

REPO = Path(__file__).resolve().parent.parent
RUN: Run = Project.discover(REPO).load_run("L1").run


def sync_of(store: Storage, run: str, local: Path, **kwargs: Any) -> CheckpointSync:
    """The checkpoint mirror of a PaddleDetection run whose checkpoints are in `local`."""
    return CheckpointSync(
        store, run, lambda: PaddleDetAdapter().checkpoints(RUN, local), local, **kwargs
    )


def test_train_subset_is_the_first_ceil_lines(tmp_path: Path) -> None:
    lines = [f"images/{i}.jpg annotations/{i}.xml\n" for i in range(5828)]
    (tmp_path / "train.txt").write_text("".join(lines))
    ds = DatasetConfig(name="d", num_classes=2, source="file:///x", train_fraction="1/3")
    out = tmp_path / "lists/train.txt"
    assert write_train_subset(ds, tmp_path, out) == 1943
    assert out.read_text() == "".join(lines[:1943])
    assert write_train_subset(ds, tmp_path, out) == 1943  # deterministic, idempotent
    assert out.read_text() == "".join(lines[:1943])


def test_rank0() -> None:
    assert is_rank0({})
    pod = {"DETK8S_RANK0_REPLICA": "worker", "DETK8S_REPLICA_TYPE": "worker"}
    assert is_rank0({**pod, "DETK8S_REPLICA_INDEX": "0"})
    assert not is_rank0({**pod, "DETK8S_REPLICA_INDEX": "1"})
    assert not is_rank0({**pod, "DETK8S_REPLICA_TYPE": "master", "DETK8S_REPLICA_INDEX": "0"})


def ckpt(directory: Path, name: str, complete: bool = True, content: bytes = b"") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pdparams").write_bytes(content or name.encode() * 10)
    if complete:
        (directory / f"{name}.pdopt").write_bytes(b"opt")


def stored_keys(store: Storage, run: str) -> list[str]:
    return sorted(o.key.removeprefix(f"{run}/checkpoints/") for o in store.list(f"{run}/"))


def test_checkpoints_mirror_resume_and_prune(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "pod1"
    sync = sync_of(store, "L1", local, keep=2)
    for epoch in range(4):
        ckpt(local, str(epoch))
    ckpt(local, "4", complete=False)  # still being written: ppdet writes .pdopt last
    assert sync.sync(settle=False) == ["0", "1", "2", "3"]
    remote = sync.remote()
    assert sorted(remote) == ["2", "3"]  # older numbered checkpoints pruned
    assert sorted(remote["3"].files) == ["3.pdopt", "3.pdparams"]
    assert (remote["3"].role, remote["3"].epoch) == ("resumable", 4)
    assert [k for k in stored_keys(store, "L1") if k.startswith("1")] == []
    # A new pod (empty disk) resumes from the newest stored checkpoint.
    fresh = tmp_path / "pod2"
    restored = sync_of(store, "L1", fresh).restore()
    assert restored is not None and restored.weights == fresh / "3.pdparams"
    assert (fresh / "3.pdparams").read_bytes() == b"3" * 10
    # Files without a manifest (an upload cut short) are never resumed from.
    store.put("L1/checkpoints/9/0123/9.pdparams", b"partial")
    store.put("L1/checkpoints/9/0123/9.pdopt", b"partial")
    again = tmp_path / "pod3"
    restored = sync_of(store, "L1", again).restore()
    assert restored is not None and restored.name == "3"


def test_settle_waits_for_stable_files(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    sync = sync_of(store, "Y1", tmp_path / "ckpt")
    ckpt(tmp_path / "ckpt", "0")
    assert sync.sync(settle=True) == []  # first sight: files noted
    assert sync.sync(settle=True) == ["0"]  # unchanged since: uploaded
    assert sync.sync(settle=True) == []


def test_local_newer_than_remote_wins(tmp_path: Path) -> None:
    """A container restart keeps the pod's emptyDir: a newer local checkpoint is used as is."""
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "ckpt"
    ckpt(local, "1")
    sync_of(store, "Y1", local).sync(settle=False)
    ckpt(local, "2")
    restored = sync_of(store, "Y1", local).restore()
    assert restored is not None and restored.name == "2"


def best(directory: Path, epoch: int, content: bytes) -> None:
    ckpt(directory, "best_model", content=content)
    (directory / "best_model.json").write_text(json.dumps({"epoch": epoch, "ap": 0.5}))


def test_a_rewritten_checkpoint_is_stored_again_atomically(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "pod1"
    sync = sync_of(store, "L1", local)
    versions = []
    for epoch, content in [(1, b"first"), (2, b"second"), (3, b"third")]:
        best(local, epoch, content)
        assert sync.sync(settle=False) == ["best_model"]
        assert sync.sync(settle=False) == []  # unchanged: nothing to do
        stored = sync.remote()["best_model"]
        assert (stored.role, stored.epoch) == ("best", epoch)
        versions.append(stored.version)
    assert len(set(versions)) == 3
    # The manifest names the newest version; the one before stays for readers of the old
    # manifest, older ones are gone.
    dirs = {k.split("/")[1] for k in stored_keys(store, "L1") if k.startswith("best_model/")}
    assert dirs == set(versions[1:])
    fresh = tmp_path / "pod2"
    assert sync_of(store, "L1", fresh).restore() is None
    assert (fresh / "best_model.pdparams").read_bytes() == b"third"  # the best model comes back
    assert json.loads((fresh / "best_model.json").read_text())["epoch"] == 3


def test_a_reader_never_takes_a_mix_of_versions(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "pod1"
    best(local, 1, b"first")
    sync_of(store, "L1", local).sync(settle=False)
    stored = sync_of(store, "L1", local).remote()["best_model"]
    # A file that does not match its manifest (overwritten behind our back) is refused.
    store.put(f"L1/checkpoints/best_model/{stored.version}/best_model.pdparams", b"other")
    with pytest.raises(CheckpointError, match="best_model: cannot read a consistent copy"):
        sync_of(store, "L1", tmp_path / "pod2").restore()


class FlakyStorage(LocalStorage):
    """File storage whose uploads fail the first `failures` times, as a flaky network does."""

    def __init__(self, uri: str, failures: int) -> None:
        super().__init__(uri)
        self.failures = failures

    def upload(self, key: str, path: Path) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageError(f"storage upload {key}: SlowDown")
        super().upload(key, path)


def test_upload_failures_are_retried_then_reported(tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    ckpt(local, "0")
    said: list[str] = []
    flaky = FlakyStorage(f"file://{tmp_path / 's1'}", failures=2)
    sync = sync_of(flaky, "Y1", local, say=said.append, backoff=0.01)
    sync.stop()  # retries with backoff until stored
    assert sync.errors == {} and "0" in sync.remote()
    assert said[0] == "checkpoint 0 upload failed (will retry): storage upload "\
        "Y1/checkpoints/0/" + sync.remote()["0"].version + "/0.pdopt: SlowDown"  # fmt: skip
    broken_store = FlakyStorage(f"file://{tmp_path / 's2'}", failures=99)
    broken = sync_of(broken_store, "Y1", local, say=said.append, backoff=0.01)
    broken.stop()
    assert list(broken.errors) == ["0"]
    assert said[-1].startswith("checkpoint 0 could not be stored: storage upload Y1/")


def test_a_framework_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    """paddle can block SIGTERM (and deadlock in its handler): the runner does not wait forever."""
    import signal
    import sys
    import threading
    import time

    from detk8s.runner.process import Terminated, run_teed

    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('training', flush=True); time.sleep(120)")  # fmt: skip
    terminated = Terminated(grace=0.5)
    # What the SIGTERM handler does, once the child runs.
    threading.Timer(1.0, terminated._handle, (signal.SIGTERM, None)).start()
    t0 = time.monotonic()
    code = run_teed([sys.executable, "-c", stubborn], tmp_path / "log", terminated, tee=False)
    assert code == -signal.SIGKILL
    assert terminated.is_set and time.monotonic() - t0 < 30
    assert (tmp_path / "log").read_text() == "training\n"
