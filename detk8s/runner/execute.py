"""The run, start to finish, on the machine it runs on (a pod, or this one)."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from detk8s import __version__
from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.errors import DetkError
from detk8s.frameworks import get_adapter
from detk8s.frameworks.base import FrameworkAdapter
from detk8s.layout import Layout
from detk8s.results.metrics import parse_metrics
from detk8s.results.record import EvalRecord, FailureRecord
from detk8s.runner.checkpoints import CheckpointSync
from detk8s.runner.data import DataError, fetch_weights, prepare_dataset, write_train_subset
from detk8s.runner.process import Terminated, run_teed
from detk8s.runner.rank import is_rank0
from detk8s.storage import DONE, EVAL_JSON, FAILED, TRAIN_LOG, Storage
from detk8s.weights import parse_weights_source

EVAL_LOG = "eval.log"
WEIGHTS = "weights"
EXIT_TERMINATED = 143
TAIL_LINES = 20
CHECKPOINT_INTERVAL = float(os.environ.get("DETK8S_CHECKPOINT_INTERVAL", "10"))


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Execution:
    run: RunConfig
    dataset: DatasetConfig
    layout: Layout
    storage: Storage
    launch: list[str]  # the framework's train command, as rendered
    tee: bool = True
    force: bool = False
    rank0: bool = field(default_factory=is_rank0)
    sync: CheckpointSync | None = field(default=None, init=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.layout.run_dir(self.run.name))

    def key(self, name: str) -> str:
        return f"{self.run.name}/{name}"

    def say(self, message: str) -> None:
        print(f"[detk8s] {message}", flush=True)

    def execute(self) -> int:
        """The exit code: 0 done (or already done), the framework's code on failure, 143 when
        stopped by SIGTERM (the pod will be restarted and resume)."""
        if self.rank0 and not self.force and self.storage.exists(self.key(DONE)):
            self.say(f"{self.run.name} is already done in {self.storage.uri}; nothing to do")
            return 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        terminated = Terminated()
        terminated.install()
        started, t0 = now(), time.monotonic()
        adapter = get_adapter(self.run.framework)
        try:
            self._prepare_data()
            self._prepare_weights()
            ckpt_dir = adapter.checkpoint_dir(self.run, self.layout)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            sync = CheckpointSync(
                self.storage, self.run.name, adapter, ckpt_dir, interval=CHECKPOINT_INTERVAL,
                say=self.say,
            )  # fmt: skip
            self.sync = sync
            resume = sync.restore()
            argv = list(self.launch)
            if resume is not None:
                self.say(f"resuming from checkpoint {resume.name}")
                argv += adapter.resume_args(resume)
            if self.rank0:
                sync.start()
            code = run_teed(argv, self.run_dir / TRAIN_LOG, terminated, tee=self.tee)
            train_seconds = time.monotonic() - t0
            if self.rank0:
                sync.stop()  # uploads the newest checkpoint, also after SIGTERM
            if terminated.is_set:
                self.say("stopped by SIGTERM: newest checkpoint stored; a restart resumes it")
                if self.rank0:
                    self.storage.upload(self.key(TRAIN_LOG), self.run_dir / TRAIN_LOG)
                return EXIT_TERMINATED
            if code != 0:
                return self._fail(f"training exited with {code}", code)
            if not self.rank0:
                return 0
            return self._evaluate_and_store(adapter, started, train_seconds, resume)
        except DetkError as e:
            return self._fail(str(e), 1)

    def _prepare_weights(self) -> None:
        """Pretrained weights in object storage, fetched once to where the config expects them
        (a pod without egress starts too)."""
        if not self.run.pretrain_weights:
            return
        source = parse_weights_source(self.run.pretrain_weights)
        local = Path(self.layout.pretrained_weights(self.run.name, self.dataset, source))
        if source.kind == "s3":
            fetched = fetch_weights(self.storage, source.value, local)
            self.say(f"pretrained weights {source.value}: {fetched} -> {local}")
        elif source.kind != "url" and not local.is_file():
            raise DataError(f"pretrain_weights {self.run.pretrain_weights}: {local} does not exist")

    def _prepare_data(self) -> None:
        root = Path(self.layout.dataset_dir(self.dataset))
        prepare_dataset(self.dataset, root, self.storage)
        if self.dataset.train_fraction is not None:
            out = Path(self.layout.train_list(self.run.name, self.dataset))
            kept = write_train_subset(self.dataset, root, out)
            self.say(f"train list: first {kept} lines ({self.dataset.train_fraction}) -> {out}")

    def _evaluate_and_store(
        self, adapter: FrameworkAdapter, started: str, train_seconds: float, resume: Path | None
    ) -> int:
        ckpt_dir = adapter.checkpoint_dir(self.run, self.layout)
        result = adapter.evaluated_weights(self.run, ckpt_dir)
        if result is None:
            return self._fail(f"training ended without final weights in {ckpt_dir}", 1)
        weights = result.weights
        epoch = f" (epoch {result.epoch})" if result.epoch else ""
        self.say(f"evaluating {result.name}{epoch} on {self.dataset.val_list}")
        t0 = time.monotonic()
        argv = adapter.eval_command(self.run, self.layout, weights)
        eval_log = self.run_dir / EVAL_LOG
        eval_log.unlink(missing_ok=True)
        code = run_teed(argv, eval_log, Terminated(), tee=self.tee)
        if code != 0:
            return self._fail(f"evaluation exited with {code}", code)
        metrics = parse_metrics(eval_log.read_text(encoding="utf-8", errors="replace"))
        if "map50" not in metrics:
            return self._fail("evaluation printed no mAP", 1)
        record = EvalRecord(
            run=self.run.name,
            framework=self.run.framework,
            model=self.run.model,
            dataset=self.dataset.name,
            train_fraction=self.dataset.train_fraction,
            train_images=self._train_images(),
            gpus=self.run.gpus,
            nodes=self.run.nodes,
            batch_size=self.run.batch_size,
            lr=self.run.lr,
            epochs=self.run.epochs,
            weights=result.name,
            weights_epoch=result.epoch,
            metrics=metrics,
            map50=metrics.get("map50"),
            map50_95=metrics.get("map50_95"),
            fps=metrics.get("fps"),
            train_seconds=round(train_seconds, 1),
            eval_seconds=round(time.monotonic() - t0, 1),
            image=os.environ.get("DETK8S_IMAGE"),
            resumed_from=resume.name if resume else None,
            checkpoint_errors=self._checkpoint_errors(),
            started=started,
            finished=now(),
            detk8s_version=__version__,
        )
        (self.run_dir / EVAL_JSON).write_text(record.model_dump_json(indent=2))
        # The order is the contract: everything DONE vouches for is stored before DONE.
        self.storage.upload(self.key(TRAIN_LOG), self.run_dir / TRAIN_LOG)
        self.storage.upload(self.key(EVAL_LOG), eval_log)
        self.storage.upload(self.key(EVAL_JSON), self.run_dir / EVAL_JSON)
        self.storage.upload(self.key(f"{WEIGHTS}/{weights.name}"), weights)
        self.storage.put(self.key(DONE), f"{record.finished}\n".encode())
        self.storage.delete(self.key(FAILED))  # an earlier attempt's
        summary = f"mAP(0.50) {record.map50:.2f}%"
        if record.fps:
            summary += f", {record.fps:.2f} FPS"
        self.say(f"{self.run.name} done: {summary}; results in {self.storage.uri}/{self.run.name}/")
        return 0

    def _checkpoint_errors(self) -> list[str]:
        errors = self.sync.errors if self.sync else {}
        return [f"{name}: {e}" for name, e in errors.items()]

    def _train_images(self) -> int | None:
        if self.dataset.train_fraction is None:
            return self.dataset.train_images
        path = Path(self.layout.train_list(self.run.name, self.dataset))
        return len(path.read_text().splitlines()) if path.is_file() else None

    def _fail(self, reason: str, code: int) -> int:
        self.say(f"{self.run.name} failed: {reason}")
        if self.rank0:
            log = self.run_dir / TRAIN_LOG
            tail = (
                log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
            )
            record = FailureRecord(
                run=self.run.name, reason=reason, exit_code=code, finished=now(), log_tail=tail,
                checkpoint_errors=self._checkpoint_errors(),
            )  # fmt: skip
            try:
                if log.is_file():
                    self.storage.upload(self.key(TRAIN_LOG), log)
                self.storage.put(self.key(FAILED), record.model_dump_json(indent=2).encode())
            except DetkError as e:
                self.say(f"could not store the failure: {e}")
        return code or 1


def load_run_file(path: Path) -> tuple[RunConfig, DatasetConfig]:
    """The resolved run and dataset the ConfigMap carries (see jobspec.run_file)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return RunConfig.model_validate(data["run"]), DatasetConfig.model_validate(data["dataset"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as e:
        raise DetkError(f"{path}: not a detk8s run file ({type(e).__name__}: {e})") from None


def write_files(files: dict[str, str], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content, encoding="utf-8")
