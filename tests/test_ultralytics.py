"""ultralytics YOLOv3/v5 through the framework layer: rendered as a PyTorchJob, the train command
of each replica, the VOC -> YOLO conversion, metrics from the trainer's real output; then, in
the PyTorch venv (.venv-torch), real CPU training through `detk8s exec` into Ceph RGW with no
outbound connection, a kill and a resume in a new pod, and two torchrun "pods" meeting as the
operator's env tells them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schema import replica_specs, validate_job, validate_pod_templates
from s3.servers import S3Endpoint
from test_render import container, env_of, render
from tiny import TinyProject, copy_tiny_project

from detk8s.datasets.synthetic import make_voc_dataset
from detk8s.datasets.voc import read_annotation, read_labels, read_list
from detk8s.datasets.yolo import convert, voc_box
from detk8s.frameworks import get_adapter
from detk8s.frameworks.ultralytics import best_epoch, parse_val_output, results_rows
from detk8s.layout import POD, local_layout
from detk8s.project import Project
from detk8s.replica import Replica

REPO = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).parent / "data" / "logs"
TORCH_PYTHON = Path(os.environ.get("DETK8S_TORCH_PYTHON", REPO / ".venv-torch/bin/python"))
WORKER = ["python", "-m", "yolov5.train"]


def operator_env(job: dict[str, Any], replica: str, index: int) -> dict[str, str]:
    """What the Training Operator v1.9 appends for a PyTorchJob pod (pytorch/envvar.go,
    master.go), and the downward API's replica labels."""
    specs = replica_specs(job)
    name = job["metadata"]["name"]
    (port,) = [p["containerPort"] for p in container(job)["ports"]
               if p["name"] == "pytorchjob-port"]  # fmt: skip
    nproc = job["spec"]["nprocPerNode"]
    nodes = sum(s["replicas"] for s in specs.values())
    rank = index + 1 if replica == "worker" else index
    return {
        "PYTHONUNBUFFERED": "1",
        "MASTER_PORT": str(port), "PET_MASTER_PORT": str(port),
        "MASTER_ADDR": f"{name}-master-0", "PET_MASTER_ADDR": f"{name}-master-0",
        "WORLD_SIZE": str(nodes * int(nproc)), "RANK": str(rank), "PET_NODE_RANK": str(rank),
        "PET_NPROC_PER_NODE": nproc, "PET_NNODES": str(nodes),
        "DETK8S_REPLICA_TYPE": replica, "DETK8S_REPLICA_INDEX": str(index),
        "DETK8S_RANK0_REPLICA": "master",
    }  # fmt: skip


# -- render and argv -----------------------------------------------------------------------------


