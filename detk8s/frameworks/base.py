"""The interface every framework adapter implements, and the records it answers with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.layout import Layout
from detk8s.spec import Launch

# resumable: training can continue from it; final: the last epoch's (resuming it trains nothing);
# best: the best weights on the val list so far, rewritten in place while training goes on.
CheckpointRole = Literal["resumable", "final", "best"]


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
class Schedule:
    """The model config's learning-rate recipe, as `detk8s validate` shows it."""

    reference_lr: float | None  # the recipe's base lr...
    reference_batch: int | None  # ...for this total batch (the upstream recipe's GPUs x batch)
    warmup_iterations: int | None  # warmup counted in iterations, or
    warmup_epochs: float | None  # counted in epochs


class FrameworkAdapter(Protocol):
    name: str

    def launch(self, run: RunConfig, dataset: DatasetConfig, layout: Layout) -> Launch:
        """The command, env and files that start one replica of `run`."""
        ...

    def schedule(self, run: RunConfig) -> Schedule:
        """The learning-rate recipe `run` trains with."""
        ...

    def eval_command(self, run: RunConfig, layout: Layout, weights: Path) -> list[str]:
        """The command that evaluates `weights` on the val list and prints the metrics."""
        ...

    def checkpoint_dir(self, run: RunConfig, layout: Layout) -> Path:
        """Where the framework writes checkpoints."""
        ...

    def checkpoints(self, directory: Path) -> list[Checkpoint]:
        """The checkpoints written completely in `directory`."""
        ...

    def resume_args(self, checkpoint: Path) -> list[str]:
        """Arguments to append to the train command to resume from `checkpoint`."""
        ...

    def evaluated_weights(self, run: RunConfig, directory: Path) -> Checkpoint | None:
        """The checkpoint whose weights are the run's result: the best on the val list when
        the run evaluated while training, else the final one."""
        ...
