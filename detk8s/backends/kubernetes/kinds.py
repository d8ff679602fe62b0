"""Facts of the Kubeflow Training Operator (v1, release-1.9) per job kind, in one place."""

from __future__ import annotations

from dataclasses import dataclass

API_GROUP = "kubeflow.org"
API_VERSION = "v1"
GPU_RESOURCE = "nvidia.com/gpu"
# Kueue's Workload objects: one per queued job, owned by it, saying why it waits.
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta1"


@dataclass(frozen=True)
class JobKind:
    kind: str
    plural: str
    template: str
    container: str  # the operator finds the training container by this name
    port_name: str
    port: int
    rank0_replica: str  # replica type (lowercase, as in pod labels) whose index 0 is rank 0


KINDS: dict[str, JobKind] = {
    "PaddleJob": JobKind(
        kind="PaddleJob",
        plural="paddlejobs",
        template="paddlejob.yaml.j2",
        container="paddle",
        port_name="master",
        port=36543,
        rank0_replica="worker",  # collective mode has no Master
    ),
    "PyTorchJob": JobKind(
        kind="PyTorchJob",
        plural="pytorchjobs",
        template="pytorchjob.yaml.j2",
        container="pytorch",
        port_name="pytorchjob-port",
        port=23456,
        rank0_replica="master",
    ),
}
