"""Facts of the job APIs detk8s submits to, in one place: the Kubeflow Training Operator (v1,
release-1.9: PaddleJob, PyTorchJob) and Kubeflow Trainer v2 (v2.3: TrainJob, run by JobSet)."""

from __future__ import annotations

from dataclasses import dataclass

from detk8s.labels import (
    JOB_COMPLETION_INDEX,
    JOBSET_NAME,
    JOBSET_REPLICATED_JOB,
    JOBSET_RESTART_ATTEMPT,
    OP_JOB_NAME,
    OP_REPLICA_INDEX,
    OP_REPLICA_TYPE,
)

API_GROUP = "kubeflow.org"
API_VERSION = "v1"
GPU_RESOURCE = "nvidia.com/gpu"
# Kueue's Workload objects: one per queued job, owned by it, saying why it waits.
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta1"
# Kubeflow Trainer v2.
TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
RUNTIME_PLURAL = "clustertrainingruntimes"
RUNTIME_KIND = "ClusterTrainingRuntime"
# The trainer job of a runtime and its container: TrainJob overrides (image, command, env,
# resources) go to this container of the replicated job labelled as the trainer step.
TRAINER_NODE = "node"
TRAINJOB = "TrainJob"


@dataclass(frozen=True)
class JobKind:
    kind: str
    plural: str
    template: str
    container: str  # the operator finds the training container by this name
    port_name: str
    port: int
    rank0_replica: str  # replica type (lowercase, as in pod labels) whose index 0 is rank 0
    group: str = API_GROUP
    version: str = API_VERSION
    # The labels its pods carry: which job, which replica type, which index.
    job_label: str = OP_JOB_NAME
    type_label: str = OP_REPLICA_TYPE
    index_label: str = OP_REPLICA_INDEX
    # The Job controller's completion index is certain only as an annotation (a label too,
    # from Kubernetes 1.28): pods read their index through the downward API from there.
    index_from_annotation: bool = False
    # Pods of a JobSet restart attempt carry it; only the newest attempt's pods are the job's.
    attempt_label: str | None = None
    # Where the job says it is suspended (Kueue), as a path under spec.
    suspend_path: tuple[str, ...] = ("runPolicy", "suspend")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def type_field(self) -> str:
        """The downward-API field path of the pod's replica type."""
        return f"metadata.labels['{self.type_label}']"

    @property
    def index_field(self) -> str:
        where = "annotations" if self.index_from_annotation else "labels"
        return f"metadata.{where}['{self.index_label}']"


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
    TRAINJOB: JobKind(
        kind=TRAINJOB,
        plural="trainjobs",
        template="trainjob.yaml.j2",
        container=TRAINER_NODE,
        port_name="",  # the runtime's
        port=0,
        rank0_replica=TRAINER_NODE,  # node-0: completion index 0 of the trainer job
        group=TRAINER_GROUP,
        version=TRAINER_VERSION,
        job_label=JOBSET_NAME,  # the JobSet is named after the TrainJob
        type_label=JOBSET_REPLICATED_JOB,
        index_label=JOB_COMPLETION_INDEX,
        index_from_annotation=True,
        attempt_label=JOBSET_RESTART_ATTEMPT,
        suspend_path=("suspend",),
    ),
}


@dataclass(frozen=True)
class TrainerRuntime:
    """A ClusterTrainingRuntime detk8s ships: how the pods of a launcher kind (the adapters'
    PaddleJob / PyTorchJob conventions) run under Kubeflow Trainer v2. Its name carries a hash of
    what it renders to, so a TrainJob names the exact runtime it was rendered for."""

    family: str  # the name's middle and the trainer.kubeflow.org/framework label
    torch: bool  # upstream's torch policy (PET_* env for torchrun), else a plain policy
    port_name: str = ""
    port: int = 0  # a port the runtime opens on the node container (the torch policy adds its own)


RUNTIMES: dict[str, TrainerRuntime] = {
    # No Paddle runtime upstream: a plain policy, whose pods compute paddle.distributed.launch's
    # --master/--nnodes/--rank from what JobSet gives them (see the template).
    "PaddleJob": TrainerRuntime("paddle", torch=False, port_name="master", port=36543),
    # Upstream's torch-distributed, plus what it lacks and a TrainJob cannot patch in: no
    # service-account token in the pods (automountServiceAccountToken is not patchable).
    "PyTorchJob": TrainerRuntime("torch", torch=True),
}
