"""PaddleDetection: a per-run ppdet YAML on top of our model config, launched by our worker script.

The paddledet wheel ships no tools/train.py, so training goes through `paddledet_worker.py`
(ppdet's Python API); more than one GPU, or more than one node, goes through
`paddle.distributed.launch`, which meets its peers at the operator's PADDLE_MASTER.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from detk8s import yaml_io
from detk8s.config.schema import InputSize
from detk8s.frameworks.base import (
    Checkpoint,
    Command,
    Evaluation,
    Logged,
    Plan,
    Progress,
    Run,
    Schedule,
    stride_problem,
)
from detk8s.layout import Layout
from detk8s.paths import model_configs_dir
from detk8s.replica import Replica
from detk8s.results.metrics import Metrics, map50_points, parse_metrics
from detk8s.weights import parse_weights_source

NAME = "paddledet"
WORKER = "frameworks/paddledet_worker.py"  # in the package; runs without detk8s importable
CONFIG_FILE = "paddledet.yml"
VOC_FIELDS = ["image", "gt_bbox", "gt_class", "difficult"]
# Checkpoint names ppdet gives: <epoch index>, model_final (last epoch) and best_model (best AP on
# the val list, with --eval); paddledet_worker.py writes best_model.json beside the latter.
FINAL, BEST = "model_final", "best_model"
_PROGRESS = re.compile(
    r"Epoch: \[(?P<epoch>\d+)\] \[\s*(?P<iter>\d+)/(?P<iters>\d+)\].*? loss: (?P<loss>[\d.]+)"
    r".*? eta: (?P<eta>(?:\d+ days?, )?[\d:]+)"
)
# Our model configs say for which total batch their base_lr is (ppdet ignores the key).
REFERENCE_BATCH_KEY = "reference_total_batch"


def _stride_32(size: int) -> int:
    problem = stride_problem(size, 32)
    if problem:
        raise ValueError(problem)
    return size


TrainSize = Annotated[InputSize, AfterValidator(_stride_32)]


class PaddleDetSettings(BaseModel):
    """The `paddledet:` section of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    config: str = Field(
        description="Our model config, a file of configs/paddledet/ (picodet_s_320_voc.yml)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="ppdet config keys set verbatim (nested mapping)."
    )
    train_sizes: list[TrainSize] | None = Field(
        None,
        min_length=1,
        description="Multi-scale training sizes, one drawn per batch; default: the model config's.",
    )

    @field_validator("train_sizes")
    @classmethod
    def _sorted_sizes(cls, v: list[int] | None) -> list[int] | None:
        return sorted(set(v)) if v else v


_CLoader = yaml_io.Loader


