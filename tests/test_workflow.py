"""The example CI workflow (.github/workflows/train.yml) only uses commands and options that
exist, and passes its inputs through the environment (no script injection)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github/workflows/train.yml"


def detk8s_calls() -> list[list[str]]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["train"]["steps"]
    calls = []
    for step in steps:
        for line in step.get("run", "").splitlines():
            line = line.split("||")[0].strip()
            if line.startswith("args=("):  # a call built as a bash array, run as "${args[@]}"
                calls.append(shlex.split(line.removeprefix("args=(").removesuffix(")")))
            elif line.startswith("detk8s ") and "${args[@]}" not in line:
                calls.append(shlex.split(line)[1:])
    return calls


def test_workflow_commands_and_options_exist(project: Path, cli: Any) -> None:
    calls = detk8s_calls()
    assert [c[0] for c in calls] == ["validate", "build", "submit", "status", "collect"]
    for call in calls:
        help_text = cli(call[0], "--help")
        assert help_text.code == 0, call
        for option in (a for a in call[1:] if a.startswith("--")):
            assert option in help_text.out, (call[0], option)


def test_inputs_reach_the_shell_through_env_only() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["train"]["steps"]
    for step in steps:
        assert "${{" not in step.get("run", ""), step  # inputs and secrets come through env
