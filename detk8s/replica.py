"""Which replica of its job a process is, and how it reaches the others: parsed once, in the pod,
from the env the Training Operator injects (see detk8s.podenv). Framework adapters build each
replica's train command from it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from detk8s import podenv

_GPU_DEVICE = re.compile(r"^nvidia\d+$")


@dataclass(frozen=True)
class Replica:
    node_rank: int = 0  # this node (pod) among nnodes; 0 holds the rendezvous
    nnodes: int = 1
    master_addr: str | None = None  # where node 0 listens, for multi-node rendezvous
    master_port: int | None = None
    job_id: str | None = None
    rank0: bool = True  # the replica that evaluates and stores results
    gpus: int = 0  # GPUs this container can use; 0 on a CPU-only machine
    name: str = "local"  # as the operator names the pod's replica: worker-0, master-0

    @property
    def distributed(self) -> bool:
        return self.nnodes > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> Replica:
        env = os.environ if env is None else env
        gpus = visible_gpus(dev)
        rank0 = is_rank0(env)
        name = "local"
        if podenv.REPLICA_TYPE in env:
            name = f"{env[podenv.REPLICA_TYPE]}-{env.get(podenv.REPLICA_INDEX, '0')}"
        if podenv.PADDLE_MASTER in env:  # a PaddleJob: node rank is the worker's index
            host, port = _host_port(env[podenv.PADDLE_MASTER])
            if rank0 and env.get(podenv.POD_IP):  # Trainer v2: paddle's master binds to it
                host = env[podenv.POD_IP]
            return cls(
                node_rank=int(env.get(podenv.REPLICA_INDEX, "0")),
                nnodes=int(env.get(podenv.PADDLE_NNODES, "1")),
                master_addr=host, master_port=port,
                job_id=env.get(podenv.PADDLE_JOB_ID), rank0=rank0, gpus=gpus, name=name,
            )  # fmt: skip
        if podenv.PET_NNODES in env or podenv.MASTER_ADDR in env:  # a PyTorchJob
            addr = env.get(podenv.PET_MASTER_ADDR) or env.get(podenv.MASTER_ADDR)
            master_port = env.get(podenv.PET_MASTER_PORT) or env.get(podenv.MASTER_PORT)
            return cls(
                node_rank=int(env.get(podenv.PET_NODE_RANK) or env.get(podenv.RANK) or 0),
                nnodes=int(env.get(podenv.PET_NNODES, "1")),
                master_addr=addr, master_port=int(master_port) if master_port else None,
                rank0=rank0, gpus=gpus, name=name,
            )  # fmt: skip
        return cls(rank0=rank0, gpus=gpus, name=name)


def is_rank0(env: Mapping[str, str]) -> bool:
    """True for worker-0 of a PaddleJob, master-0 of a PyTorchJob, and any local process; from
    the operator's labels, which the pod template passes in through the downward API."""
    if podenv.REPLICA_TYPE not in env:
        return True
    return (
        env[podenv.REPLICA_TYPE] == env.get(podenv.RANK0_REPLICA, "")
        and env.get(podenv.REPLICA_INDEX) == "0"
    )


def visible_gpus(dev: Path = Path("/dev")) -> int:
    """NVIDIA GPUs the container runtime gave this container (/dev/nvidiaN)."""
    try:
        return sum(1 for p in dev.iterdir() if _GPU_DEVICE.match(p.name))
    except OSError:
        return 0


def _host_port(value: str) -> tuple[str, int | None]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, None
    return host, int(port) if port.isdigit() else None
