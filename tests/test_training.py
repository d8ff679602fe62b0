"""PaddleDetection trains for real on CPU (PicoDet-S and YOLOv3 at 320, batch 2, a few
iterations) through `detk8s exec`, with results in a real S3 server (Ceph RGW on loopback).

One module fixture runs the trainings once; the tests read what they left in the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3.proxy import RecordingProxy, recording_proxy
from s3.servers import S3Endpoint
from tiny import TinyProject, copy_tiny_project

from detk8s.datasets.synthetic import make_voc_dataset

REPO = Path(__file__).resolve().parent.parent
# With eval (the default) the result is the best model on the val list, not the last epoch's.
RESULT_FILES = ["train.log", "eval.log", "eval.json", "weights/best_model.pdparams"]


@dataclass
class Trained(TinyProject):
    proxy: RecordingProxy | None = None
    weights_uri: str = ""


def _project(root: Path, s3_url: str, bucket: str) -> None:
    copy_tiny_project(root, {"uri": f"s3://{bucket}/runs", "endpoint_url": s3_url})
    # YOLOv3 reads its dataset from the bucket, synced down by the runner.
    ds = root / "datasets/synthetic_voc_s3.yml"
    ds.write_text(f"_BASE_: synthetic_voc.yml\nsource: s3://{bucket}/datasets/synthetic_voc/\n"
                  "train_fraction: 1/2\n")  # fmt: skip
    run = root / "runs/tiny-yolov3.yml"
    run.write_text(run.read_text().replace("synthetic_voc_half", "synthetic_voc_s3"))
    (root / "runs/tiny-resume.yml").write_text(
        (root / "runs/tiny-picodet.yml").read_text().replace("epochs: 1", "epochs: 3")
    )
    (root / "runs/tiny-broken.yml").write_text(
        (root / "runs/tiny-picodet.yml").read_text().replace("synthetic_voc", "missing_voc")
    )
    (root / "datasets/missing_voc.yml").write_text(
        "_BASE_: synthetic_voc.yml\nsource: file://data/nowhere\n"
    )


def _all_val_objects_difficult(data: Path, dest: Path) -> None:
    """A copy whose val objects are all marked difficult, which VOC AP skips: mAP is exactly 0
    after every epoch, so ppdet (best when >=) rewrites best_model after every epoch."""
    shutil.copytree(data, dest)
    for line in (dest / "val.txt").read_text().splitlines():
        xml = dest / line.split()[1]
        xml.write_text(xml.read_text().replace("<difficult>0<", "<difficult>1<"))
    (dest.parent.parent / "datasets/synthetic_voc_ties.yml").write_text(
        "_BASE_: synthetic_voc.yml\nsource: file://data/synthetic_voc_ties\n"
    )


@pytest.fixture(scope="module")
def trained(ceph_s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = ceph_s3.client()
    bucket = ceph_s3.new_bucket("train", client)
    root = tmp_path_factory.mktemp("tiny") / "proj"
    with recording_proxy(ceph_s3.url) as proxy:
        _project(root, proxy.url, bucket)
        data = make_voc_dataset(root / "data/synthetic_voc")
        _all_val_objects_difficult(data, root / "data/synthetic_voc_ties")
        for f in sorted(p for p in data.rglob("*") if p.is_file()):
            client.upload_file(str(f), bucket, f"datasets/synthetic_voc/{f.relative_to(data)}")
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ceph_s3.access_key,
               "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key,
               "DETK8S_CHECKPOINT_INTERVAL": "0.3"}  # fmt: skip
        env.pop("DETK8S_PROJECT", None)
        t = Trained(root, env, client, bucket, proxy=proxy)
        for run in ("tiny-picodet", "tiny-yolov3", "tiny-broken"):
            t.results[run] = t.exec(run)
        # Weights from storage: tiny-picodet's final weights, pushed as an upstream file would be.
        final = root / "output/tiny-picodet/ckpt/paddledet/model_final.pdparams"
        pushed = t.cli("weights", "push", str(final), "--name", "picodet-tiny.pdparams")
        assert pushed.returncode == 0, pushed.stderr
        t.weights_uri = pushed.stdout.strip()
        (root / "runs/tiny-pretrained.yml").write_text(
            (root / "runs/tiny-resume.yml")
            .read_text()
            .replace("synthetic_voc", "synthetic_voc_ties")
            + f"pretrain_weights: {t.weights_uri}\n"
        )
        t.results["tiny-pretrained"] = t.exec("tiny-pretrained")
        yield t


@pytest.mark.parametrize("run", ["tiny-picodet", "tiny-yolov3"])
def test_trains_evaluates_and_stores(trained: Trained, run: str) -> None:
    result = trained.results[run]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"[detk8s] {run} done: mAP(0.50) " in result.stdout
    record = json.loads(trained.get(f"{run}/eval.json"))
    assert isinstance(record["map50"], float) and 0.0 <= record["map50"] <= 100.0
    assert record["metrics"]["voc_map_type"] == "integral"
    assert record["fps"] > 0 and record["metrics"]["eval_samples"] == 4
    assert (record["gpus"], record["batch_size"], record["epochs"]) == (1, 2, 1)
    assert record["train_seconds"] > 0 and record["exit_status"] == "succeeded"
    assert (record["weights"], record["weights_epoch"]) == ("best_model", 1)
    assert record["checkpoint_errors"] == []
    keys = set(trained.keys(f"{run}/"))
    assert {f"{run}/{f}" for f in [*RESULT_FILES, "DONE"]} <= keys
    assert json.loads(trained.get(f"_index/{run}.json")) == record
    assert {f"{run}/checkpoints/{n}.json" for n in ("model_final", "best_model")} <= keys


@pytest.mark.parametrize("run", ["tiny-picodet", "tiny-yolov3"])
def test_done_is_written_last(trained: Trained, run: str) -> None:
    """Read through the proxy's log of requests: every result is stored, then the run's index
    object (what collect and submit list), then DONE."""
    runs = f"{trained.bucket}/runs/"
    writes = [k for k in trained.proxy.writes(runs)
              if k.startswith((f"{runs}{run}/", f"{runs}_index/{run}.json"))]  # fmt: skip
    last = {key: i for i, key in enumerate(writes)}
    done, index = last[f"{runs}{run}/DONE"], last[f"{runs}_index/{run}.json"]
    for f in RESULT_FILES:
        assert last[f"{runs}{run}/{f}"] < index, f
    assert index < done == len(writes) - 1


def test_fraction_and_dataset_from_s3(trained: Trained) -> None:
    record = json.loads(trained.get("tiny-yolov3/eval.json"))
    assert (record["dataset"], record["train_fraction"], record["train_images"]) == (
        "synthetic_voc_s3", "1/2", 4
    )  # fmt: skip
    out = trained.results["tiny-yolov3"].stdout
    files = sum(1 for p in (trained.root / "data/synthetic_voc").rglob("*") if p.is_file())
    assert f"[detk8s] dataset synthetic_voc_s3: {files} file(s) downloaded, 0 present" in out
    lists = trained.root / "output/tiny-yolov3/lists/train.txt"
    full = (trained.root / "data/synthetic_voc/train.txt").read_text().splitlines()
    assert lists.read_text().splitlines() == full[:4]


def test_a_done_run_is_not_trained_again(trained: Trained) -> None:
    again = trained.exec("tiny-picodet")
    assert again.returncode == 0
    assert "tiny-picodet is already done" in again.stdout
    assert "ppdet" not in again.stdout


def test_failure_stores_log_and_failed(trained: Trained) -> None:
    result = trained.results["tiny-broken"]
    assert result.returncode == 1
    failed = json.loads(trained.get("tiny-broken/FAILED"))
    assert failed["reason"].startswith("dataset missing_voc: ")
    assert failed["reason"].endswith("nowhere/train.txt does not exist")
    assert "tiny-broken/DONE" not in trained.keys("tiny-broken/")


def test_sigterm_mid_run_then_resume_in_a_new_pod(trained: Trained, tmp_path: Path) -> None:
    log = tmp_path / "exec.out"  # a file, as the container runtime drains a pod's stdout
    with log.open("w") as out_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detk8s", "exec", "tiny-resume"], cwd=trained.root,
            env={**trained.env, "DETK8S_TERM_GRACE": "10"}, stdout=out_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        wanted = {f"tiny-resume/checkpoints/{n}.json" for n in ("0", "best_model")}
        while not wanted <= set(trained.keys("tiny-resume/checkpoints/")):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint uploaded in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)  # what the kubelet does to a preempted pod
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 143, out[-3000:]
    assert "stopped by SIGTERM: newest checkpoint stored" in out
    keys = [k.removeprefix("tiny-resume/checkpoints/") for k in trained.keys("tiny-resume/")]
    newest = max(int(k.removesuffix(".json")) for k in keys if k[:-5].isdigit())
    assert "tiny-resume/DONE" not in trained.keys("tiny-resume/")
    shutil.rmtree(trained.root / "output/tiny-resume")  # a new pod starts with empty disks

    resumed = trained.exec("tiny-resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"[detk8s] resuming from checkpoint {newest}" in resumed.stdout
    # The best model found before the kill came back too, with its AP: ppdet keeps it unless
    # a later evaluation is at least as good.
    assert "paddledet_worker: best_model so far: AP " in resumed.stdout
    epochs = [line for line in resumed.stdout.splitlines() if "ppdet.engine INFO: Epoch: [" in line]
    assert epochs and all(f"Epoch: [{e}]" not in line for e in range(newest + 1)
                          for line in epochs)  # fmt: skip
    record = json.loads(trained.get("tiny-resume/eval.json"))
    assert record["resumed_from"] == str(newest) and record["epochs"] == 3
    assert record["weights"] == "best_model"


def test_sigkill_leaves_a_recent_log_in_storage(trained: Trained, tmp_path: Path) -> None:
    """An OOM kill takes `detk8s exec` with it, without a chance to store anything: the log
    stored while it trained is at most one upload interval behind."""
    interval = 1.0
    (trained.root / "runs/tiny-killed.yml").write_text(
        (trained.root / "runs/tiny-resume.yml").read_text()
    )
    log = trained.root / "output/tiny-killed/train.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "detk8s", "exec", "tiny-killed"], cwd=trained.root,
        env={**trained.env, "DETK8S_LOG_INTERVAL": str(interval)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    sizes: list[tuple[float, int]] = []  # (time, size of the log on disk)
    try:
        deadline = time.monotonic() + 300
        while "Epoch: [1]" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline
            sizes.append((time.monotonic(), log.stat().st_size if log.exists() else 0))
            time.sleep(0.1)
        for _ in range(15):  # keep training (and logging) a little
            sizes.append((time.monotonic(), log.stat().st_size))
            time.sleep(0.1)
    finally:
        killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    local = log.read_bytes()
    chunks = sorted(k for k in trained.keys("tiny-killed/logs/local/"))
    stored = b"".join(trained.get(k) for k in chunks)
    assert stored and local.startswith(stored)
    behind = [size for t, size in sizes if t <= killed_at - interval - 0.5]
    assert len(stored) >= max(behind), (len(stored), max(behind), len(local))
    assert "tiny-killed/DONE" not in trained.keys("tiny-killed/")


def test_best_model_is_the_result_and_stored_as_rewritten(trained: Trained) -> None:
    """3 epochs, evaluated after each: ppdet rewrites best_model in place whenever the val mAP
    is at least as good (here always: see _all_val_objects_difficult). Each version reaches
    storage; the stored one is the one on disk at the end, and the result is its mAP."""
    result = trained.results["tiny-pretrained"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest_key = f"{trained.bucket}/runs/tiny-pretrained/checkpoints/best_model.json"
    writes = trained.proxy.writes(manifest_key.removesuffix(".json"))  # its files, then it
    assert writes.count(manifest_key) >= 2, writes
    manifest = json.loads(trained.get("tiny-pretrained/checkpoints/best_model.json"))
    local = trained.root / "output/tiny-pretrained/ckpt/paddledet"
    assert manifest["epoch"] == json.loads((local / "best_model.json").read_text())["epoch"]
    for name, meta in manifest["files"].items():
        stored = trained.get(f"tiny-pretrained/checkpoints/best_model/{manifest['version']}/{name}")
        assert stored == (local / name).read_bytes(), name
        assert hashlib.sha256(stored).hexdigest() == meta["sha256"]
    record = json.loads(trained.get("tiny-pretrained/eval.json"))
    assert (record["weights"], record["weights_epoch"]) == ("best_model", manifest["epoch"])
    assert (
        trained.get("tiny-pretrained/weights/best_model.pdparams")
        == (local / "best_model.pdparams").read_bytes()
    )
    assert manifest["epoch"] == 3
    assert "[detk8s] evaluating best_model (epoch 3) on val.txt" in result.stdout


def test_pretrained_weights_come_from_s3(trained: Trained) -> None:
    uri = trained.weights_uri
    assert uri == f"s3://{trained.bucket}/runs/_weights/picodet-tiny.pdparams"
    out = trained.results["tiny-pretrained"].stdout
    local = trained.root / "output/tiny-pretrained/pretrained/picodet-tiny.pdparams"
    assert f"[detk8s] pretrained weights {uri}: downloaded " in out
    assert f"Finish loading model weights: {local}" in out
    final = trained.root / "output/tiny-picodet/ckpt/paddledet/model_final.pdparams"
    assert local.read_bytes() == final.read_bytes()
    # `_weights` is not a run: collect does not list it.
    listed = trained.cli("collect", "-o", "weights-check.json")
    rows = json.loads((trained.root / "weights-check.json").read_text())
    assert listed.returncode == 0 and "_weights" not in {r["run"] for r in rows}


def test_collect_over_every_status(trained: Trained) -> None:
    c, b = trained.client, trained.bucket
    c.put_object(Bucket=b, Key="runs/tiny-running/train.log", Body=b"Epoch: [3]")
    c.put_object(Bucket=b, Key="runs/tiny-corrupt/DONE", Body=b"")
    c.put_object(Bucket=b, Key="runs/tiny-corrupt/eval.json", Body=b'{"run": "tiny-corr')
    (trained.root / "runs/tiny-missing.yml").write_text(
        (trained.root / "runs/tiny-picodet.yml").read_text()
    )
    result = trained.cli("collect", "-o", "summary.json")
    assert result.returncode == 0, result.stderr
    rows = {r["run"]: r for r in json.loads((trained.root / "summary.json").read_text())}
    status = {run: r["status"] for run, r in rows.items()}
    assert status["tiny-picodet"] == status["tiny-yolov3"] == "done"
    assert status["tiny-broken"] == "failed" and status["tiny-running"] == "running"
    assert status["tiny-corrupt"] == "invalid" and status["tiny-missing"] == "missing"
    assert rows["tiny-corrupt"]["reason"] == "eval.json is not JSON"
    assert rows["tiny-yolov3"]["data"] == "synthetic_voc_s3 (1/2)"
    assert rows["tiny-picodet"]["mAP"] == json.loads(trained.get("tiny-picodet/eval.json"))["map50"]


def test_local_backend_submit_status_logs_delete(trained: Trained) -> None:
    """Seed 000's `nohup ... &`, properly: detached, pid file, log, and stoppable."""
    (trained.root / "runs/tiny-local.yml").write_text(
        (trained.root / "runs/tiny-resume.yml").read_text()
    )
    trained.env["DETK8S_TERM_GRACE"] = "5"
    started = trained.cli("submit", "tiny-local", "--backend", "local")
    assert started.returncode == 0, started.stderr
    line = started.stdout.strip()
    assert line.startswith("tiny-local: started locally (pid ")
    pid = int(line.split("(pid ")[1].split(")")[0])
    log = trained.root / "output/tiny-local/train.log"
    assert line.endswith(f"log: {log}")
    assert (trained.root / "output/tiny-local/pid").read_text().strip() == str(pid)
    deadline = time.monotonic() + 300
    while "ppdet.engine INFO: Epoch: [0]" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.kill(pid, 0)  # alive, and not a child of this test: its own session
    # The same job as in a pod: the rendered command, env (the adapter's, NCCL, storage) and
    # files, with this machine's paths.
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if item
    )
    assert environ["FLAGS_allocator_strategy"] == "auto_growth"
    assert environ["NCCL_IB_DISABLE"] == "1"
    assert environ["DETK8S_STORAGE"] == f"s3://{trained.bucket}/runs"
    assert Path(f"/proc/{pid}/cmdline").read_text().split("\0")[1:6] == [
        "-m", "detk8s", "exec", "tiny-local", "--run-file",
    ]  # fmt: skip
    run_file = json.loads((trained.root / "output/tiny-local/config/run.json").read_text())
    assert run_file["layout"]["output_dir"] == str(trained.root / "output")

    status = trained.cli("status", "--backend", "local", "tiny-local")
    (row,) = [r for r in status.stdout.splitlines() if "tiny-local" in r and "│" in r]
    assert "Running" in row and str(pid) in row
    logs = trained.cli("logs", "tiny-local", "--backend", "local")
    assert "ppdet.engine INFO: Epoch: [0]" in logs.stdout
    again = trained.cli("submit", "tiny-local", "--backend", "local")
    assert again.stdout.strip() == f"tiny-local: unchanged: already running locally (pid {pid})"

    stopped = trained.cli("delete", "tiny-local", "--backend", "local")
    assert stopped.stdout.strip() == "stopped local run tiny-local"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    status = trained.cli("status", "--backend", "local", "tiny-local")
    assert "Stopped" in status.stdout
    assert "stopped by SIGTERM" in log.read_text()
