"""Training curves (loss and mAP per epoch) read from real CPU training logs of each trainer,
and `collect --plot/--curves`: bars that stay visible near 0, curves from stored logs (the final
train.log, or rank 0's log while it trains)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detk8s.frameworks import get_adapter
from detk8s.frameworks.base import curves, latest_progress
from detk8s.project import Project
from detk8s.results.plot import VISIBLE, visible_heights
from detk8s.storage import open_storage

LOGS = Path(__file__).parent / "data" / "logs"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("run", "log", "loss", "map50"),
    [
        # ppdet: one epoch of 4 iterations (loss 3.93, 3.97, 4.36, 4.20), then --eval's mAP.
        ("L1", "ppdet_train.log", {1: 4.1133}, {1: 0.0}),
        # yolov5 train.py: val's `all` row after each epoch; not the best.pt validation after
        # "2 epochs completed" (0.00122), which would overwrite epoch 2's 0.00208.
        ("U1", "yolov5_train.log", {1: 0.1229, 2: 0.163}, {1: 0.24, 2: 0.21}),
    ],
)
def test_curves_from_real_logs(
    project: Path, run: str, log: str, loss: dict[int, float], map50: dict[int, float]
) -> None:
    loaded = Project.discover().load_run(run)
    got = curves(get_adapter(loaded.config.framework), loaded.run, (LOGS / log).read_text())
    assert got.map50 == map50
    assert got.loss == pytest.approx(loss, abs=1e-3)


def test_ssd_curves_evaluate_every_fifth_epoch(project: Path) -> None:
    loaded = Project.discover().load_run("S1")
    got = curves(get_adapter("ssd"), loaded.run, (LOGS / "ssd_train.log").read_text())
    # "Epoch: 5, Mean Average Precision (mAP):  0.0086..." follows epoch 5 (0-based), i.e. 6.
    assert list(got.map50.items())[:3] == [(1, 0.0), (6, 0.86), (11, 0.96)]
    assert sorted(got.loss) == list(range(1, 31))
    progress = latest_progress(get_adapter("ssd"), loaded.run, (LOGS / "ssd_train.log").read_text())
    assert progress is not None and progress.epoch == 30


def test_bars_near_zero_stay_visible() -> None:
    assert visible_heights([0.0, None, 0.004, 40.0], top=50.0) == [
        50.0 * VISIBLE, 50.0 * VISIBLE, 50.0 * VISIBLE, 40.0
    ]  # fmt: skip


def store_logs(project: Path, tmp_path: Path) -> None:
    from test_results import record

    store = open_storage(f"file://{tmp_path / 'store'}")
    store.put("L1/eval.json", json.dumps(record("L1")).encode())
    store.put("L1/train.log", (LOGS / "ppdet_train.log").read_bytes())
    store.put("L1/DONE", b"")
    log = (LOGS / "yolov5_train.log").read_bytes()  # U1 still training: only its live log
    store.put("U1/logs/master-0/000000.log", log[: len(log) // 2])
    store.put("U1/logs/master-0/000001.log", log[len(log) // 2 :])
    store.put("U1/logs/worker-0/000000.log", b"rank 1 says nothing useful\n")
    store.put("Y1/train.log", b"Traceback (most recent call last):\n")  # failed at once
    text = (project / "detk8s.yaml").read_text()
    (project / "detk8s.yaml").write_text(text.replace("s3://detk8s/runs", store.uri))


def test_collect_curves_from_stored_logs(project: Path, cli: Any, tmp_path: Path) -> None:
    from detk8s.results.curves import run_curves

    store_logs(project, tmp_path)
    proj = Project.discover()
    notes: list[str] = []
    got = run_curves(proj, proj.storage(None), ["L1", "U1", "Y1", "Z9"], notes.append)
    assert sorted(got) == ["L1", "U1"] and got["U1"].map50 == {1: 0.24, 2: 0.21}
    assert notes == [
        "--curves: Y1: no training progress in its stored log yet",
        f"--curves: Z9: no run config in {proj.runs_dir}, so no log format",
    ]
    r = cli("collect", "--plot", "map.png", "--curves", "curves.png")
    assert r.code == 0, r.err
    assert (project / "curves.png").read_bytes()[:8] == PNG
    assert (project / "map.png").read_bytes()[:8] == PNG
    assert "no training progress in its stored log yet" in r.err


def test_curves_without_any_progress_is_one_line_and_writes_nothing(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    store_logs(project, tmp_path)
    r = cli("collect", "Y1", "-o", "summary.csv", "--curves", "curves.png")
    assert r.code == 2 and r.err.strip().splitlines()[-1] == (
        "error: --curves: no run has a training log with progress yet"
    )
    assert not (project / "curves.png").exists() and not (project / "summary.csv").exists()
