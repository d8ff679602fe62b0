"""PaddleDetection: a per-run ppdet YAML on top of our model config, launched by our worker script.

The paddledet wheel ships no tools/train.py, so training goes through `paddledet_worker.py`
(ppdet's Python API); more than one GPU, or more than one node, goes through
`paddle.distributed.launch`, which reads the operator's PADDLE_MASTER / PADDLE_NNODES /
PADDLE_JOB_ID env as its --master / --nnodes / --job_id.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.layout import Layout
from detk8s.paths import data_path, model_configs_dir
from detk8s.spec import Launch

WORKER = "frameworks/paddledet_worker.py"  # in the package; runs without detk8s importable
CONFIG_FILE = "paddledet.yml"
VOC_FIELDS = ["image", "gt_bbox", "gt_class", "difficult"]


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
        if run.pretrain_weights:
            cfg["pretrain_weights"] = run.pretrain_weights
        return _deep_merge(cfg, dict(run.overrides))

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

    def eval_command(self, run: RunConfig, layout: Layout, weights: str) -> list[str]:
        """Evaluation of final weights on the val list: one process, rank 0 only."""
        config = f"{layout.config_dir}/{CONFIG_FILE}"
        return [
            layout.python,
            self.worker(layout),
            "eval",
            "--config",
            config,
            "--weights",
            weights,
        ]

    # Checkpoints. ppdet writes them to save_dir/<config file stem>/ as N.pdparams, N.pdema
    # (EMA models) and N.pdopt, the .pdopt last; the last epoch is model_final.*.

    def checkpoint_dir(self, run: RunConfig, layout: Layout) -> Path:
        return Path(self.save_dir(run, layout)) / Path(CONFIG_FILE).stem

    def complete_checkpoints(self, directory: Path) -> dict[str, list[Path]]:
        """Checkpoint name -> its files, for those fully written (their .pdopt exists)."""
        out = {}
        for opt in directory.glob("*.pdopt"):
            name = opt.stem
            out[name] = sorted(directory.glob(f"{name}.pd*"))
        return out

    def checkpoint_order(self, name: str) -> float:
        """Epoch order of a checkpoint name: higher resumes later (model_final is the end)."""
        if name == "model_final":
            return float("inf")
        return float(name) if name.isdigit() else -1.0

    def resume_args(self, checkpoint: Path) -> list[str]:
        """Arguments that make the worker continue from `checkpoint` (a path without suffix)."""
        return ["--resume", str(checkpoint)]

    def final_weights(self, run: RunConfig, layout: Layout) -> Path:
        return self.checkpoint_dir(run, layout) / "model_final.pdparams"

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
