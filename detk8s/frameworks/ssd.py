"""The jetson-inference SSD trainer (dusty-nv's pytorch-ssd: train_ssd.py and eval_ssd.py;
seed 002), as a PyTorchJob of one pod with one GPU: the script trains on cuda:0 alone (no
DataParallel, no DDP), or on the CPU when there is no GPU.

The dataset is converted in the pod to the VOCdevkit layout it reads (datasets/voc_devkit.py).
Its default --pretrained-ssd is downloaded with wget when missing: detk8s always passes one, the
run's pretrain_weights (fetched before training) or '' (from scratch), so it never downloads.

Its checkpoints are bare state_dicts named `{net}-Epoch-{epoch}-Loss-{val loss}.pth`, written on
validation epochs and the last one; `--resume` loads the weights only and counts epochs from 0
again (the optimizer and the lr schedule restart). So a resumed attempt trains the remaining
epochs into its own directory, `from-epoch-<K>/`, and epoch numbers are read with that offset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

from detk8s.frameworks.base import (
    Checkpoint,
    CheckpointRole,
    Command,
    Evaluation,
    Logged,
    Plan,
    Progress,
    Run,
    Schedule,
    checkout_dir,
)
from detk8s.frameworks.torch_checkpoint import checkpoint_values
from detk8s.layout import Layout
from detk8s.replica import Replica
from detk8s.results.metrics import Metrics
from detk8s.weights import parse_weights_source

NAME = "ssd"
CHECKOUT = "pytorch-ssd"
EVAL_WORKER = "frameworks/ssd_eval.py"  # in the package; runs in the trainer's Python
DATA_DIR, CKPT_DIR, EVAL_DIR = "voc-devkit", "ssd", "ssd-eval"  # under the run's dir
ATTEMPT = "from-epoch-{}"  # a training attempt's --model-dir, by the epochs done before it
DEFAULT_SIZE = 300  # what every net but mb1-ssd is fixed at
_CHECKPOINT = re.compile(r"^(?P<net>.+)-Epoch-(?P<epoch>\d+)-Loss-(?P<loss>.+)\.pth$")
_ATTEMPT = re.compile(r"^from-epoch-(\d+)$")
_PROGRESS = re.compile(
    r"Epoch: (?P<epoch>\d+), Step: (?P<step>\d+)/(?P<steps>\d+), Avg Loss: (?P<loss>[\d.]+)"
)
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - ")
_PER_CLASS = re.compile(r"^(?:Epoch: (\d+), )?Average Precision Per-class:\s*$")
_CLASS_AP = re.compile(r"^    (\S.*?): (\S+)\s*$")
_MEAN_AP_LINE = re.compile(r"Mean Average Precision \(mAP\):[ \t]+(\S+)")
_MEAN_AP = re.compile(r"^(?:Epoch: (\d+), )?Mean Average Precision \(mAP\):\s+(\S+)\s*$")

Net = Literal["mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "vgg16-ssd", "sq-ssd-lite"]


class SsdSettings(BaseModel):
    """The `ssd:` section of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    net: Net = Field("mb1-ssd", description="The network (--net).")
    code_dir: str | None = Field(
        None,
        pattern=r"^/",
        description="The pytorch-ssd checkout, absolute; default: the image's.",
    )
    workers: NonNegativeInt = Field(2, description="DataLoader workers (--num-workers).")
    validation_epochs: PositiveInt = Field(
        1, description="Validate (and save a checkpoint) every this many epochs."
    )
    scheduler: Literal["cosine", "multi-step"] = Field(
        "cosine", description="The learning-rate schedule."
    )
    t_max: PositiveFloat | None = Field(
        None, description="Cosine period in epochs; default: the epochs of the attempt."
    )
    milestones: list[PositiveInt] | None = Field(None, description="multi-step: epochs.")
    momentum: float = Field(0.9, ge=0, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay.")
    base_net_lr: PositiveFloat | None = Field(None, description="Default: the trainer's 0.001.")
    extra_layers_lr: PositiveFloat | None = Field(None, description="Default: the run's lr.")
    freeze_base_net: bool = Field(False, description="Freeze the backbone (base net).")
    freeze_net: bool = Field(False, description="Freeze everything but the prediction heads.")
    mb2_width_mult: PositiveFloat = Field(1.0, description="mb2-ssd-lite's width multiplier.")


class SsdAdapter:
    name: ClassVar[str] = NAME
    family: ClassVar[str] = "pytorch"
    input_stride: ClassVar[int] = 1  # train_ssd.py sizes its priors to any
    lr_scales_with_batch: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = SsdSettings
    moved_keys: ClassVar[dict[str, str]] = {}

    # -- render time ----------------------------------------------------------------------------

    def check(self, run: Run) -> list[tuple[str, str]]:
        c, s = run.config, run.settings
        problems = []
        if c.gpus != 1:
            problems.append(("gpus", f"{c.gpus}: the SSD trainer trains on one GPU (cuda:0) "
                                     "only: set gpus: 1"))  # fmt: skip
        if c.nodes != 1:
            problems.append(("nodes", f"{c.nodes}: the SSD trainer is one process on one node: "
                                      "set nodes: 1"))  # fmt: skip
        if c.input_size not in (None, DEFAULT_SIZE) and s.net != "mb1-ssd":
            problems.append(("input_size", f"{c.input_size}: {s.net} trains at {DEFAULT_SIZE} "
                                           "only; other sizes are for mb1-ssd"))  # fmt: skip
        if s.milestones and s.scheduler != "multi-step":
            problems.append((f"{NAME}.milestones", "are for scheduler: multi-step"))
        if s.t_max is not None and s.scheduler != "cosine":
            problems.append((f"{NAME}.t_max", "is for scheduler: cosine"))
        if s.mb2_width_mult != 1.0 and s.net != "mb2-ssd-lite":
            problems.append((f"{NAME}.mb2_width_mult", "is for net: mb2-ssd-lite"))
        return problems

    def plan(self, run: Run, layout: Layout) -> Plan:
        return Plan(job_kind="PyTorchJob")

    def schedule(self, run: Run) -> Schedule:
        return Schedule()

    # -- in the pod -----------------------------------------------------------------------------

    def data_dir(self, run: Run, layout: Layout) -> str:
        return f"{layout.run_dir(run.name)}/{DATA_DIR}"

    def prepare(self, run: Run, layout: Layout) -> None:
        from detk8s.datasets.voc_devkit import convert

        dataset = run.dataset
        root = Path(layout.dataset_dir(dataset))
        lists = {"trainval": Path(layout.train_list(run.name, dataset)),
                 "test": Path(dataset.val_list)}  # fmt: skip
        lists = {k: v if v.is_absolute() else root / v for k, v in lists.items()}
        convert(root, lists, root / dataset.label_list, Path(self.data_dir(run, layout)))

    def code_dir(self, run: Run, layout: Layout) -> str:
        return checkout_dir(layout, f"{NAME}.code_dir", run.settings.code_dir, CHECKOUT)

    def resolution(self, run: Run) -> int:
        return run.config.input_size or DEFAULT_SIZE

    def train_command(
        self, run: Run, layout: Layout, replica: Replica, resume: Checkpoint | None
    ) -> Command:
        c, s = run.config, run.settings
        done = (resume.epoch or 0) if resume is not None else 0
        epochs = c.epochs - done
        model_dir = self.checkpoint_dir(run, layout) / ATTEMPT.format(done)
        args = [
            f"{self.code_dir(run, layout)}/train_ssd.py",
            "--dataset-type", "voc", "--data", self.data_dir(run, layout),
            "--model-dir", str(model_dir),
            "--net", s.net, "--resolution", str(self.resolution(run)),
            "--batch-size", str(c.batch_size), "--epochs", str(epochs), "--lr", f"{c.lr:g}",
            "--num-workers", str(s.workers), "--validation-epochs", str(s.validation_epochs),
            "--momentum", f"{s.momentum:g}", "--weight-decay", f"{s.weight_decay:g}",
            "--scheduler", s.scheduler,
        ]  # fmt: skip
        if s.scheduler == "cosine":
            args += ["--t-max", f"{s.t_max or epochs:g}"]
        elif s.milestones:
            args += ["--milestones", ",".join(str(m) for m in s.milestones)]
        for flag, value in (("--base-net-lr", s.base_net_lr),
                            ("--extra-layers-lr", s.extra_layers_lr)):  # fmt: skip
            args += [flag, f"{value:g}"] if value is not None else []
        args += ["--freeze-base-net"] if s.freeze_base_net else []
        args += ["--freeze-net"] if s.freeze_net else []
        args += ["--mb2-width-mult", f"{s.mb2_width_mult:g}"] if s.net == "mb2-ssd-lite" else []
        # Its in-training mAP builds its evaluator on cuda:0 whatever the device: GPU only.
        args += ["--validation-mean-ap"] if c.eval and replica.gpus else []
        if resume is not None:
            args += ["--resume", str(resume.weights), "--pretrained-ssd", ""]
        elif c.pretrain_weights:
            source = parse_weights_source(c.pretrain_weights)
            args += ["--pretrained-ssd", layout.pretrained_weights(run.name, run.dataset, source)]
        else:
            args += ["--pretrained-ssd", ""]  # from scratch; the default would be downloaded
        args += c.extra_args
        return Command([layout.python, *args])

    def checkpoint_dir(self, run: Run, layout: Layout) -> Path:
        return Path(layout.run_dir(run.name)) / CKPT_DIR

    def checkpoints(self, run: Run, directory: Path) -> list[Checkpoint]:
        """The newest whole checkpoint of all attempts, by epochs done."""
        newest: tuple[int, Path] | None = None
        for attempt in directory.iterdir() if directory.is_dir() else []:
            offset = _ATTEMPT.match(attempt.name)
            if offset is None:
                continue
            for path in attempt.glob("*.pth"):
                name = _CHECKPOINT.match(path.name)
                if name is None or name.group("net") != run.settings.net:
                    continue
                epochs = int(offset.group(1)) + int(name.group("epoch")) + 1
                if (newest is None or epochs > newest[0]) and checkpoint_values(path) is not None:
                    newest = (epochs, path)
        if newest is None:
            return []
        epochs, path = newest
        role: CheckpointRole = "final" if epochs >= run.config.epochs else "resumable"
        return [Checkpoint("latest", (path,), path, role, epochs)]

    def evaluated_weights(self, run: Run, directory: Path) -> Checkpoint | None:
        """The last epoch's: the trainer keeps no best weights."""
        final = [c for c in self.checkpoints(run, directory) if c.role == "final"]
        return final[0] if final else None

    def eval_command(
        self, run: Run, layout: Layout, replica: Replica, weights: Checkpoint
    ) -> Command:
        """eval_ssd.py (through ssd_eval.py, at the trained resolution) on the val list."""
        s = run.settings
        data = self.data_dir(run, layout)
        return Command([
            layout.python, f"{layout.package_dir}/{EVAL_WORKER}", self.code_dir(run, layout),
            str(self.resolution(run)),
            "--net", s.net, "--model", str(weights.weights), "--dataset_type", "voc",
            "--dataset", data, "--label_file", f"{data}/labels.txt",
            "--use_cuda", "true" if replica.gpus else "false",
            "--eval_dir", f"{layout.run_dir(run.name)}/{EVAL_DIR}",
            "--mb2_width_mult", f"{s.mb2_width_mult:g}",
        ])  # fmt: skip

    def progress_lines(self, run: Run, log: str) -> list[Logged]:
        """`Epoch: 3, Step: 10/182, Avg Loss: 7.35, ...` (epochs from 0, within an attempt)."""
        return [
            (m.start(), Progress(int(m["epoch"]) + 1, run.config.epochs, int(m["step"]),
                                 int(m["steps"]), float(m["loss"])))
            for m in _PROGRESS.finditer(log)
        ]  # fmt: skip

    def evaluations(self, run: Run, log: str) -> list[Evaluation]:
        """`Epoch: 5, Mean Average Precision (mAP):  0.0086` (a fraction) every
        `validation_epochs`."""
        return [
            (m.start(), round(value * 100, 2))
            for m in _MEAN_AP_LINE.finditer(log)
            if (value := _number(m.group(1))) is not None
        ]

    def metrics(self, run: Run, layout: Layout, eval_output: str) -> Metrics:
        return parse_ap_output(eval_output)


def parse_ap_output(text: str) -> Metrics:
    """The last `Average Precision Per-class:` block (one `    name: ap` line a class) and
    `Mean Average Precision (mAP):  x`, as eval_ssd.py prints them, and train_ssd.py with an
    `Epoch: N, ` prefix. APs are VOC2007 11-point fractions; returned in percent."""
    out = Metrics()
    per_class: dict[str, float] = {}
    lines: list[str] = []
    in_block = False
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", raw.rstrip("\n"))
        if _PER_CLASS.match(line):
            per_class, lines, in_block = {}, [line.strip()], True
            continue
        ap = _CLASS_AP.match(line) if in_block else None
        if ap is not None and _number(ap.group(2)) is not None:
            per_class[ap.group(1)] = round(_number(ap.group(2)) * 100, 2)  # type: ignore[operator]
            lines.append(line.strip())
            continue
        in_block = False
        mean = _MEAN_AP.match(line)
        if mean is not None and _number(mean.group(2)) is not None:
            out.map50 = round(_number(mean.group(2)) * 100, 2)  # type: ignore[operator]
            out.per_class, out.lines = per_class, [*lines, line.strip()]
            out.details = {"voc_map_type": "11point"}
            if mean.group(1) is not None:
                out.details["epoch"] = int(mean.group(1))
    return out


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