def test_u1_renders_a_pytorchjob(project: Path, cli: Any) -> None:
    cm, job = render(cli, "U1")
    assert job["kind"] == "PyTorchJob"
    validate_job(job)
    validate_pod_templates(job)
    specs = replica_specs(job)
    assert list(specs) == ["Master"] and specs["Master"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "2"
    c = container(job)
    assert c["name"] == "pytorch" and c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert c["command"] == ["detk8s", "exec", "U1", "--run-file", "/etc/detk8s/run.json"]
    env = env_of(c)
    assert env["NCCL_IB_DISABLE"] == "1" and env["YOLO_OFFLINE"] == "1"
    assert env["YOLOV5_CONFIG_DIR"] == "/output/U1/ultralytics-config"
    pod = specs["Master"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["medium"] == "Memory"
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3
    hyp = yaml.safe_load(cm["data"]["hyp.yaml"])
    assert (hyp["lr0"], hyp["momentum"], hyp["warmup_epochs"]) == (0.01, 0.937, 3.0)


def test_two_nodes_are_master_and_worker(project: Path, cli: Any) -> None:
    (project / "configs/runs/U2.yml").write_text("_BASE_: U1.yml\nnodes: 2\n")
    _, job = render(cli, "U2")
    validate_job(job)
    validate_pod_templates(job)
    specs = replica_specs(job)
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 1)
    assert container(job, "Worker")["command"][2] == "U2"


def argv_of(project: Path, run: str, replica: Replica) -> tuple[list[str], tuple[str, ...]]:
    loaded = Project.discover(project).load_run(run)
    command = get_adapter("ultralytics").train_command(loaded.run, POD, replica, None)
    return command.argv, command.unset


def test_train_argv_for_one_gpu_two_gpus_and_two_nodes(project: Path, cli: Any) -> None:
    (project / "configs/runs/U9.yml").write_text("_BASE_: U1.yml\ngpus: 1\n")
    (project / "configs/runs/U2.yml").write_text("_BASE_: U1.yml\nnodes: 2\n")
    args = [
        "--data", "/output/{run}/yolo/data.yaml",
        "--weights", "/output/{run}/pretrained/yolov3.pt",
        "--cfg", "yolov3.yaml", "--hyp", "/etc/detk8s/hyp.yaml", "--img", "640",
        "--batch-size", "{total}", "--epochs", "100", "--device", "{device}",
        "--optimizer", "SGD", "--workers", "8", "--patience", "100",
        "--project", "/output/{run}", "--name", "train", "--exist-ok", "--noplots",
    ]  # fmt: skip

    def expect(run: str, total: int, device: str) -> list[str]:
        return [a.format(run=run, total=total, device=device) for a in args]

    # One GPU: train.py alone, without the operator's node-level RANK / WORLD_SIZE.
    argv, unset = argv_of(project, "U9", Replica(gpus=1))
    assert argv == [*WORKER, *expect("U9", 16, "0")]
    assert {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= set(unset)
    # Two GPUs, one node (the Master alone): torchrun, one process per GPU.
    _, job = render(cli, "U1")
    master = Replica.from_env(operator_env(job, "master", 0), dev=Path("/nonexistent"))
    argv, unset = argv_of(project, "U1", replace(master, gpus=2))
    assert argv == [
        "python", "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--nnodes", "1", "--node_rank", "0", "--master_addr", "u1-master-0",
        "--master_port", "23456", "-m", "yolov5.train", *expect("U1", 32, "0,1"),
    ]  # fmt: skip
    assert unset == ()
    # Two nodes: the Worker's rank and the Master's address from the operator's env.
    _, job = render(cli, "U2")
    worker = Replica.from_env(operator_env(job, "worker", 0), dev=Path("/nonexistent"))
    assert (worker.node_rank, worker.nnodes, worker.rank0) == (1, 2, False)
    argv, _ = argv_of(project, "U2", replace(worker, gpus=2))
    assert argv[3:13] == ["--nproc_per_node", "2", "--nnodes", "2", "--node_rank", "1",
                          "--master_addr", "u2-master-0", "--master_port", "23456"]  # fmt: skip
    assert argv[argv.index("--batch-size") + 1] == "64"  # 16 per GPU x 2 GPUs x 2 nodes


def test_resume_replaces_the_arguments(project: Path) -> None:
    """train.py --resume takes everything else from the run's opt.yaml."""
    from detk8s.frameworks.base import Checkpoint

    loaded = Project.discover(project).load_run("U1")
    last = Path("/output/U1/train/weights/last.pt")
    resume = Checkpoint("last", (last,), last, "resumable", 3)
    command = get_adapter("ultralytics").train_command(loaded.run, POD, Replica(gpus=2), resume)
    assert command.argv[-2:] == ["--resume", str(last)]
    assert "--data" not in command.argv


# -- data and metrics ----------------------------------------------------------------------------


def test_voc_to_yolo_keeps_every_box(tmp_path: Path) -> None:
    voc = make_voc_dataset(tmp_path / "voc", n_train=6, n_val=3)
    data_yaml = convert(voc, {"train": voc / "train.txt", "val": voc / "val.txt"},
                        voc / "label_list.txt", tmp_path / "yolo")  # fmt: skip
    data = yaml.safe_load(data_yaml.read_text())
    assert (data["nc"], data["names"]) == (2, ["mouse", "other"])
    names = read_labels(voc / "label_list.txt")
    images = Path(data["val"]).read_text().split()
    for (image, xml), listed in zip(read_list(voc, voc / "val.txt"), images, strict=True):
        ann = read_annotation(image, xml)
        label = Path(listed.replace("/images/", "/labels/")).with_suffix(".txt")
        back = [voc_box(line, names, ann.width, ann.height)
                for line in label.read_text().splitlines()]  # fmt: skip
        assert len(back) == len(ann.boxes) > 0
        for got, want in zip(back, ann.boxes, strict=True):
            assert got.name == want.name
            for k in ("xmin", "ymin", "xmax", "ymax"):
                assert abs(getattr(got, k) - getattr(want, k)) < 0.01
        assert Path(listed).resolve() == image.resolve()  # the dataset's own image
    stamp = (tmp_path / "yolo/.converted").stat().st_mtime_ns
    convert(voc, {"train": voc / "train.txt", "val": voc / "val.txt"}, voc / "label_list.txt",
            tmp_path / "yolo")  # fmt: skip
    assert (tmp_path / "yolo/.converted").stat().st_mtime_ns == stamp  # done once


def test_val_output_and_results_csv_of_a_real_run() -> None:
    """tests/data/logs/yolov5_*: val.py's output and train.py's results.csv of a CPU run."""
    m = parse_val_output((LOGS / "yolov5_val.log").read_text())
    assert (m.map50, m.map50_95) == (0.21, 0.04)
    assert m.per_class == {"mouse": 0.32, "other": 0.11}
    assert m.details["speed_ms"] == {"pre": 0.1, "inference": 6.9, "nms": 1.3}
    assert m.fps == pytest.approx(1000 / 8.3, abs=0.01)
    assert m.lines[0].split() == ["all", "4", "10", "0.00294", "0.3", "0.00215", "0.000408"]
    rows = results_rows(LOGS / "yolov5_results.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[1]["metrics/mAP_0.5:0.95"] == "0.00039393"
    assert best_epoch(rows) == 1  # fitness 0.1 mAP50 + 0.9 mAP50-95 is higher at epoch 0


def test_checkpoints_follow_results_csv(project: Path, tmp_path: Path) -> None:
    loaded = Project.discover(project).load_run("U1")
    adapter = get_adapter("ultralytics")
    train = tmp_path / "train"
    (train / "weights").mkdir(parents=True)
    shutil.copy(LOGS / "yolov5_results.csv", train / "results.csv")
    (train / "opt.yaml").write_text("epochs: 100\n")
    last = train / "weights/last.pt"
    last.write_bytes(b"PK\x03\x04half a zip")  # still being written
    assert adapter.checkpoints(loaded.run, train) == []
    with zipfile.ZipFile(last, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    (ckpt,) = adapter.checkpoints(loaded.run, train)
    assert (ckpt.name, ckpt.role, ckpt.epoch) == ("last", "resumable", 2)
    assert {f.name for f in ckpt.files} == {"last.pt", "results.csv", "opt.yaml"}
    os.utime(last, ns=(1, 1))  # the next epoch's row is in, its last.pt is not yet
    assert adapter.checkpoints(loaded.run, train) == []


# -- for real, in the PyTorch venv ---------------------------------------------------------------


AUDIT_HOOK = """
import os, sys
_log = os.environ["NETAUDIT_LOG"]
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        with open(_log, "a") as f:
            what = args[1] if event == "socket.connect" else args[0]
            f.write(f"{os.getpid()} {event} {what!r}\\n")
sys.addaudithook(_hook)
"""


@pytest.fixture(scope="module")
def yolo(ceph_s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Any:
    assert TORCH_PYTHON.is_file(), f"{TORCH_PYTHON} is missing: `make test` creates .venv-torch"
    client = ceph_s3.client()
    bucket = ceph_s3.new_bucket("yolo", client)
    base = tmp_path_factory.mktemp("yolo")
    root = copy_tiny_project(
        base / "proj", {"uri": f"s3://{bucket}/runs", "endpoint_url": ceph_s3.url},
        local_python={"pytorch": str(TORCH_PYTHON)},
    )  # fmt: skip
    make_voc_dataset(root / "data/synthetic_voc")
    # Epochs long enough (~1 s) for a checkpoint to be stored between two of them.
    (root / "runs/tiny-yolov5-long.yml").write_text(
        (root / "runs/tiny-yolov5.yml").read_text().replace("epochs: 2", "epochs: 12")
        .replace("input_size: 128", "input_size: 320")
    )  # fmt: skip
    audit = base / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT_HOOK)  # every Python process of the run
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ceph_s3.access_key,
           "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key, "DETK8S_CHECKPOINT_INTERVAL": "0.3",
           "PYTHONPATH": str(audit), "NETAUDIT_LOG": str(base / "net.log")}  # fmt: skip
    env.pop("DETK8S_PROJECT", None)
    p = TinyProject(root, env, client, bucket, python=str(TORCH_PYTHON))
    p.results["tiny-yolov5"] = p.exec("tiny-yolov5")
    yield p


def test_trains_on_cpu_and_stores_the_result(yolo: TinyProject) -> None:
    result = yolo.results["tiny-yolov5"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[detk8s] tiny-yolov5 done: mAP(0.50) " in result.stdout
    record = json.loads(yolo.get("tiny-yolov5/eval.json"))
    assert record["framework"] == "ultralytics" and record["weights"] == "best"
    assert 0 <= record["map50"] <= 100 and record["map50_95"] is not None
    assert set(record["per_class"]) == {"mouse", "other"} and record["fps"] > 0
    assert [e["epoch"] for e in record["metrics"]["epochs"]] == [1, 2]
    keys = set(yolo.keys("tiny-yolov5/"))
    assert {"tiny-yolov5/DONE", "tiny-yolov5/weights/best.pt",
            "tiny-yolov5/checkpoints/last.json"} <= keys  # fmt: skip
    collect = yolo.cli("collect", "-o", "summary.json")
    assert collect.returncode == 0, collect.stderr
    rows = {r["run"]: r for r in json.loads((yolo.root / "summary.json").read_text())}
    assert rows["tiny-yolov5"]["status"] == "done"
    assert rows["tiny-yolov5"]["mAP"] == record["map50"]


def test_no_outbound_connection(yolo: TinyProject) -> None:
    """Every Python process of the run (exec, train.py, val.py) logged its socket calls: only
    the S3 server on loopback was reached, nothing was looked up."""
    events = Path(yolo.env["NETAUDIT_LOG"]).read_text().splitlines()
    assert any("socket.connect" in e for e in events)  # the hook saw the S3 traffic
    outside = [e for e in events if "127.0.0.1" not in e and "'localhost'" not in e]
    assert outside == []


def test_killed_after_an_epoch_then_resumed_in_a_new_pod(yolo: TinyProject, tmp_path: Path) -> None:
    run = "tiny-yolov5-long"
    log = tmp_path / "exec.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(TORCH_PYTHON), "-m", "detk8s", "exec", run], cwd=yolo.root,
            env={**yolo.env, "DETK8S_TERM_GRACE": "10"}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while f"{run}/checkpoints/last.json" not in yolo.keys(f"{run}/checkpoints/"):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint stored in time"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, log.read_text()[-3000:]
    stored = json.loads(yolo.get(f"{run}/checkpoints/last.json"))
    assert stored["role"] == "resumable" and 1 <= stored["epoch"] < 12
    shutil.rmtree(yolo.root / "output" / run)  # a new pod starts with empty disks

    resumed = yolo.exec(run)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[detk8s] resuming from checkpoint last" in resumed.stdout
    assert "Resuming training from" in resumed.stdout + resumed.stderr
    record = json.loads(yolo.get(f"{run}/eval.json"))
    assert record["resumed_from"] == "last"
    epochs = [e["epoch"] for e in record["metrics"]["epochs"]]
    assert sorted(set(epochs)) == list(range(1, 13))  # the stored rows, then the new ones


DDP_PROBE = '''
"""In place of train.py under torchrun: one real DDP step over gloo on CPU."""
import argparse, json, os
from pathlib import Path
import torch, torch.distributed as dist
args, _ = argparse.ArgumentParser().parse_known_args()
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
torch.manual_seed(rank + 1)
model(torch.randn(8, 4)).pow(2).mean().backward()
torch.optim.SGD(model.parameters(), lr=0.1).step()
checksum = float(sum(p.detach().sum() for p in model.parameters()))
dist.barrier()
out = os.environ["DDP_OUT"]
Path(out, f"rank{rank}.json").write_text(json.dumps(
    {"rank": rank, "world": world, "sum": total.item(), "checksum": checksum}))
dist.barrier()
dist.destroy_process_group()
'''


def test_two_pods_rendezvous_through_the_adapters_torchrun(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    """A 2-node run's Master and Worker, each a process tree given exactly the env the operator
    injects, start the command the adapter builds (torchrun, gloo on CPU), with a small DDP job
    as the script; the Master's name resolves as its headless Service would (hosts file in a
    mount namespace of its own)."""
    assert TORCH_PYTHON.is_file(), f"{TORCH_PYTHON} is missing: `make test` creates .venv-torch"
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(DDP_PROBE)
    (project / "configs/runs/U2.yml").write_text(
        f"_BASE_: U1.yml\ngpus: 1\nnodes: 2\nultralytics: {{script: {probe}}}\n"
    )
    _, job = render(cli, "U2")
    hosts = tmp_path / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + "\n127.0.0.1 u2-master-0\n")
    loaded = Project.discover(project).load_run("U2")
    layout = local_layout(tmp_path / "out", "U2", python=str(TORCH_PYTHON))
    procs = []
    for replica, index in (("master", 0), ("worker", 0)):
        pod_env = {**os.environ, **env_of_container(job), **operator_env(job, replica, index),
                   "DDP_OUT": str(tmp_path)}  # fmt: skip
        pod = Replica.from_env(pod_env)
        command = get_adapter("ultralytics").train_command(loaded.run, layout, pod, None)
        assert command.argv[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node"]
        in_namespace = ["unshare", "--mount", "sh", "-c",
                        f"mount --bind {hosts} /etc/hosts && exec \"$@\"", "sh"]  # fmt: skip
        procs.append(subprocess.Popen([*in_namespace, *command.argv], env=pod_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world"], r["sum"]) for r in ranks] == [(0, 2, 3.0), (1, 2, 3.0)]
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"])  # gradients all-reduced


def env_of_container(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(job)["env"] if "value" in e}
