"""ultralytics YOLOv3/YOLOv5 (the `yolov5` package's train.py and val.py; seed 004), as a
PyTorchJob: one process per GPU under torchrun, one node per pod.

The dataset stays VOC in storage; the pod converts it to the YOLO layout once (datasets/yolo.py).
train.py reaches for the internet in several places (hub model names, a font, DNS checks at
import, requirement checks): the env below turns each off, weights are always absolute paths or
'', and plots are off (they need the font and break with newer Pillow).
"""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from detk8s import podenv, yaml_io
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
)
from detk8s.layout import Layout
from detk8s.paths import model_configs_dir
from detk8s.replica import Replica
from detk8s.results.metrics import Metrics
from detk8s.weights import parse_weights_source

NAME = "ultralytics"
HYP_FILE = "hyp.yaml"  # the per-run hyper-parameters, in the ConfigMap
TRAIN_DIR, VAL_DIR = "train", "val"  # train.py's --name and val.py's, under the run's dir
DATA_DIR = "yolo"  # the converted dataset, under the run's dir
# The accumulated batch train.py optimises for whatever --batch-size is (its `nbs`).
NOMINAL_BATCH = 64
# Off-switches for everything train.py and val.py would fetch or check online.
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # ultralytics' DNS "is online" checks at import
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",  # pip installs of missing requirements
    "HF_HUB_OFFLINE": "1",  # hub lookups of weights names
    # torch >= 2.6 loads checkpoints weights-only, which train.py's own pickles fail: this trusts
    # every .pt the run loads (its own checkpoints, and the pretrained weights you name).
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
}
FONT = "Arial.ttf"  # what train.py downloads unless it is in its config dir
# results.csv columns, by name (the package pads them with spaces and adds per-class ones).
CSV_EPOCH = "epoch"
CSV_METRICS = {
    "precision": "metrics/precision",
    "recall": "metrics/recall",
    "map50": "metrics/mAP_0.5",
    "map50_95": "metrics/mAP_0.5:0.95",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_VAL_ROW = re.compile(
    r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+([0-9.eE+-]+)\s+([0-9.eE+-]+)\s+([0-9.eE+-]+)\s+([0-9.eE+-]+)\s*$"
)
_PROGRESS = re.compile(
    r"(?P<epoch>\d+)/(?P<last>\d+)\s+\S+\s+(?P<box>[\d.]+)\s+(?P<obj>[\d.]+)\s+(?P<cls>[\d.]+)\s+"
    r"\d+\s+\d+:\s+\d+%\|[^|]*\|\s*(?P<iter>\d+)/(?P<iters>\d+) "
    r"\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)"
)
_ALL_ROW = re.compile(r"^\s+all\s+\d+\s+\d+\s+\S+\s+\S+\s+([0-9.]+)\s+\S+\s*$", re.M)
_TRAINING_DONE = " epochs completed in "
_SPEED = re.compile(
    r"Speed: ([0-9.]+)ms pre-process, ([0-9.]+)ms inference, ([0-9.]+)ms NMS per image"
)


class UltralyticsSettings(BaseModel):
    """The `ultralytics:` section of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    cfg: str = Field(
        description="Model definition: a model YAML of the yolov5 package (yolov5s.yaml, "
        "yolov3.yaml; its models/ and models/hub/), or an absolute path."
    )
    hyp: str = Field(
        "hyp.scratch-low.yaml", description="Hyper-parameters, a file of configs/ultralytics/."
    )
    hyp_overrides: dict[str, float] = Field(
        default_factory=dict, description="Hyper-parameters set verbatim (lr0 is the run's lr)."
    )
    optimizer: Literal["SGD", "Adam", "AdamW"] = Field("SGD", description="train.py's optimizer.")
    cos_lr: bool = Field(False, description="Cosine instead of linear learning-rate decay.")
    workers: NonNegativeInt = Field(8, description="DataLoader workers per process.")
    patience: NonNegativeInt = Field(100, description="Stop after this many epochs without "
                                     "improvement (0: never).")  # fmt: skip
    script: str | None = Field(
        None,
        description="A train.py to run instead of the package's (a checkout's), absolute.",
    )


class UltralyticsAdapter:
    name: ClassVar[str] = NAME
    family: ClassVar[str] = "pytorch"
    input_stride: ClassVar[int] = 32  # the networks downsample by up to 32
    lr_scales_with_batch: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = UltralyticsSettings
    moved_keys: ClassVar[dict[str, str]] = {}

    # -- render time ----------------------------------------------------------------------------

    def check(self, run: Run) -> list[tuple[str, str]]:
        if run.model_config(run.settings.hyp) is None:
            return [(f"{NAME}.hyp", f"{run.settings.hyp} is not in {model_configs_dir(NAME)}/")]
        return []

    def recipe(self, run: Run) -> dict[str, Any]:
        """The hyper-parameter file the run names, as it is."""
        path = run.model_config(run.settings.hyp)
        hyp: dict[str, Any] = (yaml_io.load(path.read_text(encoding="utf-8")) if path else {}) or {}
        return hyp

    def hyp(self, run: Run) -> dict[str, Any]:
        """The run's hyper-parameters: the recipe, the run's overrides, its lr."""
        return {**self.recipe(run), **run.settings.hyp_overrides, "lr0": run.config.lr}

    def plan(self, run: Run, layout: Layout) -> Plan:
        header = f"# train.py --hyp of run {run.name}, rendered by detk8s from configs/runs/.\n"
        config_dir = f"{layout.run_dir(run.name)}/ultralytics-config"  # holds the font
        return Plan(
            job_kind="PyTorchJob",
            env={**OFFLINE_ENV, "YOLOV5_CONFIG_DIR": config_dir, "YOLO_CONFIG_DIR": config_dir},
            files={HYP_FILE: header + yaml_io.dump(self.hyp(run))},
        )

    def schedule(self, run: Run) -> Schedule:
        recipe, warmup = self.recipe(run), self.hyp(run).get("warmup_epochs")
        lr0 = recipe.get("lr0")
        return Schedule(
            reference_lr=float(lr0) if isinstance(lr0, (int, float)) else None,
            reference_batch=NOMINAL_BATCH,
            warmup_epochs=float(warmup) if isinstance(warmup, (int, float)) else None,
            accumulate_to=NOMINAL_BATCH,  # train.py's `nbs`: whatever --batch-size
        )

    # -- in the pod -----------------------------------------------------------------------------

    def data_yaml(self, run: Run, layout: Layout) -> Path:
        return Path(layout.run_dir(run.name)) / DATA_DIR / "data.yaml"

    def prepare(self, run: Run, layout: Layout) -> None:
        """The YOLO layout of the dataset, and a font where train.py looks before downloading."""
        from detk8s.datasets.yolo import convert

        dataset = run.dataset
        root = Path(layout.dataset_dir(dataset))
        lists = {
            "train": Path(layout.train_list(run.name, dataset)),
            "val": Path(dataset.val_list),
        }
        lists = {k: v if v.is_absolute() else root / v for k, v in lists.items()}
        convert(root, lists, root / dataset.label_list, self.data_yaml(run, layout).parent)
        config_dir = Path(layout.run_dir(run.name)) / "ultralytics-config"
        font = config_dir / FONT
        if not font.is_file():
            config_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_bundled_font(), font)

    def _weights_arg(self, run: Run, layout: Layout) -> str:
        if not run.config.pretrain_weights:
            return ""  # from scratch; a name such as yolov5s.pt would be downloaded
        source = parse_weights_source(run.config.pretrain_weights)
        return layout.pretrained_weights(run.name, run.dataset, source)

    def _device(self, run: Run, replica: Replica) -> str:
        return ",".join(str(i) for i in range(run.config.gpus)) if replica.gpus else "cpu"

    def train_command(
        self, run: Run, layout: Layout, replica: Replica, resume: Checkpoint | None
    ) -> Command:
        c, s = run.config, run.settings
        if resume is not None:  # train.py takes everything else from the run's opt.yaml
            args = ["--resume", str(resume.weights)]
        else:
            args = [
                "--data", str(self.data_yaml(run, layout)),
                "--weights", self._weights_arg(run, layout),
                "--cfg", s.cfg,
                "--hyp", f"{layout.config_dir}/{HYP_FILE}",
                "--img", str(c.input_size or 640),
                "--batch-size", str(c.total_batch),  # train.py splits it over the processes
                "--epochs", str(c.epochs),
                "--device", self._device(run, replica),
                "--optimizer", s.optimizer,
                "--workers", str(s.workers),
                "--patience", str(s.patience),
                "--project", layout.run_dir(c.name), "--name", TRAIN_DIR, "--exist-ok",
                "--noplots",
            ]  # fmt: skip
            args += ["--cos-lr"] if s.cos_lr else []
            args += [] if c.eval else ["--noval"]
        args += c.extra_args
        program = [s.script] if s.script else ["-m", "yolov5.train"]
        processes = c.gpus if replica.gpus else 1
        if c.nodes == 1 and processes == 1:
            # One process: the operator's node-level RANK/WORLD_SIZE would send train.py down
            # its DDP path.
            return Command([layout.python, *program, *args], unset=podenv.TORCH_PROCESS_ENV)
        torchrun = [layout.python, "-m", "torch.distributed.run",
                    "--nproc_per_node", str(processes)]  # fmt: skip
        if replica.master_addr:
            torchrun += [
                "--nnodes", str(replica.nnodes), "--node_rank", str(replica.node_rank),
                "--master_addr", replica.master_addr, "--master_port", str(replica.master_port),
            ]  # fmt: skip
        else:
            torchrun += ["--standalone"]
        return Command([*torchrun, *program, *args])

    # Checkpoints: train.py rewrites weights/last.pt every epoch and weights/best.pt when the
    # fitness is at least as good, in place, after appending the epoch's row to results.csv.

    def checkpoint_dir(self, run: Run, layout: Layout) -> Path:
        return Path(layout.run_dir(run.name)) / TRAIN_DIR

    def checkpoints(self, run: Run, directory: Path) -> list[Checkpoint]:
        """last (with results.csv and opt.yaml, which a resume needs) once its epoch's row is
        in results.csv and the file is a whole zip; best likewise."""
        rows = results_rows(directory / "results.csv")
        epochs = len({row[CSV_EPOCH] for row in rows})
        out = []
        last, best = directory / "weights/last.pt", directory / "weights/best.pt"
        csv_file = directory / "results.csv"
        if _whole(last) and csv_file.is_file() and _saved_after(last, csv_file):
            extra = tuple(f for f in (csv_file, directory / "opt.yaml") if f.is_file())
            role: CheckpointRole = "final" if epochs >= run.config.epochs else "resumable"
            out.append(Checkpoint("last", (last, *extra), last, role, epochs))
        if _whole(best) and rows:
            out.append(Checkpoint("best", (best,), best, "best", best_epoch(rows)))
        return out

    def evaluated_weights(self, run: Run, directory: Path) -> Checkpoint | None:
        by_name = {c.name: c for c in self.checkpoints(run, directory)}
        if run.config.eval and "best" in by_name:
            return by_name["best"]
        return by_name.get("last")

    def eval_command(
        self, run: Run, layout: Layout, replica: Replica, weights: Checkpoint
    ) -> Command:
        c, s = run.config, run.settings
        return Command([
            layout.python, "-m", "yolov5.val",
            "--data", str(self.data_yaml(run, layout)), "--weights", str(weights.weights),
            "--img", str(c.input_size or 640), "--batch-size", str(c.batch_size),
            "--device", "0" if replica.gpus else "cpu", "--workers", str(s.workers),
            "--task", "val", "--verbose",
            "--project", layout.run_dir(c.name), "--name", VAL_DIR, "--exist-ok",
        ], unset=podenv.TORCH_PROCESS_ENV)  # fmt: skip

    def progress_lines(self, run: Run, log: str) -> list[Logged]:
        """train.py's tqdm line `3/99  1.2G  0.06 0.01 0.02  11  640:  40%|..| 8/20 [00:05<00:07`
        (epochs from 0): the losses summed; ETA from the bar's timing. Offsets are in the log
        without its colour codes (as for `evaluations`)."""
        return [(m.start(), _progress(m)) for m in _PROGRESS.finditer(_ANSI.sub("", log))]

    def evaluations(self, run: Run, log: str) -> list[Evaluation]:
        """The `all` row of the validation after each epoch (P R mAP50 mAP50-95, fractions);
        not the validation of best.pt after `N epochs completed in`."""
        text = _ANSI.sub("", log)
        end = text.rfind(_TRAINING_DONE)
        return [
            (m.start(), round(float(m.group(1)) * 100, 2))
            for m in _ALL_ROW.finditer(text, 0, end if end >= 0 else len(text))
        ]

    def metrics(self, run: Run, layout: Layout, eval_output: str) -> Metrics:
        """val.py's table (the `all` row and one per class: P R mAP50 mAP50-95) and speed, and
        the per-epoch validation of training from results.csv."""
        out = parse_val_output(eval_output)
        rows = results_rows(self.checkpoint_dir(run, layout) / "results.csv")
        out.details["epochs"] = [
            {"epoch": int(float(row[CSV_EPOCH])) + 1,
             **{k: float(row[col]) * 100 for k, col in CSV_METRICS.items() if col in row}}
            for row in rows
        ]  # fmt: skip
        return out


def _progress(m: re.Match[str]) -> Progress:
    epoch, epochs = int(m["epoch"]) + 1, int(m["last"]) + 1
    left, done = _seconds(m["left"]), _seconds(m["elapsed"])
    eta = None
    if left is not None and done is not None:  # this epoch's rest, then the others whole
        eta = _hms(left + (left + done) * (epochs - epoch))
    loss = sum(float(m[k]) for k in ("box", "obj", "cls"))
    return Progress(epoch, epochs, int(m["iter"]), int(m["iters"]), loss, eta)


def parse_val_output(text: str) -> Metrics:
    """val.py's results table: `all` and per-class rows of Class Images Instances P R mAP50
    mAP50-95 (fractions), and its Speed line."""
    out = Metrics()
    table: dict[str, tuple[float, float, float, float]] = {}
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rsplit("\r", 1)[-1]
        row = _VAL_ROW.match(line)
        if row is not None:
            table[row.group(1)] = tuple(float(row.group(i)) for i in range(4, 8))  # type: ignore[assignment]
            if row.group(1) == "all":
                table = {"all": table["all"]}  # a new table starts: the last one counts
                out.lines = []
            out.lines.append(line.strip())
        speed = _SPEED.search(line)
        if speed is not None:
            pre, inference, nms = (float(speed.group(i)) for i in (1, 2, 3))
            out.details["speed_ms"] = {"pre": pre, "inference": inference, "nms": nms}
            out.fps = round(1000 / (pre + inference + nms), 2) if pre + inference + nms else None
            out.lines.append(line.strip())
    if "all" in table:
        precision, recall, map50, map50_95 = table.pop("all")
        out.map50, out.map50_95 = round(map50 * 100, 2), round(map50_95 * 100, 2)
        out.details |= {"precision": round(precision * 100, 2), "recall": round(recall * 100, 2)}
        out.per_class = {name: round(v[2] * 100, 2) for name, v in table.items()}
    return out


def results_rows(path: Path) -> list[dict[str, str]]:
    """results.csv as dicts by column name (train.py pads names and values with spaces)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    rows = []
    for values in reader:
        if len(values) == len(header):
            rows.append({h: v.strip() for h, v in zip(header, values, strict=True)})
    return rows


def best_epoch(rows: list[dict[str, str]]) -> int | None:
    """The epoch (1-based) best.pt is from: train.py's fitness, 0.1 mAP50 + 0.9 mAP50-95, at
    its last maximum (ties overwrite best.pt)."""
    best, epoch = None, None
    for row in rows:
        try:
            fitness = 0.1 * float(row[CSV_METRICS["map50"]]) + 0.9 * float(
                row[CSV_METRICS["map50_95"]]
            )
        except (KeyError, ValueError):
            continue
        if best is None or fitness >= best:
            best, epoch = fitness, int(float(row[CSV_EPOCH])) + 1
    return epoch


def _seconds(clock: str) -> int | None:
    """tqdm's [h:]mm:ss as seconds; None for `?`."""
    if not clock or "?" in clock:
        return None
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


def _hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _whole(path: Path) -> bool:
    """torch.save writes a zip: one whose directory reads back was written to the end."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _saved_after(weights: Path, csv_file: Path) -> bool:
    """last.pt is written after its epoch's results.csv row: older means the next epoch's row is
    in and its last.pt is not (yet)."""
    return weights.stat().st_mtime_ns >= csv_file.stat().st_mtime_ns


def _bundled_font() -> Path:
    """A TrueType font that ships with matplotlib (a dependency of the trainer), standing in for
    the Arial.ttf train.py would download."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("matplotlib is not installed: no font for train.py")
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
