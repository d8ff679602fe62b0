"""A run's learning-rate schedule in numbers: what `detk8s validate` shows beside each run.

The runs keep their own learning rates (they are the experiment); this shows what upstream's
linear scaling rule would give for the same total batch, and how long the warmup lasts. A warmup
counted in iterations covers another share of training whenever the total batch changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.frameworks.base import Schedule


@dataclass(frozen=True)
class ScheduleSummary:
    run: str
    total_batch: int
    lr: float
    rule_lr: float | None  # the recipe's base lr scaled linearly to this total batch
    iterations_per_epoch: int | None
    warmup_iterations: float | None
    warmup_epochs: float | None
    epochs: int

    @property
    def warmup_share(self) -> float | None:
        """The warmup's share of all training, 0..1."""
        return None if self.warmup_epochs is None else min(1.0, self.warmup_epochs / self.epochs)


def iterations_per_epoch(run: RunConfig, train_images: int) -> int:
    """Batches per epoch and replica: each of the gpus x nodes ranks reads ceil(N / ranks)
    images in full batches (the frameworks drop the last partial batch when training)."""
    ranks = run.gpus * run.nodes
    return (-(-train_images // ranks)) // run.batch_size


def summarize(run: RunConfig, dataset: DatasetConfig, schedule: Schedule) -> ScheduleSummary:
    rule = None
    if schedule.reference_lr is not None and schedule.reference_batch:
        effective = max(run.total_batch, schedule.accumulate_to or 0)
        rule = schedule.reference_lr * effective / schedule.reference_batch
    per_epoch = iterations_per_epoch(run, dataset.train_size) if dataset.train_size else None
    iters: float | None = schedule.warmup_iterations
    epochs = schedule.warmup_epochs
    if per_epoch:
        if iters is not None and epochs is None:
            epochs = iters / per_epoch
        elif epochs is not None and iters is None:
            iters = epochs * per_epoch
    return ScheduleSummary(
        run=run.name,
        total_batch=run.total_batch,
        lr=run.lr,
        rule_lr=rule,
        iterations_per_epoch=per_epoch,
        warmup_iterations=iters,
        warmup_epochs=epochs,
        epochs=run.epochs,
    )
