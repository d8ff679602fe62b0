"""The linear scaling rule: the learning rate grows with the total batch (Goyal et al., 2017).

A run is compared with the base it inherits: lr / total batch must stay the same.
"""

from __future__ import annotations

import math
from pathlib import Path

from detk8s.config.layered import Layered
from detk8s.config.schema import RunConfig
from detk8s.errors import ConfigError


def check_linear_scaling(run: RunConfig, merged: Layered, bases: Layered) -> ConfigError | None:
    """A problem naming the expected lr, or None when the rule holds or there is no base lr."""
    base = bases.data
    if not isinstance(base.get("lr"), (int, float)) or not isinstance(base.get("batch_size"), int):
        return None
    base_total = base["batch_size"] * int(base.get("gpus", 1)) * int(base.get("nodes", 1))
    if base_total <= 0:
        return None
    expected = base["lr"] * run.total_batch / base_total
    if math.isclose(run.lr, expected, rel_tol=1e-6):
        return None
    base_file = bases.origin_of(("lr",), Path("?"))
    return ConfigError(
        merged.origin_of(("lr",), Path("?")),
        "lr",
        f"{run.lr:g} breaks the linear scaling rule: expected {expected:g} for total batch "
        f"{run.total_batch} ({run.batch_size}/GPU x {_n(run.gpus, 'GPU')} x "
        f"{_n(run.nodes, 'node')}), as "
        f"{base_file.name} has lr {base['lr']:g} for total batch {base_total}",
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
