"""Where a run's files are on the machine that runs it: inside the pod, or on this machine for
the local backend. Adapters build paths from a Layout, never from literals; run.json carries the
layout, so `detk8s exec` runs a job the same way in a pod and here."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detk8s.config.schema import DatasetConfig
from detk8s.paths import PACKAGE_DIR
from detk8s.weights import WeightsSource

RUN_FILE = "run.json"


@dataclass(frozen=True)
class Layout:
    config_dir: str  # the run's files (run.json, framework config); a ConfigMap in the pod
    data_dir: str  # datasets, one dir each
    output_dir: str  # run outputs, one dir each
    configs_root: str | None  # model configs: <configs_root>/<framework>/<file>; None: where
    # this machine found them (the local backend)
    package_dir: str  # the installed detk8s package (worker scripts)
    python: str = "python"  # the interpreter that has the framework installed
    detk8s: tuple[str, ...] = ("detk8s",)  # how to start detk8s itself
    trainers_dir: str | None = None  # trainer checkouts, <trainers_dir>/<name>; None: none here

    def run_dir(self, run: str) -> str:
        return f"{self.output_dir}/{run}"

    def dataset_dir(self, dataset: DatasetConfig) -> str:
        location = dataset.location
        if location.kind == "file":  # already on this machine's disk
            return location.path or "/"
        return f"{self.data_dir}/{dataset.name}"

    def train_list(self, run: str, dataset: DatasetConfig) -> str:
        """The train list to read: the dataset's own (relative to its dir), or the subset list
        `detk8s exec` writes into the run's dir."""
        if dataset.train_fraction is None:
            return dataset.train_list
        return f"{self.run_dir(run)}/lists/{Path(dataset.train_list).name}"

    def pretrained_weights(self, run: str, dataset: DatasetConfig, source: WeightsSource) -> str:
        """Where training reads `source` from: `detk8s exec` fetches URLs and s3 objects into
        the run's dir before training, so trainers only ever see a local file."""
        if source.kind in ("s3", "url"):
            return f"{self.run_dir(run)}/pretrained/{source.file_name}"
        if source.kind == "dataset":
            return f"{self.dataset_dir(dataset)}/{source.value}"
        return source.value

    def model_config(self, framework: str, file: str, found: Path) -> str:
        """Where the trainer reads model config `file`, found at `found` on this machine."""
        if self.configs_root is None:
            return str(found)
        return f"{self.configs_root}/{framework}/{file}"

    @property
    def run_file(self) -> str:
        return f"{self.config_dir}/{RUN_FILE}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "detk8s": list(self.detk8s)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        return cls(**{**data, "detk8s": tuple(data.get("detk8s", ("detk8s",)))})


# The root filesystem is read-only in the pod: HOME (caches, configs) lives on an emptyDir.
POD_HOME = "/tmp"

# Inside the training image and pod; the Dockerfile installs detk8s from /opt/detk8s.
POD = Layout(
    config_dir="/etc/detk8s",
    data_dir="/data",
    output_dir="/output",
    configs_root="/opt/detk8s/configs",
    package_dir="/opt/detk8s/detk8s",
    trainers_dir="/opt/trainers",  # the Dockerfile's pytorch target checks them out there
)


def local_layout(workdir: Path, run: str, python: str | None = None) -> Layout:
    """This machine: everything of a run under `workdir/<run>/`, datasets under `workdir/data`;
    the trainer (and detk8s) run by `python`, default this one."""
    workdir = workdir.resolve()
    python = python or sys.executable
    return Layout(
        config_dir=str(workdir / run / "config"),
        data_dir=str(workdir / "data"),
        output_dir=str(workdir),
        configs_root=None,
        package_dir=str(PACKAGE_DIR),
        python=python,
        detk8s=(python, "-m", "detk8s"),
    )
