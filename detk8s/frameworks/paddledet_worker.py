"""Train or evaluate a PaddleDetection model through ppdet's Python API.

The paddledet wheel ships only the `ppdet` package, not PaddleDetection's tools/train.py and
tools/eval.py, so the training image runs this file instead:

    python paddledet_worker.py train --config RUN.yml [--eval] [--resume CKPT|auto] [-o k=v ...]
    python -m paddle.distributed.launch --gpus 0,1 paddledet_worker.py train --config RUN.yml ...
    python paddledet_worker.py eval --config RUN.yml --weights CKPT [-o k=v ...]

It is copied into the image as a plain file and must not import anything from detk8s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

PROG = "paddledet_worker"
# Beside best_model.pd*: the epoch and AP of the weights ppdet last saved as best_model. detk8s
# reads the epoch for eval.json; a resumed run reads the AP, so the best model survives restarts.
BEST_MODEL = "best_model"
BEST_INFO = BEST_MODEL + ".json"


class WorkerError(Exception):
    """A mistake in the command line or its files: reported in one line, without a traceback."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `a.b=value` strings into a nested dict, values parsed as YAML (like tools/train.py)."""
    import yaml

    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WorkerError(f"override {item!r} is not of the form key=value")
        parts = key.split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise WorkerError(f"override {item!r} conflicts with an earlier override of {part}")
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def load_cfg(config: str, overrides: list[str]) -> Any:
    """Load the YAML (with its _BASE_ chain), apply -o overrides and choose the device."""
    # Check the arguments before the slow paddle import (~5-10 s), so mistakes fail fast.
    if not os.path.isfile(config):
        raise WorkerError(f"config {config} does not exist")
    opts = parse_overrides(overrides)

    import paddle
    from ppdet.core.workspace import load_config, merge_config
    from ppdet.utils.check import check_config

    cfg = load_config(config)
    merge_config(opts)

    # The configs never hard-code the device: use a GPU whenever one is usable, so the same
    # config runs in the CUDA image and in CPU smoke tests. `-o use_gpu=false` forces the CPU.
    gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if opts.get("use_gpu") is False:
        gpu = False
    # Trainer reads these as attributes, so they must all exist.
    cfg.use_gpu = gpu
    cfg.use_xpu = cfg.use_npu = cfg.use_mlu = False
    paddle.set_device("gpu" if gpu else "cpu")
    check_config(cfg)
    return cfg


def world_size() -> int:
    # Set by paddle.distributed.launch for every process it starts; absent for a plain run.
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def find_resume_checkpoint(cfg: Any) -> str | None:
    """The newest checkpoint under <save_dir>/<config stem>/, for restarting a preempted job."""
    ckpt_dir = os.path.join(cfg.save_dir, cfg.filename)
    if not os.path.isdir(ckpt_dir):
        return None
    # ppdet writes .pdopt after .pdparams/.pdema, so a .pdopt marks a complete checkpoint.
    stems = {name[: -len(".pdopt")] for name in os.listdir(ckpt_dir) if name.endswith(".pdopt")}
    if "model_final" in stems:  # training already finished; resuming it trains zero epochs
        return os.path.join(ckpt_dir, "model_final")
    epochs = [int(stem) for stem in stems if stem.isdigit()]
    return os.path.join(ckpt_dir, str(max(epochs))) if epochs else None


def track_best_model(trainer: Any, ckpt_dir: str) -> None:
    """Write best_model.json whenever ppdet saves best_model, and start from the stored best AP.

    ppdet's Checkpointer keeps the best AP in memory only: after a restart its first evaluation
    would overwrite a better best_model from before. It is found among the trainer's callbacks
    (paddledet is pinned, so that attribute is stable)."""
    from ppdet.engine.callbacks import Callback, Checkpointer

    checkpointer = next((c for c in trainer._callbacks if isinstance(c, Checkpointer)), None)
    info_path = os.path.join(ckpt_dir, BEST_INFO)
    weights_path = os.path.join(ckpt_dir, BEST_MODEL + ".pdopt")  # ppdet writes it last
    if checkpointer is not None and os.path.isfile(info_path) and os.path.isfile(weights_path):
        with open(info_path, encoding="utf-8") as f:
            checkpointer.best_ap = float(json.load(f)["ap"])
        print(f"{PROG}: best_model so far: AP {checkpointer.best_ap:.4f}", flush=True)

    def saved_at() -> int | None:
        return os.stat(weights_path).st_mtime_ns if os.path.isfile(weights_path) else None

    class BestModelInfo(Callback):
        seen = saved_at()

        def on_epoch_end(self, status: dict[str, Any]) -> None:
            if status.get("mode") != "eval" or not status.get("save_best_model"):
                return
            mtime = saved_at()
            if mtime is None or mtime == self.seen:
                return
            self.seen = mtime
            info = {"epoch": status["epoch_id"] + 1, "ap": getattr(checkpointer, "best_ap", None)}
            tmp = info_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(info, f)
            os.replace(tmp, info_path)

    trainer.register_callbacks([BestModelInfo(trainer)])


def train(args: argparse.Namespace) -> None:
    cfg = load_cfg(args.config, args.opt)
    from ppdet.engine import Trainer, init_parallel_env

    if world_size() > 1:
        init_parallel_env()  # also seeds each rank differently, as tools/train.py does
    trainer = Trainer(cfg, mode="train")
    if args.eval:
        track_best_model(trainer, os.path.join(cfg.save_dir, cfg.filename))

    resume = find_resume_checkpoint(cfg) if args.resume == "auto" else args.resume
    if resume:
        # Restores weights, optimizer/LR state and EMA; training continues at the saved epoch.
        trainer.resume_weights(resume)
    elif cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    trainer.train(validate=args.eval)


def evaluate(args: argparse.Namespace) -> None:
    cfg = load_cfg(args.config, args.opt)
    from ppdet.engine import Trainer, init_parallel_env
    from ppdet.metrics import map_utils

    cfg.weights = args.weights
    # Per-class AP as well: ppdet prints it as a table. It would also draw PR-curve JPEGs into
    # the working dir with matplotlib, which the image does not carry: not needed, skipped.
    cfg.classwise = True
    map_utils.draw_pr_curve = lambda *args, **kwargs: None
    if world_size() > 1:
        init_parallel_env()
    trainer = Trainer(cfg, mode="eval")
    trainer.load_weights(args.weights)
    trainer.evaluate()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", required=True, help="PaddleDetection YAML config")
        p.add_argument(
            "-o",
            "--opt",
            nargs="+",
            action="extend",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, dotted for nested keys (e.g. TrainReader.batch_size=8)",
        )

    p_train = sub.add_parser("train", help="train a model")
    common(p_train)
    p_train.add_argument(
        "-r",
        "--resume",
        metavar="CKPT",
        help="checkpoint to resume (path with or without .pdparams), or 'auto' for the newest "
        "one under save_dir, if any",
    )
    p_train.add_argument(
        "--eval", action="store_true", help="evaluate at every snapshot epoch (keeps best_model)"
    )
    p_train.set_defaults(func=train)

    p_eval = sub.add_parser("eval", help="evaluate weights on EvalDataset")
    common(p_eval)
    p_eval.add_argument("-w", "--weights", required=True, help="weights (.pdparams, ext optional)")
    p_eval.set_defaults(func=evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except WorkerError as exc:
        print(f"{PROG}: {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # any failure must become a non-zero exit
        # The traceback is what a user needs in `kubectl logs`; the last line is the reason.
        traceback.print_exc()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{PROG}: {args.command} failed: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
