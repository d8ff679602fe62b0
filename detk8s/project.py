"""The project: finding detk8s.yaml, selecting runs, and loading each into a validated run (the
common config, its framework's settings section, its dataset)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from detk8s.config.errors import config_errors
from detk8s.config.layered import Layered, ParsedFiles, key_origins, load_layered
from detk8s.config.scaling import check_linear_scaling
from detk8s.config.schema import DatasetConfig, ProjectConfig, RunConfig
from detk8s.errors import ConfigError, ConfigErrors, UsageError
from detk8s.frameworks import SectionErrors, check_run, get_adapter, settings_for
from detk8s.names import job_name
from detk8s.paths import PROJECT_FILE, config_search_path
from detk8s.util import natural_key, split_map
from detk8s.yaml_io import read_mapping

if TYPE_CHECKING:
    from pydantic import BaseModel

    from detk8s.frameworks.base import Run
    from detk8s.storage import Connection, Storage

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class LoadedRun:
    """A validated run, its framework settings and dataset, and what the checks found that is
    not fatal."""

    config: RunConfig
    settings: BaseModel
    dataset: DatasetConfig
    file: Path
    project_root: Path  # relative paths in detk8s.yaml (image contexts) are relative to it
    warnings: list[ConfigError] = field(default_factory=list)
    project_file: Path | None = None  # where errors about project settings point
    dataset_file: Path | None = None  # where errors about the dataset point

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def run(self) -> Run:
        from detk8s.frameworks.base import Run

        return Run(self.config, self.settings, self.dataset, config_search_path(self.project_root))


def find_project(start: Path | None = None) -> Path:
    """The project file: $DETK8S_PROJECT, else detk8s.yaml in the working dir or a parent."""
    env = os.environ.get("DETK8S_PROJECT")
    if env and start is None:
        start = Path(env)
    if start is not None and not start.is_dir():  # a project file named outright
        if not start.is_file():
            raise UsageError(f"--project {start}: no such file or directory")
        return start
    if start is not None:
        if not (start / PROJECT_FILE).is_file():
            raise UsageError(f"--project {start}: no {PROJECT_FILE} in it")
        return start / PROJECT_FILE
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    raise UsageError(
        f"no {PROJECT_FILE} in {here} or its parents (run from a detk8s project, "
        "or set --project / DETK8S_PROJECT)"
    )


class Project:
    def __init__(self, file: Path) -> None:
        self.file = file
        self.root = file.parent
        self._datasets: dict[str, DatasetConfig] = {}
        self._dataset_files: dict[str, Path] = {}
        self._files = ParsedFiles()  # like the datasets, read once per command
        raw = read_mapping(file, empty_ok=True)
        try:
            self.settings = ProjectConfig.model_validate(raw)
        except ValidationError as e:
            layered = Layered(raw, key_origins(raw, file))
            raise ConfigErrors(config_errors(e, layered, file)) from None

    @classmethod
    def discover(cls, project: Path | None = None) -> Project:
        return cls(find_project() if project is None else find_project(project))

    @property
    def runs_dir(self) -> Path:
        return self.root / self.settings.runs_dir

    @property
    def datasets_dir(self) -> Path:
        return self.root / self.settings.datasets_dir

    @cached_property
    def run_files(self) -> dict[str, Path]:
        if not self.runs_dir.is_dir():
            raise ConfigError(self.file, "runs_dir", f"{self.runs_dir} is not a directory")
        files = sorted((p for p in self.runs_dir.iterdir() if p.suffix in YAML_SUFFIXES),
                       key=lambda p: (natural_key(p.stem), p.suffix))  # fmt: skip
        by_job: dict[str, Path] = {}
        for file in files:  # the job name is the cluster's key: two runs cannot share one
            other = by_job.setdefault(job_name(file.stem), file)
            if other != file:
                raise ConfigError(file, None, f"both it and {other.name} would be job "
                                              f"{job_name(file.stem)!r}: rename one")  # fmt: skip
        return {p.stem: p for p in files}

    def select(self, patterns: list[str], all_runs: bool = False) -> list[str]:
        """Run names matching names or glob patterns (Y*), in config order, each once."""
        names = list(self.run_files)
        if all_runs:
            return names
        if not patterns:
            raise UsageError("name at least one run, a pattern such as 'Y*', or --all")
        chosen: list[str] = []
        for pattern in patterns:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                known = ", ".join(names) or "none"
                raise UsageError(f"no run matches {pattern!r} in {self.runs_dir} (known: {known})")
            chosen += [h for h in hits if h not in chosen]
        return chosen

    def local_path(self, uri: str) -> str:
        """A file:// URI with a relative path made absolute against the project root."""
        path = uri.removeprefix("file://")
        if uri.startswith("file://") and not path.startswith("/"):
            return f"file://{(self.root / path).resolve()}"
        return uri

    @property
    def connection(self) -> Connection:
        from detk8s.storage import Connection

        return Connection(self.settings.storage.endpoint_url, self.settings.storage.region)

    def storage(self, uri: str | None = None) -> Storage:
        """The project's result storage (or `uri`), relative file:// paths from the root."""
        from detk8s.storage import open_storage

        return open_storage(self.local_path(uri or self.settings.storage.uri), self.connection)

    @property
    def local_dir(self) -> Path:
        return (self.root / self.settings.local_dir).resolve()

    def _defaults(self) -> Layered:
        defaults = self.settings.defaults
        if self.settings.api:  # the project's API, beneath every run as a default
            defaults = {"api": self.settings.api, **defaults}
        return Layered(dict(defaults), key_origins(defaults, self.file))

    def load_run(self, name: str) -> LoadedRun:
        """A validated run, or ConfigErrors listing every problem found in it."""
        file = self.run_files[name]
        merged, bases = load_layered(file, self.root, self._files)
        if "name" in merged.data:
            raise ConfigError(
                merged.origin_of(("name",), file), "name", "is the file name; remove it"
            )
        full = self._defaults()
        full.overlay(merged)
        full.data["name"] = name
        base_full = self._defaults()
        base_full.overlay(bases)
        try:
            config = RunConfig.model_validate(full.data)
        except ValidationError as e:
            raise ConfigErrors(config_errors(e, full, file)) from None
        try:
            settings = settings_for(config)
        except SectionErrors as e:
            raise ConfigErrors(
                [ConfigError(full.origin_of((k,), file), k, m) for k, m in e.problems]
            ) from None
        except ValidationError as e:
            raise ConfigErrors(config_errors(e, full, file, (config.framework,))) from None
        dataset = self.load_dataset(config.dataset, full.origin_of(("dataset",), file))
        dataset_file = self._dataset_files.get(dataset.name)
        loaded = LoadedRun(config, settings, dataset, file, self.root, [], self.file, dataset_file)
        adapter = get_adapter(config.framework)
        problems = check_run(loaded.run)
        if problems:
            errors = [
                ConfigError(full.origin_of(tuple(k.split(".")), file), k, m) for k, m in problems
            ]
            raise ConfigErrors(errors)
        warnings = []
        if adapter.lr_scales_with_batch:
            warnings = [w for w in [check_linear_scaling(config, full, base_full)] if w]
        return LoadedRun(
            config, settings, dataset, file, self.root, warnings, self.file, dataset_file
        )

    def dataset_names(self) -> list[str]:
        if not self.datasets_dir.is_dir():
            return []
        return sorted(p.stem for p in self.datasets_dir.iterdir() if p.suffix in YAML_SUFFIXES)

    def load_dataset(self, name: str, referrer: Path) -> DatasetConfig:
        if name in self._datasets:
            return self._datasets[name]
        file = next(
            (
                self.datasets_dir / f"{name}{s}"
                for s in YAML_SUFFIXES
                if (self.datasets_dir / f"{name}{s}").is_file()
            ),
            None,
        )
        if file is None:
            known = ", ".join(self.dataset_names()) or "none"
            raise ConfigError(
                referrer,
                "dataset",
                f"no dataset {name!r} in {self.datasets_dir.name}/ (known: {known})",
            )
        merged, _ = load_layered(file, self.root, self._files)
        merged.data["name"] = name
        if isinstance(merged.data.get("source"), str):
            merged.data["source"] = self.local_path(merged.data["source"])
        try:
            dataset = DatasetConfig.model_validate(merged.data)
        except ValidationError as e:
            raise ConfigErrors(config_errors(e, merged, file)) from None
        self._datasets[name] = dataset
        self._dataset_files[name] = file
        return dataset

    def load_runs(self, names: list[str]) -> tuple[list[LoadedRun], list[ConfigError]]:
        """Every run that loads, and every problem of those that do not (a sweep's on two
        cores)."""
        loaded: list[LoadedRun] = []
        errors: list[ConfigError] = []
        for outcome in split_map(self._load_or_errors, names):
            if isinstance(outcome, LoadedRun):
                loaded.append(outcome)
            else:
                errors += outcome
        return loaded, errors

    def _load_or_errors(self, name: str) -> LoadedRun | list[ConfigError]:
        try:
            return self.load_run(name)
        except ConfigErrors as e:
            return e.errors
        except ConfigError as e:
            return [e]
