"""The interface every framework adapter implements, and the values it answers with.

An adapter speaks twice in a run's life:
- at render time (this machine), it checks the run, and says what every replica of the job gets:
  the job kind whose launcher conventions it follows, env, files (`Plan`);
- in the pod (`detk8s exec`), it prepares its inputs, builds *this* replica's train command from
  the `Replica` the operator's env describes and the checkpoint to resume from, reports the
  checkpoints it wrote, and evaluates the result and parses its metrics.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.errors import DetkError
from detk8s.layout import Layout
from detk8s.paths import config_search_path
from detk8s.replica import Replica
from detk8s.results.metrics import Metrics

# resumable: training can continue from it; final: the last epoch's (resuming it trains nothing);
# best: the best weights on the val list so far, rewritten in place while training goes on.
CheckpointRole = Literal["resumable", "final", "best"]


@dataclass(frozen=True)
class Run:
    """A run as an adapter sees it: the common config, its framework's settings, its dataset,
    and where its model configs are looked up (the project's configs/, then detk8s's)."""

    config: RunConfig
    settings: Any  # the adapter's `settings_model`
    dataset: DatasetConfig
    config_dirs: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.config.name

    def model_config(self, file: str) -> Path | None:
        """The framework's model config `file`: the first of the search path that has it."""
        for root in self.config_dirs or config_search_path(Path.cwd()):
            path = root / self.config.framework / file
            if path.is_file():
                return path
        return None


def checkout_dir(layout: Layout, setting: str, value: str | None, checkout: str) -> str:
    """A trainer's code: the run's `setting` (value), else the image's checkout `checkout`."""
    if value:
        return value
    if layout.trainers_dir is None:
        raise DetkError(f"{setting}: no {checkout} checkout on this machine: set it")
    return f"{layout.trainers_dir}/{checkout}"


@dataclass(frozen=True)
class Plan:
    """What every replica of a run gets, decided at render time."""

    job_kind: str  # the Kubeflow kind whose launcher and env conventions the trainer follows
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # mounted read-only at Layout.config_dir


@dataclass(frozen=True)
class Command:
    """A process to start: an argument list (no shell parses it) and its env changes."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()  # inherited variables the process must not see


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint the framework wrote completely."""

    name: str
    files: tuple[Path, ...]
    weights: Path  # the file holding the model weights (what eval loads and results keep)
    role: CheckpointRole
    epoch: int | None  # epochs completed when it was saved, when known

    @property
    def order(self) -> float:
        return resume_order(self.role, self.epoch)


def resume_order(role: str, epoch: int | None) -> float:
    """The newest resumable checkpoint sorts last; negative for those not to resume from."""
    if role == "final":
        return float("inf")
    if role == "resumable":
        return float(epoch or 0)
    return -1.0