class _TolerantLoader(_CLoader):  # type: ignore[misc, valid-type]
    """Reads ppdet YAML, whose `!Tag` objects we only need to look at, as plain data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {"name": suffix, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _tagged)


def read_model_config(run: Run) -> dict[str, Any]:
    path = run.model_config(run.settings.config)
    return _read_model_config(path) if path else {}


@cache
def _read_model_config(path: Path) -> dict[str, Any]:
    data = yaml_io.load(path.read_text(encoding="utf-8"), _TolerantLoader)
    return data if isinstance(data, dict) else {}


def scaled_schedulers(model: dict[str, Any], epochs: int) -> list[dict[str, Any]] | None:
    """The model config's LR schedule stretched to `epochs`: cosine ends at the last epoch and
    step milestones keep their relative place, so changing `epochs` never leaves the LR decaying
    past the end of training or not at all."""
    schedulers = (model.get("LearningRate") or {}).get("schedulers")  # read-only: cached
    model_epochs = model.get("epoch")
    if not schedulers or not model_epochs:
        return None
    out = []
    for sched in schedulers:
        sched = dict(sched)
        if sched.get("name") == "CosineDecay":
            sched["max_epochs"] = epochs
        elif sched.get("name") == "PiecewiseDecay" and "milestones" in sched:
            sched["milestones"] = [
                max(1, round(m * epochs / model_epochs)) for m in sched["milestones"]
            ]
        out.append(sched)
    return out


# Settings counted in epochs, besides the LR schedule, that keep their relative place when a run
# trains for another number of epochs than the model config (mixup off for the last ~7%, PicoDet's
# switch from ATSS to task-aligned assignment after the first third).
EPOCH_RELATIVE = (("TrainReader", "mixup_epoch"), ("PicoHeadV2", "static_assigner_epoch"))


def scaled_epoch_settings(model: dict[str, Any], epochs: int) -> dict[str, Any]:
    """{section: {key: value}} of EPOCH_RELATIVE settings rescaled to `epochs`."""
    model_epochs = model.get("epoch")
    out: dict[str, Any] = {}
    for section, key in EPOCH_RELATIVE:
        value = (model.get(section) or {}).get(key)
        if model_epochs and isinstance(value, int) and value > 0:
            out.setdefault(section, {})[key] = max(1, round(value * epochs / model_epochs))
    return out


def _resized(transforms: list[Any], op: str, target: Any) -> list[Any] | None:
    """`transforms` (ppdet's list of {Op: {args}}) with `op`'s target_size set to `target`,
    or None when the list has no such op."""
    out, found = [], False
    for t in transforms:
        if isinstance(t, dict) and op in t:
            t = {op: {**(t[op] or {}), "target_size": target}}
            found = True
        out.append(t)
    return out if found else None


def sized_readers(
    model: dict[str, Any], input_size: int | None, train_sizes: list[int] | None
) -> dict[str, Any]:
    """Reader settings for a run's own eval size and training sizes. ppdet replaces lists
    whole, so each changed transform list is repeated in full."""
    out: dict[str, Any] = {}
    train = (model.get("TrainReader") or {}).get("batch_transforms")
    if train_sizes and train:
        resized = _resized(train, "BatchRandomResize", list(train_sizes))
        if resized is not None:
            out["TrainReader"] = {"batch_transforms": resized}
    if input_size:
        size = [input_size, input_size]
        out |= {"eval_height": input_size, "eval_width": input_size, "eval_size": size}
        for reader in ("EvalReader", "TestReader"):
            section = model.get(reader) or {}
            resized = _resized(section.get("sample_transforms") or [], "Resize", size)
            if resized is not None:
                out.setdefault(reader, {})["sample_transforms"] = resized
        shape = ((model.get("TestReader") or {}).get("inputs_def") or {}).get("image_shape")
        if isinstance(shape, list) and len(shape) >= 2:
            out.setdefault("TestReader", {})["inputs_def"] = {"image_shape": [*shape[:-2], *size]}
    return out


class PaddleDetAdapter:
    name: ClassVar[str] = NAME
    family: ClassVar[str] = "paddle"
    input_stride: ClassVar[int] = 32  # the networks downsample by up to 32
    lr_scales_with_batch: ClassVar[bool] = True
    settings_model: ClassVar[type[BaseModel]] = PaddleDetSettings
    moved_keys: ClassVar[dict[str, str]] = {
        "model_config": "config", "overrides": "overrides", "train_sizes": "train_sizes",
    }  # fmt: skip

    # -- render time ----------------------------------------------------------------------------

    def check(self, run: Run) -> list[tuple[str, str]]:
        if run.model_config(run.settings.config) is None:
            return [(f"{NAME}.config", f"{run.settings.config} is not in "
                                       f"{model_configs_dir(NAME)}/")]  # fmt: skip
        return []

    def framework_config(self, run: Run, layout: Layout) -> dict[str, Any]:
        """The per-run ppdet YAML: our model config in the image, plus this run's numbers."""
        c, settings, dataset = run.config, run.settings, run.dataset
        model = read_model_config(run)
        found = run.model_config(settings.config)
        assert found is not None  # check() said so
        root = layout.dataset_dir(dataset)

        def voc(anno_path: str) -> dict[str, Any]:
            return {
                "name": "VOCDataSet",
                "dataset_dir": root,
                "image_dir": "",  # ppdet's COCO-minded default would leak into VOC paths
                "anno_path": anno_path,
                "label_list": dataset.label_list,
                "data_fields": VOC_FIELDS,
            }

        cfg: dict[str, Any] = {
            "_BASE_": [layout.model_config(NAME, settings.config, found)],
            "epoch": c.epochs,
            "save_dir": self.save_dir(run, layout),
            "num_classes": dataset.num_classes,
            "metric": "VOC",
            "map_type": "integral",
            "LearningRate": {"base_lr": c.lr},
            "TrainReader": {"batch_size": c.batch_size},
            "TrainDataset": voc(layout.train_list(c.name, dataset)),
            "EvalDataset": voc(dataset.val_list),
            "TestDataset": {"name": "ImageFolder", "anno_path": f"{root}/{dataset.label_list}"},
        }
        schedulers = scaled_schedulers(model, c.epochs)
        if schedulers:
            cfg["LearningRate"]["schedulers"] = schedulers
        _deep_merge(cfg, scaled_epoch_settings(model, c.epochs))
        _deep_merge(cfg, sized_readers(model, c.input_size, settings.train_sizes))
        if c.pretrain_weights:
            source = parse_weights_source(c.pretrain_weights)
            cfg["pretrain_weights"] = layout.pretrained_weights(c.name, dataset, source)
        return _deep_merge(cfg, dict(settings.overrides))

    def plan(self, run: Run, layout: Layout) -> Plan:
        text = yaml_io.dump(self.framework_config(run, layout), default_flow_style=None)
        header = f"# ppdet config of run {run.name}, rendered by detk8s from configs/runs/.\n"
        return Plan(
            job_kind="PaddleJob",
            env={"FLAGS_allocator_strategy": "auto_growth"},
            files={CONFIG_FILE: header + text},
        )

    def schedule(self, run: Run) -> Schedule:
        model = read_model_config(run)
        overridden = run.settings.overrides.get("LearningRate") or {}
        lr = overridden.get("schedulers") or (model.get("LearningRate") or {}).get("schedulers")
        warmup = next(
            (s for s in lr or [] if isinstance(s, dict) and s.get("name") == "LinearWarmup"), {}
        )
        epochs = warmup.get("epochs")  # ppdet's LinearWarmup takes steps, or epochs instead
        base_lr = (model.get("LearningRate") or {}).get("base_lr")
        reference = model.get(REFERENCE_BATCH_KEY)
        return Schedule(
            reference_lr=float(base_lr) if isinstance(base_lr, (int, float)) else None,
            reference_batch=reference if isinstance(reference, int) else None,
            warmup_iterations=None if epochs else warmup.get("steps"),
            warmup_epochs=float(epochs) if epochs else None,
        )

    # -- in the pod -----------------------------------------------------------------------------

    def prepare(self, run: Run, layout: Layout) -> None:
        """ppdet reads the VOC lists itself."""

    def save_dir(self, run: Run, layout: Layout) -> str:
        """ppdet writes checkpoints to save_dir/<config file stem>/: give it the run's own dir."""
        return f"{layout.run_dir(run.name)}/ckpt"

    def worker(self, layout: Layout) -> str:
        return f"{layout.package_dir}/{WORKER}"

    def train_command(
        self, run: Run, layout: Layout, replica: Replica, resume: Checkpoint | None
    ) -> Command:
        c = run.config
        worker = [self.worker(layout), "train", "--config", f"{layout.config_dir}/{CONFIG_FILE}"]
        if c.eval:
            worker.append("--eval")
        if resume is not None:
            worker += ["--resume", str(resume.weights.with_suffix(""))]
        worker += c.extra_args
        if c.gpus == 1 and c.nodes == 1:
            return Command([layout.python, *worker])
        launch = [layout.python, "-m", "paddle.distributed.launch"]
        if replica.gpus:  # paddle's CPU launcher rejects --gpus: without it, one CPU process
            launch += ["--gpus", ",".join(str(i) for i in range(c.gpus))]
        if replica.distributed:  # paddle also reads these from the operator's PADDLE_* env
            launch += ["--master", f"{replica.master_addr}:{replica.master_port}",
                       "--nnodes", str(replica.nnodes),
                       "--rank", str(replica.node_rank)]  # fmt: skip
            if replica.job_id:
                launch += ["--job_id", replica.job_id]
        # Only local rank 0 prints to stdout; the others log to --log_dir/workerlog.N.
        launch += ["--log_dir", f"{layout.run_dir(c.name)}/log"]
        return Command([*launch, *worker])

    # Checkpoints. ppdet writes them to save_dir/<config file stem>/ as N.pdparams, N.pdema
    # (EMA models) and N.pdopt, the .pdopt last; N counts epochs from 0. The last epoch is
    # model_final; best_model is rewritten whenever an evaluation is at least as good.

    def checkpoint_dir(self, run: Run, layout: Layout) -> Path:
        return Path(self.save_dir(run, layout)) / Path(CONFIG_FILE).stem

    def checkpoints(self, run: Run, directory: Path) -> list[Checkpoint]:
        """Those fully written (their .pdopt exists), with their epochs."""
        out = []
        for opt in sorted(directory.glob("*.pdopt")):
            name = opt.stem
            files = tuple(sorted(directory.glob(f"{name}.pd*")))
            weights = opt.with_suffix(".pdparams")
            if name == BEST:
                info = directory / f"{BEST}.json"
                files += (info,) if info.is_file() else ()
                out.append(Checkpoint(name, files, weights, "best", _best_epoch(info)))
            elif name == FINAL:
                out.append(Checkpoint(name, files, weights, "final", run.config.epochs))
            elif name.isdigit():
                out.append(Checkpoint(name, files, weights, "resumable", int(name) + 1))
        return out

    def evaluated_weights(self, run: Run, directory: Path) -> Checkpoint | None:
        by_name = {c.name: c for c in self.checkpoints(run, directory)}
        if run.config.eval and BEST in by_name:
            return by_name[BEST]
        return by_name.get(FINAL)

    def eval_command(
        self, run: Run, layout: Layout, replica: Replica, weights: Checkpoint
    ) -> Command:
        """The worker picks the GPU when there is one."""
        return Command([
            layout.python, self.worker(layout), "eval",
            "--config", f"{layout.config_dir}/{CONFIG_FILE}", "--weights", str(weights.weights),
        ])  # fmt: skip

    def progress_lines(self, run: Run, log: str) -> list[Logged]:
        """`Epoch: [3] [ 10/182] ... loss: 1.2 ... eta: 0:10:00` (epochs counted from 0)."""
        return [
            (m.start(), Progress(int(m["epoch"]) + 1, run.config.epochs, int(m["iter"]) + 1,
                                 int(m["iters"]), float(m["loss"]), m["eta"]))
            for m in _PROGRESS.finditer(log)
        ]  # fmt: skip

    def evaluations(self, run: Run, log: str) -> list[Evaluation]:
        """`mAP(0.50, 11point) = 45.1%` (VOC) or the COCO AP50 line, after snapshot epochs."""
        return map50_points(log)

    def metrics(self, run: Run, layout: Layout, eval_output: str) -> Metrics:
        """VOC mAP, per-class AP (the worker evaluates classwise) and FPS, as ppdet logs them."""
        return parse_metrics(eval_output)


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def _best_epoch(info: Path) -> int | None:
    """The epoch of best_model, from the best_model.json paddledet_worker.py writes."""
    try:
        epoch = json.loads(info.read_text(encoding="utf-8")).get("epoch")
    except (OSError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None
