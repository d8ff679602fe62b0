"""The backend-neutral description of a run's job (TorchX's AppDef, for detection training).

Framework adapters say what every replica gets (`frameworks.base.Plan`); `jobspec.build_job_spec`
adds what every job has (resources, NCCL, storage, scheduling); backends turn a `JobSpec` into
their own request: Kubernetes manifests, or a process on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detk8s.config.schema import API_KUBEFLOW_V1, RunPolicy, SecretRef
from detk8s.names import config_map_name
from detk8s.paths import IMAGE_GID, IMAGE_UID


@dataclass(frozen=True)
class DataVolume:
    """Where the dataset appears in the pod: a PVC, or an emptyDir that `detk8s exec` fills."""

    mount_path: str
    claim: str | None = None
    sub_path: str | None = None


@dataclass(frozen=True)
class GangScheduling:
    """runPolicy.schedulingPolicy for a gang scheduler (Volcano), and the pods' schedulerName."""

    scheduler: str
    min_available: int
    queue: str | None = None
    priority_class: str | None = None
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class JobSpec:
    run: str
    name: str
    namespace: str | None  # None: the one the job is applied in (kubectl's context's)
    framework: str
    kind: str  # the Kubeflow v1 kind whose launcher conventions the trainer follows
    image: str | None  # None: not run from an image (the local backend)
    command: list[str]  # `detk8s exec`, which builds each replica's train command in the pod
    env: dict[str, str]
    secret_env: dict[str, SecretRef]
    files: dict[str, str]  # file name -> content, at Layout.config_dir
    gpus: int  # per node; also the processes per node
    nodes: int
    cpu: str
    memory: str
    shm_size: str
    data: DataVolume
    restart_policy: str
    run_policy: RunPolicy
    termination_grace_seconds: int
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    priority_class: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # on the job and every pod
    annotations: dict[str, str] = field(default_factory=dict)  # likewise
    pod_annotations: dict[str, str] = field(default_factory=dict)  # on the pods only
    queue: str | None = None  # Kueue: created suspended, labelled with the queue
    gang: GangScheduling | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    affinity: dict[str, Any] | None = None
    run_as_user: int = IMAGE_UID
    run_as_group: int = IMAGE_GID
    service_account: str | None = None  # its token is mounted only when one is named
    api: str = API_KUBEFLOW_V1  # the job API: a Kubeflow v1 job of `kind`, or a TrainJob

    @property
    def config_map(self) -> str:
        return config_map_name(self.run)