@dataclass(frozen=True)
class Progress:
    """Where training is, from the newest progress line of its log (counts 1-based)."""

    epoch: int
    epochs: int | None
    iteration: int | None = None
    iterations: int | None = None
    loss: float | None = None
    eta: str | None = None  # as the trainer prints it, or estimated

    def __str__(self) -> str:
        parts = [f"epoch {self.epoch}/{self.epochs or '?'}"]
        if self.iteration is not None:
            parts.append(f"iter {self.iteration}/{self.iterations or '?'}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.eta:
            parts.append(f"ETA {self.eta}")
        return ", ".join(parts)


# A point in a training log: its offset in the text, and what it says.
Logged = tuple[int, Progress]
Evaluation = tuple[int, float]  # offset, mAP@0.5 in percent


@dataclass(frozen=True)
class Curves:
    """A run's training as a function of its epochs (1-based), read from its log."""

    loss: dict[int, float]  # the mean loss of the epoch's logged iterations
    map50: dict[int, float]  # mAP@0.5 (%) of the evaluation that followed the epoch


def latest_progress(adapter: FrameworkAdapter, run: Run, log: str) -> Progress | None:
    """Where training is: its log's newest progress line."""
    lines = adapter.progress_lines(run, log)
    return lines[-1][1] if lines else None


def curves(adapter: FrameworkAdapter, run: Run, log: str) -> Curves:
    """Loss and mAP per epoch. An evaluation belongs to the epoch of the progress line before
    it; a resumed run logs epochs again, and the later attempt's values count."""
    lines = adapter.progress_lines(run, log)
    losses: dict[int, list[float]] = {}
    for _, p in lines:
        if p.loss is not None:
            losses.setdefault(p.epoch, []).append(p.loss)
    offsets = [offset for offset, _ in lines]
    maps: dict[int, float] = {}
    for offset, value in adapter.evaluations(run, log):
        before = bisect.bisect_right(offsets, offset)
        if before:
            maps[lines[before - 1][1].epoch] = value
    return Curves(
        {e: sum(v) / len(v) for e, v in sorted(losses.items())}, dict(sorted(maps.items()))
    )


@dataclass(frozen=True)
class Schedule:
    """The model's learning-rate recipe, as `detk8s validate` shows it."""

    reference_lr: float | None = None  # the recipe's base lr...
    reference_batch: int | None = None  # ...for this total batch (the upstream recipe's)
    warmup_iterations: int | None = None  # warmup counted in iterations, or
    warmup_epochs: float | None = None  # counted in epochs
    accumulate_to: int | None = None  # the trainer accumulates gradients up to this batch


def stride_problem(size: int, stride: int) -> str | None:
    """Why `size` does not suit a network that downsamples by `stride`, if it does not."""
    return f"{size} is not a multiple of {stride}" if size % stride else None


class FrameworkAdapter(Protocol):
    name: ClassVar[str]  # the run's `framework:` and the name of its settings section
    input_stride: ClassVar[int]  # input_size must be a multiple of it (1: any size)
    family: ClassVar[str]  # the image family (`images:` key `image: auto` resolves to)
    settings_model: ClassVar[type[BaseModel]]
    moved_keys: ClassVar[dict[str, str]]  # top-level keys that moved into the section
    lr_scales_with_batch: ClassVar[bool]  # whether the linear scaling rule applies to `lr`

    # -- render time --------------------------------------------------------------------------

    def check(self, run: Run) -> list[tuple[str, str]]:
        """Problems as (key, message); the key is a dotted path in the run config."""
        ...

    def plan(self, run: Run, layout: Layout) -> Plan: ...

    def schedule(self, run: Run) -> Schedule: ...

    # -- in the pod ---------------------------------------------------------------------------

    def prepare(self, run: Run, layout: Layout) -> None:
        """Inputs the trainer needs besides the dataset (converted labels, ...); idempotent."""
        ...

    def train_command(
        self, run: Run, layout: Layout, replica: Replica, resume: Checkpoint | None
    ) -> Command: ...

    def checkpoint_dir(self, run: Run, layout: Layout) -> Path: ...

    def checkpoints(self, run: Run, directory: Path) -> list[Checkpoint]:
        """The checkpoints written completely in `directory`."""
        ...

    def evaluated_weights(self, run: Run, directory: Path) -> Checkpoint | None:
        """The checkpoint whose weights are the run's result: the best on the val list when
        the run evaluated while training, else the final one."""
        ...

    def eval_command(
        self, run: Run, layout: Layout, replica: Replica, weights: Checkpoint
    ) -> Command:
        """Evaluation of `weights` on the val list: one process, on rank 0 only."""
        ...

    def progress_lines(self, run: Run, log: str) -> list[Logged]:
        """Every progress line of a training log (or of its tail), in order."""
        ...

    def evaluations(self, run: Run, log: str) -> list[Evaluation]:
        """Every evaluation on the val list that training logged, in order."""
        ...

    def metrics(self, run: Run, layout: Layout, eval_output: str) -> Metrics:
        """The evaluation's metrics, from its output (and files the trainer wrote)."""
        ...
