"""Loss and mAP per epoch of finished or running runs, from the logs they stored
(`collect --curves`). The run's framework reads its own log format."""

from __future__ import annotations

from collections.abc import Callable

from detk8s.errors import DetkError
from detk8s.frameworks import get_adapter
from detk8s.frameworks.base import Curves, curves
from detk8s.project import Project
from detk8s.runner.logsync import stored_log
from detk8s.storage import LOGS_DIR, TRAIN_LOG, Storage


def training_log(store: Storage, run: str) -> str | None:
    """The whole training log (stored when training ended), else the log rank 0 is storing
    while it trains (the first replica with index 0: master-0 before worker-0)."""
    data = store.get(f"{run}/{TRAIN_LOG}")
    if data is not None:
        return data.decode("utf-8", "replace")
    prefix = f"{run}/{LOGS_DIR}/"
    replicas = sorted({o.key[len(prefix) :].split("/", 1)[0] for o in store.list(prefix)})
    for replica in replicas:
        if replica.endswith("-0") or replica == "local":
            return stored_log(store, run, replica)
    return None


def run_curves(
    proj: Project, store: Storage, runs: list[str], note: Callable[[str], None]
) -> dict[str, Curves]:
    """Each run's curves; runs without a config or a log are noted and left out."""
    found: dict[str, Curves] = {}
    for name in runs:
        if name not in proj.run_files:
            note(f"--curves: {name}: no run config in {proj.runs_dir}, so no log format")
            continue
        try:
            loaded = proj.load_run(name)
        except DetkError as e:
            note(f"--curves: {name}: {e}")
            continue
        log = training_log(store, name)
        got = curves(get_adapter(loaded.config.framework), loaded.run, log) if log else None
        if got is None or not (got.loss or got.map50):
            note(f"--curves: {name}: no training progress in its stored log yet")
            continue
        found[name] = got
    return found
