"""The interface every framework adapter implements."""

from __future__ import annotations

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
