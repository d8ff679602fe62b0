"""What comes back from storage is anyone's: whoever can write to a bucket chooses its keys and
its files' contents. Hostile keys are put in real S3 servers (moto, and Ceph RGW) and refused
where they would leave their destination (dataset sync, checkpoint restore); stored results are
read with bounded size, and cannot act as spreadsheet formulas or markup in a summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from s3.servers import S3Bucket

from detk8s.config.schema import DatasetConfig
from detk8s.errors import DetkError
from detk8s.frameworks.paddledet import PaddleDetAdapter
from detk8s.project import Project
from detk8s.results.collect import collect, row, write_summary
from detk8s.runner.checkpoints import CheckpointError, CheckpointSync
from detk8s.runner.data import prepare_dataset
from detk8s.storage import Connection, open_storage

REPO = Path(__file__).resolve().parent.parent
HOSTILE_KEYS = ["../escaped.txt", "a/../../escaped.txt", "/escaped.txt", "a/\\..\\escaped.txt"]


def s3_storage(bucket: S3Bucket, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bucket.endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bucket.endpoint.secret_key)
    return open_storage(f"s3://{bucket.name}/{prefix}",
                        Connection(bucket.endpoint.url, bucket.endpoint.region))  # fmt: skip


@pytest.mark.parametrize("s3_endpoint", ["moto", "ceph"], indirect=True)
@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_dataset_sync_refuses_keys_that_leave_the_dataset(
    s3_bucket: S3Bucket, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_bucket.client
    for name in ("train.txt", "val.txt", "label_list.txt"):
        client.put_object(Bucket=s3_bucket.name, Key=f"ds/{name}", Body=b"x\n")
    client.put_object(Bucket=s3_bucket.name, Key=f"ds/{key}", Body=b"pwned")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert f"ds/{key}" in listed  # the server kept the key as it was written
    results = s3_storage(s3_bucket, "runs", monkeypatch)
    dataset = DatasetConfig(name="d", num_classes=1, source=f"s3://{s3_bucket.name}/ds/")
    root = tmp_path / "data" / "d"
    with pytest.raises(DetkError) as refused:
        prepare_dataset(dataset, root, results)
    assert str(refused.value) == f"refusing storage key {key!r}: it would leave {root}"
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not root.exists() or not any(root.rglob("*"))  # nothing synced before the check


def test_checkpoint_manifest_naming_files_outside_is_refused(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    manifest = {"version": "v1", "role": "resumable", "epoch": 3,
                "files": {"../../outside.pdparams": {"size": 5, "sha256": "0" * 64}}}  # fmt: skip
    store.put("L1/checkpoints/3.json", json.dumps(manifest).encode())
    with pytest.raises(DetkError, match="it would leave"):  # nor does storage take such keys
        store.put("L1/checkpoints/3/v1/../../outside.pdparams", b"pwned")
    run = Project.discover(REPO).load_run("L1").run
    local = tmp_path / "ckpt"
    sync = CheckpointSync(store, "L1", lambda: PaddleDetAdapter().checkpoints(run, local), local)
    with pytest.raises(CheckpointError, match=r"refusing storage key '\.\./\.\./outside"):
        sync.restore()
    assert not list(tmp_path.rglob("outside.pdparams"))


def record(run: str, **changes: Any) -> bytes:
    base = {"run": run, "framework": "paddledet", "model": "m", "dataset": "d", "gpus": 1,
            "nodes": 1, "batch_size": 2, "lr": 0.1, "epochs": 1, "map50": 1.0,
            "train_seconds": 1.0, "started": "2026-11-01T00:00:00+00:00",
            "finished": "2026-11-01T00:00:01+00:00"}  # fmt: skip
    return json.dumps({**base, **changes}).encode()


def test_stored_results_cannot_act_in_a_summary(tmp_path: Path) -> None:
    store = open_storage(f"file://{tmp_path / 'store'}")
    evil = {
        "A1": record("A1", model='=HYPERLINK("http://evil","x")'),
        "A2": record("A2", model="+cmd|'/c calc'!A0", dataset="@SUM(1)"),
        "A3": record("A3", model="a | b\n| injected | row |", dataset="<script>x</script>"),
        "A4": record("A4", model="\x1b[2J\x1b]0;owned\x07"),
    }
    for i, (run, body) in enumerate(evil.items()):
        store.put(f"{run}/eval.json", body)
        if i % 2:  # half as detk8s exec stores them now, indexed
            store.put(f"_index/{run}.json", body)
        store.put(f"{run}/DONE", b"")
    store.put("A5/FAILED", b"-2+3+cmd|' /C calc'!A0")
    store.put("A6/DONE", b"")
    store.put("A6/eval.json", b" " * (2 << 20))  # 2 MiB: not a result, never parsed
    store.put("A7/DONE", b"")
    store.put("_index/A7.json", b" " * (2 << 20))
    store.put("A8/DONE", b"")
    store.put("_index/A8.json", evil["A1"])  # another run's result
    rows = [row(r) for r in collect(store)]
    by_run = {r["run"]: r for r in rows}
    assert by_run["A6"]["status"] == "invalid" and "2.1 MB" in by_run["A6"]["reason"]
    assert by_run["A7"]["reason"] == "_index/A7.json is 2.1 MB: not a result"
    assert by_run["A8"]["reason"] == "_index/A8.json is of run 'A1'"
    cells = [c for r in csv.reader(io.StringIO(write_summary(rows, "csv"))) for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@") and not _number(c)]
    assert "'=HYPERLINK" in cells[cells.index("A1") + 2]
    md = write_summary(rows, "md").splitlines()
    assert len(md) == 2 + len(rows)  # no row smuggled in
    assert all(line.count(" | ") == md[0].count(" | ") for line in md[2:]), md
    assert "<script>" not in "\n".join(md) and "\x1b" not in "\n".join(md)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
