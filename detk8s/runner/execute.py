"""The run, start to finish, on the machine it runs on (a pod, or this one)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from detk8s import __version__, podenv
from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.errors import DetkError
from detk8s.frameworks import SectionErrors, get_adapter, make_run
from detk8s.frameworks.base import Checkpoint, Command, FrameworkAdapter, Run
from detk8s.layout import Layout
from detk8s.replica import Replica
from detk8s.results.record import EvalRecord, FailureRecord
from detk8s.runner.checkpoints import CheckpointSync
from detk8s.runner.data import DataError, fetch_weights, prepare_dataset, write_train_subset
from detk8s.runner.logsync import LogSync
from detk8s.runner.process import Terminated, run_teed
from detk8s.storage import (
    DONE,
    EVAL_JSON,
    EVAL_LOG,
    FAILED,
    TRAIN_LOG,
    WEIGHTS_DIR,
    Storage,
    index_key,
    open_storage,
)  # fmt: skip
from detk8s.weights import download, parse_weights_source, redact

EXIT_TERMINATED = 143
TAIL_LINES = 20
CHECKPOINT_INTERVAL = float(os.environ.get(podenv.CHECKPOINT_INTERVAL, "10"))
LOG_INTERVAL = float(os.environ.get(podenv.LOG_INTERVAL, "30"))


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Execution:
    run: Run
    layout: Layout
    storage: Storage
    replica: Replica = field(default_factory=Replica.from_env)
    tee: bool = True
    force: bool = False
    argv: list[str] | None = None  # instead of the adapter's train command (debugging)
    sync: CheckpointSync | None = field(default=None, init=False)
    logs: LogSync | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def rank0(self) -> bool:
        return self.replica.rank0

    @property
    def run_dir(self) -> Path:
        return Path(self.layout.run_dir(self.name))

    def key(self, name: str) -> str:
        return f"{self.name}/{name}"

    def say(self, message: str) -> None:
        line = f"[detk8s] {message}"
        print(line, flush=True)
        if self.tee:  # stdout is not the log file (it is with the local backend's --no-tee)
            with contextlib.suppress(OSError), (self.run_dir / TRAIN_LOG).open("a") as log:
                log.write(line + "\n")

    def execute(self) -> int:
        """The exit code: 0 done (or already done), the framework's code on failure, 143 when
        stopped by SIGTERM (the pod will be restarted and resume). The log is in storage while
        it runs, and complete at the end."""
        if self.rank0 and not self.force and self.storage.exists(self.key(DONE)):
            self.say(f"{self.name} is already done in {self.storage.uri}; nothing to do")
            return 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs = LogSync(self.storage, self.name, self.replica.name, self.run_dir / TRAIN_LOG,
                            interval=LOG_INTERVAL, say=self.say)  # fmt: skip
        self.logs.start()
        try:
            return self._execute()
        finally:
            self.logs.stop()

    def _execute(self) -> int:
        terminated = Terminated()
        terminated.install()
        started, t0 = now(), time.monotonic()
        adapter = get_adapter(self.run.config.framework)
        try:
            self._prepare_data()
            self._prepare_weights()
            adapter.prepare(self.run, self.layout)
            ckpt_dir = adapter.checkpoint_dir(self.run, self.layout)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            self.sync = sync = CheckpointSync(
                self.storage, self.name, lambda: adapter.checkpoints(self.run, ckpt_dir), ckpt_dir,
                interval=CHECKPOINT_INTERVAL, say=self.say,
            )  # fmt: skip
            resume = sync.restore()
            if resume is not None and resume.role == "final":
                self.say(f"training finished before ({resume.name} is stored): evaluating")
                code = 0
            else:
                if resume is not None:
                    self.say(f"resuming from checkpoint {resume.name}")
                if self.rank0:
                    sync.start()
                code = self._run(self._train_command(adapter, resume), TRAIN_LOG, terminated)
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

    def _train_command(self, adapter: FrameworkAdapter, resume: Checkpoint | None) -> Command:
        if self.argv:
            return Command(self.argv)
        return adapter.train_command(self.run, self.layout, self.replica, resume)

    def _run(self, command: Command, log: str, terminated: Terminated) -> int:
        self.say(f"running: {shlex.join(command.argv)}")
        return run_teed(
            command.argv, self.run_dir / log, terminated, tee=self.tee, env=command.env,
            unset=command.unset, cwd=self.run_dir,
        )  # fmt: skip

    def _prepare_weights(self) -> None:
        """Pretrained weights fetched once to where the trainer reads them: from object
        storage (a pod without egress starts too) or a URL; or checked, for a path."""
        config = self.run.config
        if not config.pretrain_weights:
            return
        source = parse_weights_source(config.pretrain_weights)
        local = Path(self.layout.pretrained_weights(self.name, self.run.dataset, source))
        if source.kind == "s3":
            fetched = fetch_weights(self.storage, source.value, local)
        elif source.kind == "url":
            fetched = (
                "present"
                if local.is_file()
                else f"downloaded {download(source.value, local) / 1e6:.1f} MB"
            )
        elif not local.is_file():
            raise DataError(f"pretrain_weights {config.pretrain_weights}: {local} does not exist")
        else:
            return
        self.say(f"pretrained weights {redact(source.value)}: {fetched} -> {local}")

    def _prepare_data(self) -> None:
        dataset = self.run.dataset
        root = Path(self.layout.dataset_dir(dataset))
        prepare_dataset(dataset, root, self.storage)
        if dataset.train_fraction is not None:
            out = Path(self.layout.train_list(self.name, dataset))
            kept = write_train_subset(dataset, root, out)
            self.say(f"train list: first {kept} lines ({dataset.train_fraction}) -> {out}")

    def _evaluate_and_store(
        self,
        adapter: FrameworkAdapter,
        started: str,
        train_seconds: float,
        resume: Checkpoint | None,
    ) -> int:
        config, dataset = self.run.config, self.run.dataset
        ckpt_dir = adapter.checkpoint_dir(self.run, self.layout)
        result = adapter.evaluated_weights(self.run, ckpt_dir)
        if result is None:
            return self._fail(f"training ended without final weights in {ckpt_dir}", 1)
        epoch = f" (epoch {result.epoch})" if result.epoch else ""
        self.say(f"evaluating {result.name}{epoch} on {dataset.val_list}")
        t0 = time.monotonic()
        eval_log = self.run_dir / EVAL_LOG
        eval_log.unlink(missing_ok=True)
        command = adapter.eval_command(self.run, self.layout, self.replica, result)
        code = self._run(command, EVAL_LOG, Terminated())
        if code != 0:
            return self._fail(f"evaluation exited with {code}", code)
        output = eval_log.read_text(encoding="utf-8", errors="replace")
        metrics = adapter.metrics(self.run, self.layout, output)
        if metrics.map50 is None:
            return self._fail("evaluation printed no mAP", 1)
        record = EvalRecord(
            run=self.name,
            framework=config.framework,
            model=config.model,
            dataset=dataset.name,
            train_fraction=dataset.train_fraction,
            train_images=self._train_images(),
            gpus=config.gpus,
            nodes=config.nodes,
            batch_size=config.batch_size,
            lr=config.lr,
            epochs=config.epochs,
            weights=result.name,
            weights_epoch=result.epoch,
            metrics=metrics.details,
            map50=metrics.map50,
            map50_95=metrics.map50_95,
            per_class=metrics.per_class,
            fps=metrics.fps,
            metric_lines=metrics.lines,
            train_seconds=round(train_seconds, 1),
            eval_seconds=round(time.monotonic() - t0, 1),
            image=os.environ.get(podenv.IMAGE),
            resumed_from=resume.name if resume else None,
            checkpoint_errors=self._checkpoint_errors(),
            started=started,
            finished=now(),
            detk8s_version=__version__,
        )
        (self.run_dir / EVAL_JSON).write_text(record.model_dump_json(indent=2))
        if self.logs is not None:
            self.logs.stop()  # nothing of the run is written after DONE
        # The order is the contract: everything DONE vouches for is stored before DONE.
        self.storage.upload(self.key(TRAIN_LOG), self.run_dir / TRAIN_LOG)
        self.storage.upload(self.key(EVAL_LOG), eval_log)
        self.storage.upload(self.key(EVAL_JSON), self.run_dir / EVAL_JSON)
        self.storage.upload(self.key(f"{WEIGHTS_DIR}/{result.weights.name}"), result.weights)
        self.storage.upload(index_key(self.name), self.run_dir / EVAL_JSON)
        self.storage.put(self.key(DONE), f"{record.finished}\n".encode())
        self.storage.delete(self.key(FAILED))  # an earlier attempt's
        summary = f"mAP(0.50) {record.map50:.2f}%"
        if record.fps:
            summary += f", {record.fps:.2f} FPS"
        self.say(f"{self.name} done: {summary}; results in {self.storage.uri}/{self.name}/")
        return 0

    def _checkpoint_errors(self) -> list[str]:
        errors = self.sync.errors if self.sync else {}
        return [f"{name}: {e}" for name, e in errors.items()]

    def _train_images(self) -> int | None:
        dataset = self.run.dataset
        if dataset.train_fraction is None:
            return dataset.train_images
        path = Path(self.layout.train_list(self.name, dataset))
        return len(path.read_text().splitlines()) if path.is_file() else None

    def _fail(self, reason: str, code: int) -> int:
        self.say(f"{self.name} failed: {reason}")
        if self.logs is not None:
            self.logs.stop()
        if self.rank0:
            log = self.run_dir / TRAIN_LOG
            tail = (
                log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
            )
            record = FailureRecord(
                run=self.name, reason=reason, exit_code=code, finished=now(), log_tail=tail,
                checkpoint_errors=self._checkpoint_errors(),
            )  # fmt: skip
            try:
                if log.is_file():
                    self.storage.upload(self.key(TRAIN_LOG), log)
                self.storage.put(self.key(FAILED), record.model_dump_json(indent=2).encode())
            except DetkError as e:
                self.say(f"could not store the failure: {e}")
        return code or 1


@dataclass(frozen=True)
class RunFile:
    """run.json as `detk8s exec` reads it (see jobspec.run_file)."""

    run: Run
    layout: Layout


def load_run_file(path: Path) -> RunFile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        config = RunConfig.model_validate(data["run"])
        dataset = DatasetConfig.model_validate(data["dataset"])
        layout = Layout.from_dict(data["layout"])
        return RunFile(make_run(config, dataset), layout)
    except (OSError, KeyError, TypeError, ValueError, SectionErrors) as e:
        raise DetkError(f"{path}: not a detk8s run file ({type(e).__name__}: {e})") from None


def execution(
    run_file: Path, storage_uri: str | None, tee: bool, force: bool, argv: list[str] | None
) -> Execution:
    """The run a run file describes, storing into `storage_uri` or $DETK8S_STORAGE."""
    loaded = load_run_file(run_file)
    uri = storage_uri or os.environ.get(podenv.STORAGE)
    if not uri:
        raise DetkError(f"no storage: pass --storage or set {podenv.STORAGE}")
    return Execution(
        loaded.run, loaded.layout, open_storage(uri), tee=tee, force=force, argv=argv or None
    )
