"""The jetson-inference SSD trainer through the framework layer: S1 renders as a one-pod, one-GPU
PyTorchJob, and its rules refuse the rest in one line; each argv is parsed by the trainer's own
parsers (copied verbatim from pytorch-ssd at the pinned commit: it is not on PyPI); resume
across attempts; the VOCdevkit layout; metrics from the trainer's real output.

tests/data/logs/ssd_train.log and ssd_eval.log are real output of train_ssd.py and eval_ssd.py
at that commit, run on this machine's CPU (seed 002 shows the code that prints them).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from k8s_schema import replica_specs, validate_job, validate_pod_templates
from test_render import container, render
from test_ultralytics import TORCH_PYTHON
from test_yolox import load, save_checkpoints

from detk8s.datasets.synthetic import make_voc_dataset
from detk8s.datasets.voc import VocError
from detk8s.datasets.voc_devkit import convert
from detk8s.frameworks import get_adapter
from detk8s.frameworks.base import Checkpoint
from detk8s.frameworks.ssd import parse_ap_output
from detk8s.layout import POD
from detk8s.replica import Replica

DATA = Path(__file__).parent / "data"
ADAPTER = get_adapter("ssd")


def parsers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ssd_parsers", DATA / "ssd" / "parsers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_args(project: Path, run: str, replica: Replica, resume: Checkpoint | None = None) -> Any:
    argv = ADAPTER.train_command(load(project, run), POD, replica, resume).argv
    assert argv[:2] == ["python", "/opt/trainers/pytorch-ssd/train_ssd.py"]
    return parsers().train_parser().parse_args(argv[2:])


def test_s1_is_one_pod_with_one_gpu(project: Path, cli: Any) -> None:
    _, job = render(cli, "S1")
    validate_job(job)
    validate_pod_templates(job)
    specs = replica_specs(job)
    assert list(specs) == ["Master"] and specs["Master"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "1"
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ("gpus: 2\n", "gpus: 2: the SSD trainer trains on one GPU (cuda:0) only: set gpus: 1"),
        ("nodes: 2\n", "nodes: 2: the SSD trainer is one process on one node: set nodes: 1"),
        ("input_size: 512\nssd: {net: vgg16-ssd}\n",
         "input_size: 512: vgg16-ssd trains at 300 only; other sizes are for mb1-ssd"),
        ("ssd: {net: mb1-ssd, milestones: [80]}\n",
         "ssd.milestones: are for scheduler: multi-step"),
        ("ssd: {net: resnet-ssd}\n", "ssd.net: input should be 'mb1-ssd'"),
    ],
)  # fmt: skip
def test_its_rules_refuse_in_one_line(project: Path, cli: Any, changes: str, expected: str) -> None:
    (project / "configs/runs/S2.yml").write_text(f"_BASE_: S1.yml\n{changes}")
    for command in ("validate", "render"):
        r = cli(command, "S2")
        assert r.code == 2, r.err
        assert r.err.strip().count("\n") == 0 and "Traceback" not in r.err
        assert r.err.startswith(f"error: configs/runs/S2.yml: {expected}"), r.err


def test_train_argv_on_a_gpu_parsed_by_train_ssd(project: Path) -> None:
    args = train_args(project, "S1", Replica(gpus=1))
    assert (args.dataset_type, args.datasets) == ("voc", ["/output/S1/voc-devkit"])
    assert args.checkpoint_folder == "/output/S1/ssd/from-epoch-0"
    assert (args.net, args.resolution, args.batch_size, args.num_epochs) == (
        "mb1-ssd",
        300,
        32,
        100,
    )
    assert (args.lr, args.num_workers, args.validation_epochs) == (0.01, 4, 5)
    assert args.validation_mean_ap is True and args.resume is None
    assert args.scheduler == "cosine" and args.t_max == 100  # the cosine ends with the run
    # the run's weights, fetched by `detk8s exec`: never the default train_ssd.py downloads
    assert args.pretrained_ssd == "/output/S1/pretrained/djf5w54rjvpqocsiztzaandq1m3avr7c.pth"


def test_from_scratch_and_on_a_cpu(project: Path) -> None:
    (project / "configs/runs/S3.yml").write_text(
        "_BASE_: S1.yml\npretrain_weights: null\ninput_size: 512\n"
        "ssd: {net: mb1-ssd, scheduler: multi-step, milestones: [60, 90]}\n"
    )
    args = train_args(project, "S3", Replica(gpus=0))
    assert args.pretrained_ssd == ""  # '' loads nothing and downloads nothing
    assert args.validation_mean_ap is False  # its evaluator is on cuda:0 whatever the device
    assert (args.resolution, args.scheduler, args.milestones) == (512, "multi-step", "60,90")


def test_resume_trains_the_remaining_epochs_in_a_new_dir(project: Path) -> None:
    ckpt = Path("/output/S1/ssd/from-epoch-0/mb1-ssd-Epoch-39-Loss-3.25.pth")
    args = train_args(project, "S1", Replica(gpus=1), Checkpoint("latest", (ckpt,), ckpt,
                                                                 "resumable", 40))  # fmt: skip
    assert args.resume == str(ckpt) and args.pretrained_ssd == ""
    assert (args.num_epochs, args.t_max) == (60, 60)
    assert args.checkpoint_folder == "/output/S1/ssd/from-epoch-40"


def test_eval_argv_parsed_by_eval_ssd(project: Path) -> None:
    ckpt = Path("/output/S1/ssd/from-epoch-40/mb1-ssd-Epoch-59-Loss-3.1.pth")
    run = load(project, "S1")
    final = Checkpoint("latest", (ckpt,), ckpt, "final", 100)
    argv = ADAPTER.eval_command(run, POD, Replica(gpus=1), final).argv
    assert argv[:4] == ["python", "/opt/detk8s/detk8s/frameworks/ssd_eval.py",
                        "/opt/trainers/pytorch-ssd", "300"]  # fmt: skip
    args = parsers().eval_parser().parse_args(argv[4:])
    assert (args.net, args.model, args.dataset) == ("mb1-ssd", str(ckpt), "/output/S1/voc-devkit")
    assert args.use_cuda is True and args.eval_dir == "/output/S1/ssd-eval"


def test_checkpoints_across_attempts(project: Path, tmp_path: Path) -> None:
    run = load(project, "S1")  # 100 epochs
    first, second = tmp_path / "from-epoch-0", tmp_path / "from-epoch-40"
    first.mkdir()
    second.mkdir()
    save_checkpoints((first / "mb1-ssd-Epoch-39-Loss-8.031576871871948.pth", 0),
                     (second / "mb1-ssd-Epoch-4-Loss-nan.pth", 0),
                     (second / "vgg16-ssd-Epoch-50-Loss-1.0.pth", 0))  # fmt: skip
    (found,) = ADAPTER.checkpoints(run, tmp_path)
    assert (found.weights.name, found.role, found.epoch) == ("mb1-ssd-Epoch-4-Loss-nan.pth",
                                                             "resumable", 45)  # fmt: skip
    assert ADAPTER.evaluated_weights(run, tmp_path) is None
    whole = found.weights.read_bytes()
    (second / "mb1-ssd-Epoch-59-Loss-1e+05.pth").write_bytes(whole[:1000])  # being written
    assert ADAPTER.checkpoints(run, tmp_path)[0].epoch == 45
    (second / "mb1-ssd-Epoch-59-Loss-1e+05.pth").write_bytes(whole)
    final = ADAPTER.evaluated_weights(run, tmp_path)
    assert final is not None and (final.role, final.epoch) == ("final", 100)


def test_voc_devkit_layout(tmp_path: Path) -> None:
    root = make_voc_dataset(tmp_path / "voc")
    lists = {"trainval": root / "train.txt", "test": root / "val.txt"}
    out = convert(root, lists, root / "label_list.txt", tmp_path / "devkit")
    ids = (out / "ImageSets/Main/trainval.txt").read_text().split()
    assert len(ids) == len((root / "train.txt").read_text().splitlines())
    assert (out / "JPEGImages" / f"{ids[0]}.jpg").resolve().is_file()
    assert (out / "Annotations" / f"{ids[0]}.xml").read_text().startswith("<annotation")
    assert (out / "labels.txt").read_text() == "mouse\nother\n"
    mtime = (out / "ImageSets/Main/test.txt").stat().st_mtime_ns
    convert(root, lists, root / "label_list.txt", out)  # the same inputs: nothing redone
    assert (out / "ImageSets/Main/test.txt").stat().st_mtime_ns == mtime
    first = (root / "train.txt").read_text().splitlines()[0].split()
    (root / "other").mkdir()
    (root / "other" / Path(first[0]).name).write_bytes((root / first[0]).read_bytes())
    (root / "val.txt").write_text(f"other/{Path(first[0]).name} {first[1]}\n")
    with pytest.raises(VocError, match="have the same id"):
        convert(root, lists, root / "label_list.txt", out)


def test_metrics_of_eval_ssd_and_of_training_validation() -> None:
    evaluated = parse_ap_output((DATA / "logs/ssd_eval.log").read_text())
    assert evaluated.map50 == 1.01 and evaluated.per_class == {"mouse": 1.13, "other": 0.9}
    assert evaluated.details == {"voc_map_type": "11point"}
    assert evaluated.lines[-1] == "Mean Average Precision (mAP):  0.010140276266454053"
    validation = parse_ap_output((DATA / "logs/ssd_train.log").read_text())
    assert (validation.map50, validation.per_class) == (evaluated.map50, evaluated.per_class)
    assert validation.details["epoch"] == 29  # the last of several validations
    assert parse_ap_output("Average Precision Per-class:\n").map50 is None


def test_torch_checkpoint_values_without_torch(tmp_path: Path) -> None:
    from detk8s.frameworks.torch_checkpoint import checkpoint_values

    path = tmp_path / "c.pth"
    save_checkpoints((path, 7))
    assert checkpoint_values(path) == {"start_epoch": 7, "best_ap": 0.3, "curr_ap": 0.2}
    evil = tmp_path / "evil.pth"
    code = ("import torch, os, sys\nclass E:\n    def __reduce__(self):\n"
            "        return (os.system, ('touch ' + sys.argv[2],))\n"
            "torch.save({'start_epoch': 1, 'x': E()}, sys.argv[1])\n")  # fmt: skip
    subprocess.run([str(TORCH_PYTHON), "-c", code, str(evil), str(tmp_path / "pwned")], check=True)
    assert checkpoint_values(evil) == {"start_epoch": 1}
    assert not (tmp_path / "pwned").exists()  # nothing it names was run
