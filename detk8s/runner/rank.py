"""Which replica this process is. Only rank 0 evaluates and uploads results."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Set in the pod from the operator's labels through the downward API (k8s_templates/_pod.yaml.j2).
REPLICA_TYPE = "DETK8S_REPLICA_TYPE"
REPLICA_INDEX = "DETK8S_REPLICA_INDEX"
RANK0_REPLICA = "DETK8S_RANK0_REPLICA"


def is_rank0(env: Mapping[str, str] | None = None) -> bool:
    """True for worker-0 of a PaddleJob, master-0 of a PyTorchJob, and any local process."""
    env = os.environ if env is None else env
    if REPLICA_TYPE not in env:
        return True
    return env[REPLICA_TYPE] == env.get(RANK0_REPLICA, "") and env.get(REPLICA_INDEX) == "0"
