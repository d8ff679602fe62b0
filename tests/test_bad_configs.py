"""Every bad config gets exactly one line naming file and key, exit code 2, and no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "bad_configs.yml").read_text()
)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_config(case: dict[str, Any], project: Path, cli: Any) -> None:
    for rel, text in case["files"].items():
        (project / rel).write_text(text)
    if "configs/runs/bad.yml" in case["files"] or not any(
        k.startswith("configs/runs/") for k in case["files"]
    ):
        runs = ["bad"] if "configs/runs/bad.yml" in case["files"] else []
    else:
        runs = [Path(k).stem for k in case["files"] if k.startswith("configs/runs/")]
    result = cli("validate", *runs)
    assert result.code == 2, result
    assert result.err.strip() == case["error"]
    assert "Traceback" not in result.err
    assert result.out == ""


def test_render_of_a_bad_run_among_good_writes_nothing(project: Path, cli: Any) -> None:
    (project / "configs/runs/bad.yml").write_text("_BASE_: ../bases/picodet_s_320.yml\ngpus: 0\n")
    out = project / "out"
    result = cli("render", "--all", "-o", str(out))
    assert result.code == 2
    assert (
        result.err.strip()
        == "error: configs/runs/bad.yml: gpus: input should be greater than or equal to 1 (got 0)"
    )
    assert not out.exists() or not any(out.iterdir())


def test_unknown_run_name(project: Path, cli: Any) -> None:
    result = cli("render", "Z9")
    assert result.code == 2
    assert result.err.strip() == (
        f"error: no run matches 'Z9' in {project / 'configs/runs'} "
        "(known: L1, L2, L3, L4, M1, S1, U1, X1, Y1, Y2, Y3, Y4)"
    )


def test_no_project_file(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETK8S_PROJECT", raising=False)
    result = cli("runs")
    assert result.code == 2
    assert result.err.startswith(f"error: no detk8s.yaml in {tmp_path.resolve()} or its parents")
    assert len(result.err.strip().splitlines()) == 1
