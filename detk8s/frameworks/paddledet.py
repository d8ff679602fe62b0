"""PaddleDetection: a per-run ppdet YAML on top of our model config, launched by our worker script.

The paddledet wheel ships no tools/train.py, so training goes through `paddledet_worker.py`
(ppdet's Python API); more than one GPU, or more than one node, goes through
`paddle.distributed.launch`, which reads the operator's PADDLE_MASTER / PADDLE_NNODES /
PADDLE_JOB_ID env as its --master / --nnodes / --job_id.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.frameworks.base import Checkpoint, Schedule
from detk8s.layout import Layout
from detk8s.paths import data_path, model_configs_dir
from detk8s.spec import Launch
from detk8s.weights import parse_weights_source

WORKER = "frameworks/paddledet_worker.py"  # in the package; runs without detk8s importable
CONFIG_FILE = "paddledet.yml"
VOC_FIELDS = ["image", "gt_bbox", "gt_class", "difficult"]
# Checkpoint names ppdet gives: <epoch index>, model_final (last epoch) and best_model (best AP on
# the val list, with --eval); paddledet_worker.py writes best_model.json beside the latter.
FINAL, BEST = "model_final", "best_model"
# Our model configs say for which total batch their base_lr is (ppdet ignores the key).
REFERENCE_BATCH_KEY = "reference_total_batch"


_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _TolerantLoader(_CLoader):  # type: ignore[misc, valid-type]
    """Reads ppdet YAML, whose `!Tag` objects we only need to look at, as plain data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {"name": suffix, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _tagged)


def read_model_config(run: RunConfig) -> dict[str, Any]:
    return _read_model_config(data_path(model_configs_dir(run.framework)) / run.model_config_file)


@cache
def _read_model_config(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)
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


def eval_size(model: dict[str, Any], run: RunConfig) -> int | None:
    """The square size the run evaluates at."""
    if run.input_size:
        return run.input_size
    size = model.get("eval_height")
    return size if isinstance(size, int) else None


def train_sizes(model: dict[str, Any], run: RunConfig) -> list[int]:
    """The sizes the run trains at (one drawn per batch)."""
    if run.train_sizes:
        return list(run.train_sizes)
    for t in (model.get("TrainReader") or {}).get("batch_transforms") or []:
        if isinstance(t, dict) and "BatchRandomResize" in t:
            sizes = (t["BatchRandomResize"] or {}).get("target_size") or []
            return [s if isinstance(s, int) else s[0] for s in sizes]
    return []


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


