"""The interface every framework adapter implements."""

from __future__ import annotations

from typing import Protocol

from detk8s.config.schema import DatasetConfig, RunConfig
from detk8s.spec import Launch


class FrameworkAdapter(Protocol):
    name: str

    def launch(self, run: RunConfig, dataset: DatasetConfig) -> Launch:
        """The command, env and files that start one replica of `run`."""
        ...
