"""YOLOX and miemiedetection (seeds 003 and 001): one CLI, two code bases, as a PyTorchJob.

Both take `tools/train.py -f EXP -d GPUS_PER_NODE -b TOTAL_BATCH ... [opts]` and start their
own processes, one per GPU, meeting at `--dist-url` (on one node they pick a free port); each pod
of a multi-node job runs one launcher with its `--machine_rank`. They train on CUDA only.

The experiment they get is yolox_exp.py (in the run's ConfigMap): the named experiment with the
run's dataset (VOC in storage, converted to COCO JSON in the pod: datasets/coco.py), epochs, lr
and output dir set, then the run's free-form `opts` merged by the trainer as usual.

Both catch exceptions in training and still exit 0 (`@logger.catch`): a run counts as trained
only when its checkpoints say it reached the last epoch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator

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
from detk8s.results.metrics import Metrics, map50_points, parse_metrics
from detk8s.weights import parse_weights_source

NAME = "yolox"
EXP_FILE, EXP_CONFIG = "detk8s_exp.py", "yolox.json"  # in the ConfigMap
WRAPPER = Path(__file__).with_name("yolox_exp.py")
TRAIN_NAME, EVAL_NAME = "train", "eval"  # -expn: the dirs under the run's dir they write to
COCO_DIR = "coco"  # the converted dataset, under the run's dir


@dataclass(frozen=True)
class CodeBase:
    """What differs between the two code bases."""

    checkout: str  # its directory under the image's trainers dir
    package: str  # the Python package holding `exp.get_exp`
    eval_options: bool  # train.py takes -eb / -w / -ew


CODE_BASES = {
    "yolox": CodeBase("YOLOX", "yolox", eval_options=False),
    "miemiedetection": CodeBase("miemiedetection", "mmdet", eval_options=True),
}
# Experiment attributes detk8s sets from the run: not for `opts`.
FROM_THE_RUN = {
    "data_dir": "the dataset", "train_ann": "the dataset", "val_ann": "the dataset",
    "num_classes": "the dataset's classes", "max_epoch": "epochs", "basic_lr_per_img": "lr",
    "output_dir": "the run's dir", "data_num_workers": "yolox.workers",
}  # fmt: skip
_PROGRESS = re.compile(
    r"epoch: (?P<epoch>\d+)/(?P<epochs>\d+), iter: (?P<iter>\d+)/(?P<iters>\d+),.*?"
    r"total_loss: (?P<loss>[\d.]+).*?ETA: (?P<eta>[^\n]+)"
)
_OPT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class YoloxSettings(BaseModel):
    """The `yolox:` section of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    code: Literal["yolox", "miemiedetection"] = Field(
        "yolox",
        description="The code base: YOLOX, or miemiedetection (PaddleDetection's models in "
        "PyTorch, with YOLOX's CLI).",
    )
    exp: str = Field(
        description="The experiment: a file of the checkout (exps/default/yolox_s.py, "
        "exps/picodet/picodet_s_416_coco_lcnet.py), an absolute path, or a name (yolox-s)."
    )
    code_dir: str | None = Field(
        None, description="The checkout, absolute; default: the image's (/opt/trainers/<name>)."
    )
    fp16: bool = Field(False, description="Mixed-precision training (--fp16).")
    occupy: bool = Field(False, description="Reserve GPU memory up front (-o).")
    cache: bool = Field(False, description="Cache the images in RAM (--cache).")
    workers: NonNegativeInt = Field(4, description="DataLoader workers per process.")
    eval_interval: PositiveInt | None = Field(
        None, description="Evaluate every this many epochs while training; default: the exp's."
    )
    eval_batch_size: PositiveInt | None = Field(
        None,
        description="miemiedetection: eval batch per GPU while training (-eb); default: "
        "batch_size.",
    )
    eval_workers: NonNegativeInt | None = Field(
        None, description="miemiedetection: eval DataLoader workers (-ew); default: workers."
    )
    conf: float = Field(0.025, gt=0, lt=1, description="Score threshold of the final eval.")
    opts: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="Experiment attributes set last: the trainer's opts, each converted to the "
        "attribute's type by the trainer (bools do not convert: set them in an experiment file).",
    )

    @field_validator("code_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v

    @property
    def base(self) -> CodeBase:
        return CODE_BASES[self.code]


class YoloxAdapter:
    name: ClassVar[str] = NAME
    family: ClassVar[str] = "pytorch"
    input_stride: ClassVar[int] = 32  # the networks downsample by up to 32
    lr_scales_with_batch: ClassVar[bool] = True  # the trainers' lr is basic_lr_per_img x batch
    settings_model: ClassVar[type[BaseModel]] = YoloxSettings
    moved_keys: ClassVar[dict[str, str]] = {}

    # -- render time ----------------------------------------------------------------------------

    def check(self, run: Run) -> list[tuple[str, str]]:
        s = run.settings
        problems = []
        if s.exp.endswith(".py") and ".." in PurePosixPath(s.exp).parts:
            problems.append((f"{NAME}.exp", f"{s.exp!r} leaves the checkout: name a file in it"))
        if not s.base.eval_options:
            for key in ("eval_batch_size", "eval_workers"):
                if getattr(s, key) is not None:
                    problems.append((f"{NAME}.{key}", f"is miemiedetection's; {s.code} has none"))
        for key in s.opts:
            if not _OPT_KEY.match(key):
                problems.append((f"{NAME}.opts.{key}", "not an experiment attribute name"))
            elif key in FROM_THE_RUN:
                problems.append((f"{NAME}.opts.{key}", f"set from {FROM_THE_RUN[key]}"))
        return problems

    def code_dir(self, run: Run, layout: Layout) -> str:
        s = run.settings
        return checkout_dir(layout, f"{NAME}.code_dir", s.code_dir, s.base.checkout)

    def exp_config(self, run: Run, layout: Layout) -> dict[str, Any]:
        """yolox.json: the base experiment, and the attributes set from the run."""
        c, s = run.config, run.settings
        data = f"{layout.run_dir(run.name)}/{COCO_DIR}"
        attributes: dict[str, Any] = {
            "output_dir": layout.run_dir(run.name),
            "data_dir": data,
            "train_ann": "train.json",
            "val_ann": "val.json",
            # miemiedetection names the folders; YOLOX has them fixed to these
            "ann_folder": "annotations",
            "train_image_folder": "train2017",
            "val_image_folder": "val2017",
            "cls_names": f"{data}/labels.txt",
            "num_classes": run.dataset.num_classes,
            "max_epoch": c.epochs,
            "basic_lr_per_img": c.lr / c.total_batch,
            "data_num_workers": s.workers,
        }
        if not c.eval:
            attributes["eval_interval"] = c.epochs + 1
        elif s.eval_interval:
            attributes["eval_interval"] = s.eval_interval
        exp_file = exp_name = None
        if s.exp.endswith(".py"):
            exp_file = s.exp if s.exp.startswith("/") else f"{self.code_dir(run, layout)}/{s.exp}"
        else:
            exp_name = s.exp
        return {"package": s.base.package, "exp_file": exp_file, "exp_name": exp_name,
                "attributes": attributes}  # fmt: skip

    def plan(self, run: Run, layout: Layout) -> Plan:
        return Plan(
            job_kind="PyTorchJob",
            files={
                EXP_FILE: WRAPPER.read_text(encoding="utf-8"),
                EXP_CONFIG: json.dumps(self.exp_config(run, layout), indent=2) + "\n",
            },
        )

    def schedule(self, run: Run) -> Schedule:
        return Schedule()  # in the experiment's Python: not known before it runs

    # -- in the pod -----------------------------------------------------------------------------

    def prepare(self, run: Run, layout: Layout) -> None:
        from detk8s.datasets.coco import convert

        dataset = run.dataset
        root = Path(layout.dataset_dir(dataset))
        lists = {"train": Path(layout.train_list(run.name, dataset)), "val": Path(dataset.val_list)}
        lists = {k: v if v.is_absolute() else root / v for k, v in lists.items()}
        convert(root, lists, root / dataset.label_list, Path(layout.run_dir(run.name)) / COCO_DIR)

    def _common(self, run: Run, layout: Layout) -> list[str]:
        return ["-f", f"{layout.config_dir}/{EXP_FILE}"]

    def _opts(self, run: Run) -> list[str]:
        return [str(x) for k, v in run.settings.opts.items() for x in (k, v)]

    def train_command(
        self, run: Run, layout: Layout, replica: Replica, resume: Checkpoint | None
    ) -> Command:
        c, s = run.config, run.settings
        code = self.code_dir(run, layout)
        # --cache first: newer YOLOX gives it an optional value, which must not be the next word
        args = [f"{code}/tools/train.py", *(["--cache"] if s.cache else []),
                *self._common(run, layout), "-expn", TRAIN_NAME,
                "-d", str(c.gpus), "-b", str(c.total_batch)]  # fmt: skip
        if s.base.eval_options:
            eval_batch = (s.eval_batch_size or c.batch_size) * c.gpus * c.nodes
            eval_workers = s.workers if s.eval_workers is None else s.eval_workers
            args += ["-eb", str(eval_batch), "-w", str(s.workers), "-ew", str(eval_workers)]
        args += ["--fp16"] if s.fp16 else []
        args += ["-o"] if s.occupy else []
        if replica.distributed:
            args += ["--num_machines", str(replica.nnodes), "--machine_rank",
                     str(replica.node_rank), "--dist-url",
                     f"tcp://{replica.master_addr}:{replica.master_port}"]  # fmt: skip
        if resume is not None:  # the checkpoint holds its epoch, optimizer and best AP
            args += ["--resume", "-c", str(resume.weights)]
        elif c.pretrain_weights:
            source = parse_weights_source(c.pretrain_weights)
            args += ["-c", layout.pretrained_weights(run.name, run.dataset, source)]
        args += [*c.extra_args, *self._opts(run)]  # opts: the remainder, last
        return Command([layout.python, *args], env={"PYTHONPATH": code})

    # Checkpoints, in <run dir>/train/. YOLOX rewrites latest_ckpt.pth every epoch, and at each
    # evaluation last_epoch_ckpt.pth (plus epoch_N_ckpt.pth with save_history_ckpt), copying it
    # to best_ckpt.pth when the AP improved. miemiedetection writes N.pth every epoch (keeping
    # the newest ten), last_ckpt.pth at each evaluation, and best_ckpt.pth likewise. Each
    # checkpoint holds `start_epoch`: the epochs completed.

    def checkpoint_dir(self, run: Run, layout: Layout) -> Path:
        return Path(layout.run_dir(run.name)) / TRAIN_NAME

    def checkpoints(self, run: Run, directory: Path) -> list[Checkpoint]:
        """The newest per-epoch checkpoint (to resume from) and the best, when written whole."""
        if run.settings.code == "yolox":
            candidates = [directory / "latest_ckpt.pth"]
        else:
            numbered = [p for p in directory.glob("*.pth") if p.stem.isdigit()]
            candidates = sorted(numbered, key=lambda p: int(p.stem), reverse=True)
        out = []
        for path in candidates:
            epoch = _epoch(path)
            if epoch is not None:
                role: CheckpointRole = "final" if epoch >= run.config.epochs else "resumable"
                out.append(Checkpoint("latest", (path,), path, role, epoch))
                break
        best = directory / "best_ckpt.pth"
        epoch = _epoch(best)
        if epoch is not None:
            out.append(Checkpoint("best", (best,), best, "best", epoch))
        return out

    def evaluated_weights(self, run: Run, directory: Path) -> Checkpoint | None:
        """Only once training reached its last epoch (the trainers exit 0 when it failed)."""
        by_name = {c.name: c for c in self.checkpoints(run, directory)}
        latest = by_name.get("latest")
        if latest is None or latest.role != "final":
            return None
        return by_name["best"] if run.config.eval and "best" in by_name else latest

    def eval_command(
        self, run: Run, layout: Layout, replica: Replica, weights: Checkpoint
    ) -> Command:
        """tools/eval.py on this pod's GPUs, as seed 001 runs it."""
        c, s = run.config, run.settings
        code = self.code_dir(run, layout)
        gpus = max(1, min(c.gpus, replica.gpus or c.gpus))
        args = [f"{code}/tools/eval.py", *self._common(run, layout), "-expn", EVAL_NAME,
                "-c", str(weights.weights), "-b", str(c.batch_size * gpus), "-d", str(gpus),
                "--conf", f"{s.conf:g}"]  # fmt: skip
        args += ["--tsize", str(c.input_size)] if c.input_size else []
        args += ["--fp16"] if s.fp16 else []
        args += self._opts(run)
        return Command([layout.python, *args], env={"PYTHONPATH": code})

    def progress_lines(self, run: Run, log: str) -> list[Logged]:
        """`epoch: 3/300, iter: 10/182, ... total_loss: 5.2, ... ETA: 1 day, 2:03:04`."""
        return [
            (m.start(), Progress(int(m["epoch"]), int(m["epochs"]), int(m["iter"]),
                                 int(m["iters"]), float(m["loss"]), m["eta"].strip()))
            for m in _PROGRESS.finditer(log)
        ]  # fmt: skip

    def evaluations(self, run: Run, log: str) -> list[Evaluation]:
        """The COCO AP50 line of each evaluation (every `eval_interval` epochs)."""
        return map50_points(log)

    def metrics(self, run: Run, layout: Layout, eval_output: str) -> Metrics:
        """The twelve COCO AP/AR lines and `Average forward time`."""
        return parse_metrics(eval_output)


def _epoch(path: Path) -> int | None:
    values = checkpoint_values(path) if path.is_file() else None
    epoch = (values or {}).get("start_epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