class _PlainDumper(_CDumper):  # type: ignore[misc, valid-type]
    """No &anchors: the file is read by people as well as by ppdet."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class PaddleDetAdapter:
    name = "paddledet"

    def framework_config(
        self, run: RunConfig, dataset: DatasetConfig, layout: Layout
    ) -> dict[str, Any]:
        """The per-run ppdet YAML: our model config in the image, plus this run's numbers."""
        model = read_model_config(run)
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
            "_BASE_": [layout.model_config(run.framework, run.model_config_file)],
            "epoch": run.epochs,
            "save_dir": self.save_dir(run, layout),
            "num_classes": dataset.num_classes,
            "metric": "VOC",
            "map_type": "integral",
            "LearningRate": {"base_lr": run.lr},
            "TrainReader": {"batch_size": run.batch_size},
            "TrainDataset": voc(layout.train_list(run.name, dataset)),
            "EvalDataset": voc(dataset.val_list),
            "TestDataset": {"name": "ImageFolder", "anno_path": f"{root}/{dataset.label_list}"},
        }
        schedulers = scaled_schedulers(model, run.epochs)
        if schedulers:
            cfg["LearningRate"]["schedulers"] = schedulers
        _deep_merge(cfg, scaled_epoch_settings(model, run.epochs))
        _deep_merge(cfg, sized_readers(model, run.input_size, run.train_sizes))
        if run.pretrain_weights:
            source = parse_weights_source(run.pretrain_weights)
            cfg["pretrain_weights"] = layout.pretrained_weights(run.name, dataset, source)
        return _deep_merge(cfg, dict(run.overrides))

    def schedule(self, run: RunConfig) -> Schedule:
        model = read_model_config(run)
        lr = (run.overrides.get("LearningRate") or {}).get("schedulers") or (
            model.get("LearningRate") or {}
        ).get("schedulers")
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

    def save_dir(self, run: RunConfig, layout: Layout) -> str:
        """ppdet writes checkpoints to save_dir/<config file stem>/: give it the run's own dir."""
        return f"{layout.run_dir(run.name)}/ckpt"

    def worker(self, layout: Layout) -> str:
        return f"{layout.package_dir}/{WORKER}"

    def command(self, run: RunConfig, layout: Layout) -> list[str]:
        config = f"{layout.config_dir}/{CONFIG_FILE}"
        worker = [self.worker(layout), "train", "--config", config]
        if run.eval:
            worker.append("--eval")
        worker += run.extra_args
        if run.gpus == 1 and run.nodes == 1:
            return [layout.python, *worker]
        gpus = ",".join(str(i) for i in range(run.gpus))
        # Only local rank 0 prints to stdout; the others log to --log_dir/workerlog.N.
        log_dir = f"{layout.run_dir(run.name)}/log"
        return [layout.python, "-m", "paddle.distributed.launch", "--gpus", gpus,
                "--log_dir", log_dir, *worker]  # fmt: skip

    def eval_command(self, run: RunConfig, layout: Layout, weights: Path) -> list[str]:
        """Evaluation of final weights on the val list: one process, rank 0 only."""
        config = f"{layout.config_dir}/{CONFIG_FILE}"
        return [
            layout.python,
            self.worker(layout),
            "eval",
            "--config",
            config,
            "--weights",
            str(weights),
        ]

    # Checkpoints. ppdet writes them to save_dir/<config file stem>/ as N.pdparams, N.pdema
    # (EMA models) and N.pdopt, the .pdopt last; N counts epochs from 0. The last epoch is
    # model_final; best_model is rewritten whenever an evaluation is at least as good.

    def checkpoint_dir(self, run: RunConfig, layout: Layout) -> Path:
        return Path(self.save_dir(run, layout)) / Path(CONFIG_FILE).stem

    def checkpoints(self, directory: Path) -> list[Checkpoint]:
        """Those fully written (their .pdopt exists), with their epochs."""
        out = []
        for opt in sorted(directory.glob("*.pdopt")):
            name = opt.stem
            files = tuple(sorted(directory.glob(f"{name}.pd*")))
            if name == BEST:
                info = directory / f"{BEST}.json"
                files += (info,) if info.is_file() else ()
                out.append(Checkpoint(name, files, opt.with_suffix(".pdparams"), "best",
                                      _best_epoch(info)))  # fmt: skip
            elif name == FINAL:
                out.append(Checkpoint(name, files, opt.with_suffix(".pdparams"), "final", None))
            elif name.isdigit():
                out.append(Checkpoint(name, files, opt.with_suffix(".pdparams"), "resumable",
                                      int(name) + 1))  # fmt: skip
        return out

    def resume_args(self, checkpoint: Path) -> list[str]:
        """Arguments that make the worker continue from `checkpoint` (a path without suffix)."""
        return ["--resume", str(checkpoint)]

    def evaluated_weights(self, run: RunConfig, directory: Path) -> Checkpoint | None:
        by_name = {c.name: c for c in self.checkpoints(directory)}
        best, final = by_name.get(BEST), by_name.get(FINAL)
        if run.eval and best is not None:
            return best
        if final is not None:
            return Checkpoint(final.name, final.files, final.weights, "final", run.epochs)
        return None

    def launch(self, run: RunConfig, dataset: DatasetConfig, layout: Layout) -> Launch:
        text = yaml.dump(
            self.framework_config(run, dataset, layout),
            Dumper=_PlainDumper,
            sort_keys=False,
            default_flow_style=None,
        )
        header = f"# ppdet config of run {run.name}, rendered by detk8s from configs/runs/.\n"
        return Launch(
            job_kind="PaddleJob",
            command=self.command(run, layout),
            env={"FLAGS_allocator_strategy": "auto_growth"},
            files={CONFIG_FILE: header + text},
        )


def _best_epoch(info: Path) -> int | None:
    """The epoch of best_model, from the best_model.json paddledet_worker.py writes."""
    try:
        epoch = json.loads(info.read_text(encoding="utf-8")).get("epoch")
    except (OSError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None
