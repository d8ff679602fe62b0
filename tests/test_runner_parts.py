"""The runner's parts on their own: data subsets, rank, checkpoint mirroring."""

from __future__ import annotations

from pathlib import Path

from detk8s.config.schema import DatasetConfig
from detk8s.frameworks.paddledet import PaddleDetAdapter
from detk8s.runner.checkpoints import CheckpointSync
from detk8s.runner.data import write_train_subset
from detk8s.runner.rank import is_rank0
from detk8s.storage import open_storage


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


def ckpt(directory: Path, name: str, complete: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pdparams").write_bytes(name.encode() * 10)
    if complete:
        (directory / f"{name}.pdopt").write_bytes(b"opt")


def test_checkpoints_mirror_resume_and_prune(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "pod1"
    sync = CheckpointSync(store, "L1", PaddleDetAdapter(), local, keep=2)
    for epoch in range(4):
        ckpt(local, str(epoch))
    ckpt(local, "4", complete=False)  # still being written: ppdet writes .pdopt last
    assert sync.sync(settle=False) == ["0", "1", "2", "3"]
    remote = sync.remote()
    assert sorted(remote) == ["2", "3"]  # older numbered checkpoints pruned
    assert remote["3"] == ["3.pdopt", "3.pdparams"]
    # A new pod (empty disk) resumes from the newest stored checkpoint.
    fresh = tmp_path / "pod2"
    restored = CheckpointSync(store, "L1", PaddleDetAdapter(), fresh).restore()
    assert restored == fresh / "3"
    assert (fresh / "3.pdparams").read_bytes() == b"3" * 10
    # A half-uploaded checkpoint (no .complete marker) is never resumed from.
    store.put("L1/checkpoints/9.pdparams", b"partial")
    again = tmp_path / "pod3"
    assert CheckpointSync(store, "L1", PaddleDetAdapter(), again).restore() == again / "3"


def test_settle_waits_for_stable_sizes(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    sync = CheckpointSync(store, "Y1", PaddleDetAdapter(), tmp_path / "ckpt")
    ckpt(tmp_path / "ckpt", "0")
    assert sync.sync(settle=True) == []  # first sight: sizes noted
    assert sync.sync(settle=True) == ["0"]  # unchanged since: uploaded
    assert sync.sync(settle=True) == []


def test_local_newer_than_remote_wins(tmp_path: Path) -> None:
    """A container restart keeps the pod's emptyDir: a newer local checkpoint is used as is."""
    store = open_storage(f"file://{tmp_path / 'store'}")
    local = tmp_path / "ckpt"
    ckpt(local, "1")
    CheckpointSync(store, "Y1", PaddleDetAdapter(), local).sync(settle=False)
    ckpt(local, "2")
    assert CheckpointSync(store, "Y1", PaddleDetAdapter(), local).restore() == local / "2"


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
