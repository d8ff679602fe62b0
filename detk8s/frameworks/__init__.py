"""The framework registry: the trainers detk8s launches, each an adapter with its own settings
section in a run config. Adapters are imported when a run of theirs is loaded, so the registry
holds import paths; an adapter module must not import its trainer (torch, paddle) at the top."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from detk8s.config.schema import DatasetConfig, RunConfig
    from detk8s.frameworks.base import FrameworkAdapter, Run

ADAPTERS: dict[str, str] = {
    "paddledet": "detk8s.frameworks.paddledet:PaddleDetAdapter",
    "ultralytics": "detk8s.frameworks.ultralytics:UltralyticsAdapter",
    "ssd": "detk8s.frameworks.ssd:SsdAdapter",
    "yolox": "detk8s.frameworks.yolox:YoloxAdapter",
}


class SectionErrors(Exception):
    """Keys of a run config that the framework registry refuses: (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))


def known_frameworks() -> list[str]:
    return sorted(ADAPTERS)


@cache
def get_adapter(framework: str) -> FrameworkAdapter:
    module, _, attr = ADAPTERS[framework].partition(":")
    adapter: FrameworkAdapter = getattr(import_module(module), attr)()
    return adapter


def settings_for(config: RunConfig) -> BaseModel:
    """The run's framework settings, validated by the framework's own model.

    Raises SectionErrors for an unknown framework and for keys outside the common ones that are
    not the framework's section, and pydantic's ValidationError (locations relative to the
    section) for a bad section."""
    name = config.framework
    if name not in ADAPTERS:
        known = ", ".join(known_frameworks())
        raise SectionErrors([("framework", f"unknown framework {name!r} (known: {known})")])
    adapter = get_adapter(name)
    problems = []
    for key in config.sections:
        if key == name:
            continue
        if key in adapter.moved_keys:
            where = f"{name}.{adapter.moved_keys[key]}"
            problems.append((key, f"moved into the framework's section: set {where}"))
        elif key in ADAPTERS:
            problems.append((key, f"is the {key} section, but the run's framework is {name}"))
        else:
            problems.append((key, "unknown key"))
    section: Any = config.sections.get(name) or {}
    if not isinstance(section, dict):
        problems.append((name, f"must be a mapping of {name} settings"))
    if problems:
        raise SectionErrors(problems)
    settings: BaseModel = adapter.settings_model.model_validate(section)
    return settings


def make_run(config: RunConfig, dataset: DatasetConfig) -> Run:
    """A validated run config as its adapter takes it."""
    from detk8s.frameworks.base import Run

    return Run(config, settings_for(config), dataset)


def check_run(run: Run) -> list[tuple[str, str]]:
    """What the run's framework refuses in it, as (dotted key, message): the input size against
    the network's stride, then the adapter's own checks."""
    from detk8s.frameworks.base import stride_problem

    adapter = get_adapter(run.config.framework)
    size = run.config.input_size
    problem = stride_problem(size, adapter.input_stride) if size else None
    return [*([("input_size", problem)] if problem else []), *adapter.check(run)]


def settings_schemas() -> dict[str, dict[str, Any]]:
    """Each framework's settings section as JSON Schema, by framework name."""
    return {
        name: get_adapter(name).settings_model.model_json_schema() for name in known_frameworks()
    }
