"""The backend-neutral description of a run's job (TorchX's AppDef, for detection training).

Framework adapters say how to launch one replica (`Launch`); `build_job_spec` adds what every job
has (resources, NCCL, storage, scheduling); backends turn a `JobSpec` into their own request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detk8s.config.schema import RunPolicy, SecretRef


@dataclass(frozen=True)
class Launch:
    """What a framework adapter says about one replica of a run."""

    job_kind: str  # the Kubeflow kind whose launcher conventions the command follows
    command: list[str]  # an argument list: no shell ever parses it
    env: dict[str, str]
    files: dict[str, str]  # file name -> content, mounted read-only at Layout.config_dir


@dataclass(frozen=True)
class DataVolume:
    """Where the dataset appears in the pod: a PVC, or an emptyDir that `detk8s exec` fills."""

    mount_path: str
    claim: str | None = None
    sub_path: str | None = None


@dataclass(frozen=True)
class JobSpec:
    run: str
    name: str
    namespace: str
    framework: str
    kind: str
    image: str
    command: list[str]
    env: dict[str, str]
    secret_env: dict[str, SecretRef]
    files: dict[str, str]
    gpus: int
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
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"
