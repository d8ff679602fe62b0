"""YOLOX and miemiedetection through the framework layer: X1 and M1 render as CRD-valid
PyTorchJobs; each replica's argv is parsed by YOLOX's own tools/ parsers (YOLOX 0.3.0 from PyPI,
the version the image pins, in .venv-torch) or, for miemiedetection (not on PyPI), checked
against seed 001's command; the rendered experiment loads in YOLOX, reads the dataset as
converted to COCO JSON and computes a training loss on CPU; checkpoints in YOLOX's format are
read without torch; metrics come from seed 001's real eval output.

The trainers themselves need CUDA (their Trainer calls torch.cuda.set_device): a whole training
run cannot happen on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from k8s_schema import replica_specs, validate_job, validate_pod_templates
from test_render import container, render
from test_ultralytics import TORCH_PYTHON, operator_env

from detk8s.datasets.synthetic import make_voc_dataset
from detk8s.frameworks import get_adapter
from detk8s.frameworks.base import Checkpoint
from detk8s.layout import POD, local_layout
from detk8s.project import Project
from detk8s.replica import Replica
from detk8s.results.metrics import parse_metrics

REPO = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).parent / "data" / "logs"
YOLOX_SRC = next((REPO / ".venv-torch/src").glob("yolox-*/"), REPO / ".venv-torch/src/yolox")
ADAPTER = get_adapter("yolox")


def yolox_parse(script: str, argv: list[str]) -> dict[str, Any]:
    """argv (without the interpreter and script) as YOLOX's tools/<script>.py parses it."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        f"from tools.{script} import make_parser;"
        "print(json.dumps(vars(make_parser().parse_args(sys.argv[2:]))))"
    )
    assert (YOLOX_SRC / "tools" / f"{script}.py").is_file(), f"{YOLOX_SRC}: run `make test`"
    done = subprocess.run([str(TORCH_PYTHON), "-c", code, str(YOLOX_SRC), *argv],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    parsed: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return parsed


def load(project: Path, run: str) -> Any:
    return Project.discover(project).load_run(run).run


def argv_of(
    project: Path, run: str, replica: Replica, resume: Checkpoint | None = None
) -> list[str]:
    return ADAPTER.train_command(load(project, run), POD, replica, resume).argv


# -- render --------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["X1", "M1"])
def test_example_runs_render_crd_valid_pytorchjobs(project: Path, cli: Any, run: str) -> None:
    cm, job = render(cli, run)
    assert job["kind"] == "PyTorchJob"
    validate_job(job)
    validate_pod_templates(job)
    assert list(replica_specs(job)) == ["Master"]
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "/detk8s/pytorch:" in container(job)["image"]
    config = json.loads(cm["data"]["yolox.json"])
    attributes = config["attributes"]
    assert attributes["num_classes"] == 2 and attributes["data_dir"] == f"/output/{run}/coco"
    loaded = load(project, run).config
    assert attributes["basic_lr_per_img"] == pytest.approx(loaded.lr / loaded.total_batch)
    assert attributes["max_epoch"] == loaded.epochs
    assert cm["data"]["detk8s_exp.py"] == (REPO / "detk8s/frameworks/yolox_exp.py").read_text()


# -- argv ------------------------------------------------------------------------------------------


def test_yolox_argv_for_one_gpu_two_gpus_and_two_nodes(project: Path, cli: Any) -> None:
    (project / "configs/runs/X9.yml").write_text("_BASE_: X1.yml\ngpus: 1\nlr: 0.0025\n")
    (project / "configs/runs/X2.yml").write_text("_BASE_: X1.yml\nnodes: 2\nlr: 0.01\n")
    head = ["python", "/opt/trainers/YOLOX/tools/train.py", "-f", "/etc/detk8s/detk8s_exp.py",
            "-expn", "train"]  # fmt: skip
    weights = ["-c", "/output/{run}/pretrained/yolox_s.pth"]

    def expect(run: str, gpus: int, total: int, *dist: str) -> list[str]:
        return [*head, "-d", str(gpus), "-b", str(total), "--fp16", *dist,
                *(w.format(run=run) for w in weights)]  # fmt: skip

    one = ADAPTER.train_command(load(project, "X9"), POD, Replica(gpus=1), None)
    assert one.argv == expect("X9", 1, 16)
    assert one.env == {"PYTHONPATH": "/opt/trainers/YOLOX"}  # the checkout's yolox package
    _, job = render(cli, "X1")
    master = Replica.from_env(operator_env(job, "master", 0), dev=Path("/nonexistent"))
    two = argv_of(project, "X1", replace(master, gpus=2))
    assert two == expect("X1", 2, 32)  # one node: YOLOX picks its own port
    _, job = render(cli, "X2")
    worker = Replica.from_env(operator_env(job, "worker", 0), dev=Path("/nonexistent"))
    nodes = argv_of(project, "X2", replace(worker, gpus=2))
    dist = ["--num_machines", "2", "--machine_rank", "1", "--dist-url", "tcp://x2-master-0:23456"]
    assert nodes == expect("X2", 2, 64, *dist)

    parsed = yolox_parse("train", nodes[2:])
    assert (
        parsed["exp_file"] == "/etc/detk8s/detk8s_exp.py" and parsed["experiment_name"] == "train"
    )
    assert (parsed["devices"], parsed["batch_size"], parsed["fp16"]) == (2, 64, True)
    assert (parsed["num_machines"], parsed["machine_rank"]) == (2, 1)
    assert parsed["dist_url"] == "tcp://x2-master-0:23456"
    assert parsed["ckpt"] == "/output/X2/pretrained/yolox_s.pth" and parsed["resume"] is False
    assert parsed["opts"] == [] and parsed["cache"] is False and parsed["occupy"] is False


def test_resume_goes_before_the_opts_remainder(project: Path) -> None:
    (project / "configs/runs/X3.yml").write_text(
        "_BASE_: X1.yml\nyolox:\n  exp: exps/default/yolox_s.py\n  cache: true\n  occupy: true\n"
        "  opts: {no_aug_epochs: 5, mosaic_prob: 0.5}\n"
    )
    latest = Path("/output/X3/train/latest_ckpt.pth")
    resume = Checkpoint("latest", (latest,), latest, "resumable", 7)
    argv = argv_of(project, "X3", Replica(gpus=2), resume)
    assert argv[-7:] == ["--resume", "-c", str(latest), "no_aug_epochs", "5", "mosaic_prob", "0.5"]
    assert argv[2] == "--cache"  # first: newer YOLOX's --cache takes an optional value
    parsed = yolox_parse("train", argv[2:])
    assert parsed["resume"] is True and parsed["ckpt"] == str(latest)  # not the pretrained
    assert parsed["opts"] == ["no_aug_epochs", "5", "mosaic_prob", "0.5"]
    assert parsed["cache"] is True and parsed["occupy"] is True and parsed["devices"] == 2


def test_eval_argv_is_seed_001s(project: Path) -> None:
    run = load(project, "X1")
    best = Path("/output/X1/train/best_ckpt.pth")
    command = ADAPTER.eval_command(run, POD, Replica(gpus=2), Checkpoint("best", (best,), best,
                                                                         "best", 9))  # fmt: skip
    assert command.argv == [
        "python", "/opt/trainers/YOLOX/tools/eval.py", "-f", "/etc/detk8s/detk8s_exp.py",
        "-expn", "eval", "-c", str(best), "-b", "32", "-d", "2", "--conf", "0.025",
        "--tsize", "640", "--fp16",
    ]  # fmt: skip
    parsed = yolox_parse("eval", command.argv[2:])
    assert (parsed["ckpt"], parsed["batch_size"], parsed["devices"]) == (str(best), 32, 2)
    assert (parsed["conf"], parsed["tsize"], parsed["fp16"]) == (0.025, 640, True)


# Seed 001's miemiedetection command (1 machine, 2 GPUs) and the options its train.py adds to
# YOLOX's (seed 001: -eb, -w, -ew; seed 003: YOLOX's table).
SEED_001 = [
    "python", "tools/train.py", "-f", "exps/picodet/picodet_s_416_voc2012.py", "-d", "2",
    "-b", "48", "-eb", "24", "-w", "4", "-ew", "4", "-c", "picodet_s_416_coco_lcnet.pth",
]  # fmt: skip
MIEMIE_OPTIONS = {"-expn", "-n", "--dist-backend", "--dist-url", "-b", "-d", "-f", "--resume",
                  "-c", "--num_machines", "--machine_rank", "--fp16", "--cache", "-o", "-eb", "-w",
                  "-ew"}  # fmt: skip


def test_miemiedetection_argv_is_seed_001s(project: Path) -> None:
    argv = argv_of(project, "M1", Replica(gpus=2))
    flags = [a for a in argv if a.startswith("-")]
    assert set(flags) <= MIEMIE_OPTIONS
    ours = dict(zip(argv[2::2], argv[3::2], strict=False))
    seed = dict(zip(SEED_001[2::2], SEED_001[3::2], strict=True))
    for flag in ("-d", "-b", "-eb", "-w", "-ew"):
        assert ours[flag] == seed[flag], flag
    assert ours["-c"] == "/output/M1/pretrained/picodet_s_416_coco_lcnet.pth"
    exp = json.loads(ADAPTER.plan(load(project, "M1"), POD).files["yolox.json"])
    assert exp["package"] == "mmdet"
    assert exp["exp_file"] == "/opt/trainers/miemiedetection/exps/picodet/picodet_s_416_voc2012.py"


@pytest.mark.parametrize(
    ("yolox", "key", "message"),
    [
        ({"exp": "../x.py"}, "yolox.exp", "leaves the checkout"),
        ({"exp": "yolox-s", "eval_batch_size": 8}, "yolox.eval_batch_size", "miemiedetection's"),
        ({"exp": "yolox-s", "opts": {"max_epoch": 3}}, "yolox.opts.max_epoch", "set from epochs"),
        ({"exp": "yolox-s", "opts": {"a b": 3}}, "yolox.opts.a b", "not an experiment attribute"),
        ({"exp": "yolox-s", "code_dir": "rel/path"}, "yolox.code_dir", "absolute"),
        ({"exp": "yolox-s", "cache": "disk"}, "yolox.cache", "valid boolean"),
    ],
)
def test_bad_settings_are_one_line(
    project: Path, cli: Any, yolox: dict[str, Any], key: str, message: str
) -> None:
    import yaml

    run = {"_BASE_": "X1.yml", "yolox": yolox}
    (project / "configs/runs/X8.yml").write_text(yaml.safe_dump(run))
    r = cli("validate", "X8")
    assert r.code == 2, r.err
    line = next(line for line in r.err.splitlines() if key in line)
    assert "X8.yml" in line and message in line, r.err
    assert "Traceback" not in r.err


# -- the experiment in YOLOX, on CPU ---------------------------------------------------------------


EXP_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
from yolox.exp import get_exp
exp = get_exp(sys.argv[2], None)
exp.merge(["mosaic_prob", "0.5"])
exp.input_size = (320, 320)  # small, for a CPU
loader = exp.get_data_loader(batch_size=2, is_distributed=False, no_aug=True)
images, targets, _, _ = next(iter(loader))
model = exp.get_model()
model.train()
loss = model(images, targets)["total_loss"]
loss.backward()
print(json.dumps({"num_classes": exp.num_classes, "max_epoch": exp.max_epoch,
                  "mosaic_prob": exp.mosaic_prob, "output_dir": exp.output_dir,
                  "images": len(exp.dataset), "loss": float(loss)}))
"""


def test_the_rendered_experiment_trains_in_yolox(project: Path, tmp_path: Path) -> None:
    """yolox.json + detk8s_exp.py as the pod has them, the dataset as prepare() converts it:
    YOLOX's get_exp loads them, its data loader reads the COCO JSON and images, and its
    model computes a loss with the dataset's two classes."""
    (project / "configs/runs/X7.yml").write_text(
        "_BASE_: X1.yml\nyolox:\n  exp: exps/default/yolox_s.py\n  workers: 0\n"
        f"  code_dir: {YOLOX_SRC}\n"
    )
    data = make_voc_dataset(tmp_path / "work/data/synthetic_voc")
    loaded = Project.discover(project).load_run("X7").run
    dataset = loaded.dataset.model_copy(update={"source": f"file://{data}"})
    run = replace(loaded, dataset=dataset)
    layout = local_layout(tmp_path / "work", "X7")
    ADAPTER.prepare(run, layout)
    ADAPTER.prepare(run, layout)  # idempotent
    config_dir = Path(layout.config_dir)
    config_dir.mkdir(parents=True)
    for name, text in ADAPTER.plan(run, layout).files.items():
        (config_dir / name).write_text(text)
    done = subprocess.run(
        [str(TORCH_PYTHON), "-c", EXP_CHECK, str(YOLOX_SRC), str(config_dir / "detk8s_exp.py")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    train_lines = len((data / "train.txt").read_text().splitlines())
    assert out["num_classes"] == 2 and out["max_epoch"] == 300 and out["mosaic_prob"] == 0.5
    assert out["images"] == train_lines and out["output_dir"] == layout.run_dir("X7")
    assert 0 < out["loss"] < 1e4
    coco = json.loads((Path(layout.run_dir("X7")) / "coco/annotations/val.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["mouse", "other"]
    assert [c["id"] for c in coco["categories"]] == [1, 2]


# -- checkpoints and metrics -------------------------------------------------------------------


SAVE = """
import sys, torch
model = torch.nn.Conv2d(3, 4, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for path, epoch in zip(sys.argv[1::2], sys.argv[2::2]):
    torch.save({"start_epoch": int(epoch), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "best_ap": 0.3, "curr_ap": 0.2}, path)
"""


def save_checkpoints(*pairs: tuple[Path, int]) -> None:
    args = [str(x) for path, epoch in pairs for x in (path, epoch)]
    subprocess.run([str(TORCH_PYTHON), "-c", SAVE, *args], check=True, timeout=300)


def test_checkpoints_in_yolox_and_miemiedetection_formats(project: Path, tmp_path: Path) -> None:
    x1, m1 = load(project, "X1"), load(project, "M1")  # 300 and 16 epochs
    yolox, miemie = tmp_path / "yolox", tmp_path / "miemie"
    yolox.mkdir()
    miemie.mkdir()
    save_checkpoints((yolox / "latest_ckpt.pth", 12), (yolox / "best_ckpt.pth", 10),
                     (yolox / "epoch_10_ckpt.pth", 10), (miemie / "15.pth", 15),
                     (miemie / "16.pth", 16), (miemie / "best_ckpt.pth", 14),
                     (miemie / "last_ckpt.pth", 16))  # fmt: skip
    found = {c.name: (c.weights.name, c.role, c.epoch) for c in ADAPTER.checkpoints(x1, yolox)}
    assert found == {"latest": ("latest_ckpt.pth", "resumable", 12),
                     "best": ("best_ckpt.pth", "best", 10)}  # fmt: skip
    assert ADAPTER.evaluated_weights(x1, yolox) is None  # not trained to the end: exit 0 or not
    found = {c.name: (c.weights.name, c.role, c.epoch) for c in ADAPTER.checkpoints(m1, miemie)}
    assert found == {"latest": ("16.pth", "final", 16), "best": ("best_ckpt.pth", "best", 14)}
    result = ADAPTER.evaluated_weights(m1, miemie)
    assert result is not None and result.name == "best"
    # a checkpoint being written (the zip's directory comes last) does not count
    whole = (miemie / "16.pth").read_bytes()
    (miemie / "17.pth").write_bytes(whole[: len(whole) // 2])
    assert ADAPTER.checkpoints(m1, miemie)[0].weights.name == "16.pth"


def test_metrics_from_seed_001s_eval_output(project: Path) -> None:
    m = ADAPTER.metrics(load(project, "M1"), POD, (LOGS / "yolox_eval.log").read_text())
    assert (m.map50_95, m.map50) == (32.0, 46.9)
    assert m.details["forward_ms"] == 8.53 and m.fps == round(1000 / 8.53, 2)
    assert m.details["coco"]["ARl"] == 0.706
    assert m == parse_metrics((LOGS / "yolox_eval.log").read_text())
