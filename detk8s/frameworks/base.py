"""The interface every framework adapter implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.layout import Layout
from detk8s.spec import Launch


class FrameworkAdapter(Protocol):
    name: str

    def launch(self, run: RunConfig, dataset: DatasetConfig, layout: Layout) -> Launch:
        """The command, env and files that start one replica of `run`."""
        ...

    def eval_command(self, run: RunConfig, layout: Layout, weights: str) -> list[str]:
        """The command that evaluates `weights` on the val list and prints the metrics."""
        ...

    def checkpoint_dir(self, run: RunConfig, layout: Layout) -> Path:
        """Where the framework writes checkpoints."""
        ...

    def complete_checkpoints(self, directory: Path) -> dict[str, list[Path]]:
        """Checkpoint name -> its files, for checkpoints written completely."""
        ...

    def checkpoint_order(self, name: str) -> float:
        """Sort key: the checkpoint to resume from sorts last; negative for non-resumable."""
        ...

    def resume_args(self, checkpoint: Path) -> list[str]:
        """Arguments to append to the train command to resume from `checkpoint`."""
        ...

    def final_weights(self, run: RunConfig, layout: Layout) -> Path:
        """The weights evaluated and kept when training ends."""
        ...
