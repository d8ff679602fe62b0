"""The run config contract: what a YAML file under configs/runs/ may say, and its defaults.

Field defaults here are detk8s's own; a project changes them for all its runs in the `defaults:`
section of detk8s.yaml, and a run (or a base it inherits) changes them for itself.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from detk8s import podenv
from detk8s.credentials import credential_kind, credential_setting, url_has_credentials
from detk8s.datasets.source import DataSource, parse_source
from detk8s.kube_values import (
    DnsLabel,
    DnsSubdomain,
    ImageReference,
    ImageRepository,
    LabelKey,
    LabelValue,
    Quantity,
    SecretKey,
)
from detk8s.labels import MANAGED_BY_LABEL, RESERVED_PREFIXES
from detk8s.names import RUN_NAME, RUN_NAME_RULE, job_name
from detk8s.paths import AFFINITY_SCHEMA, IMAGE_GID, IMAGE_UID, data_path
from detk8s.weights import parse_weights_source

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, Field(pattern=ENV_NAME, max_length=256)]


def _env_text(v: Any) -> Any:
    """A number or boolean as Kubernetes env takes it: a string (`OMP_NUM_THREADS: 4`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, (int, float)) else v


EnvValue = Annotated[str, BeforeValidator(_env_text), Field(max_length=32768)]
INT32_MAX = 2**31 - 1  # Kubernetes' int32 fields (backoffLimit, ...)


def _no_url_credentials(v: str | None) -> str | None:
    if v is not None and url_has_credentials(v):
        raise ValueError("has credentials in the URL: keep them in a Secret")
    return v


PlainUrl = Annotated[str, AfterValidator(_no_url_credentials)]


def _no_credentials(settings: dict[str, str], why: str) -> dict[str, str]:
    for name, value in settings.items():
        kind = credential_setting(name, value)
        if kind:
            raise ValueError(f"{name} looks like a credential ({kind}): {why}")
    return settings


def _relative_inside(v: str) -> str:
    """A path that stays under the directory it is relative to."""
    parts = PurePosixPath(v).parts
    if not v or PurePosixPath(v).is_absolute() or ".." in parts:
        raise ValueError(f"{v!r} must be a relative path inside its directory (no '..')")
    return v


InsidePath = Annotated[str, AfterValidator(_relative_inside)]


# Square, in pixels; a framework may require a multiple of its stride (FrameworkAdapter).
InputSize = Annotated[int, Field(ge=32, le=4096)]


# The job APIs a run can be submitted as.
API_KUBEFLOW_V1: Literal["kubeflow-v1"] = "kubeflow-v1"
API_TRAINER_V2: Literal["trainer-v2"] = "trainer-v2"
JobApi = Literal["kubeflow-v1", "trainer-v2"]


class Strict(BaseModel):
    """A config section: unknown keys are errors, and values are taken as YAML typed them, as
    Kubernetes takes a manifest's (`gpus: "2"` is text, not a number; `nodes: true` no count)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Nccl(Strict):
    """NCCL settings, rendered as NCCL_* env; the usual fixes for multi-GPU hangs."""

    debug: Literal["VERSION", "WARN", "INFO", "TRACE"] = Field(
        "WARN", description="NCCL_DEBUG: how much NCCL logs."
    )
    ib_disable: bool = Field(True, description="NCCL_IB_DISABLE: no InfiniBand (pod networks).")
    p2p_disable: bool = Field(False, description="NCCL_P2P_DISABLE: no GPU peer-to-peer copies.")
    socket_ifname: str | None = Field(
        "eth0", description="NCCL_SOCKET_IFNAME: the pod's interface (null: NCCL picks)."
    )


class Resources(Strict):
    """Requests for each replica (pod); GPUs come from `gpus`."""

    cpu: Quantity = Field("8", description="CPU request (a Kubernetes quantity: 8, 7500m).")
    memory: Quantity = Field(
        "32Gi", description="Memory request and limit (a Kubernetes quantity: 32Gi)."
    )


class RunPolicy(Strict):
    """The job's runPolicy (Kubeflow Training Operator)."""

    backoff_limit: Annotated[int, Field(ge=0, le=1000)] = Field(
        3, description="Restarts of failed pods before the job fails."
    )
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=INT32_MAX)] | None = Field(
        7 * 24 * 3600, description="Delete the finished job after this long (null: keep it)."
    )
    active_deadline_seconds: Annotated[int, Field(gt=0, le=10 * 365 * 86400)] | None = Field(
        None, description="Fail the job after running this long."
    )
    clean_pod_policy: Literal["None", "Running", "All"] = Field(
        "Running", description="Which pods to delete when the job ends."
    )


class Toleration(Strict):
    """A Kubernetes toleration of the pods."""

    key: LabelKey | None = Field(None, description="The taint's key (none: every taint).")
    operator: Literal["Exists", "Equal"] = Field("Exists", description="How value is matched.")
    value: LabelValue | None = Field(None, description="The taint's value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="The taint effect tolerated (none: all)."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, alias="tolerationSeconds",
        description="How long a NoExecute taint is tolerated before eviction.",
    )  # fmt: skip

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    @model_validator(mode="after")
    def _as_kubernetes_takes_it(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value: remove it, or use operator Equal")
        if self.operator == "Equal" and not self.key:
            raise ValueError("operator Equal needs a key (an empty key with Exists matches all)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds is for effect NoExecute")
        return self


class SecretRef(Strict):
    """A key of a Kubernetes Secret in the job's namespace."""

    secret: DnsSubdomain = Field(description="The Secret's name.")
    key: SecretKey = Field(description="The key in the Secret.")


class Scheduling(Strict):
    """Gang scheduling with Volcano: every replica is placed, or none (runPolicy.schedulingPolicy
    and schedulerName on the pods; the operator creates the PodGroup)."""

    scheduler: Literal["volcano"] = Field("volcano", description="The gang scheduler.")
    queue: DnsLabel | None = Field(None, description="The Volcano queue.")
    min_available: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Replicas that must fit together; default: all of them."
    )
    priority_class: DnsSubdomain | None = Field(None, description="The PodGroup's priority.")
    timeout_seconds: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(
        None, description="How long the PodGroup may wait to be scheduled."
    )


def _not_reserved(v: dict[str, Any]) -> dict[str, Any]:
    for key in v:
        if key == MANAGED_BY_LABEL or key.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{key} is set by detk8s, the operator or the scheduler")
    return v


def _affinity(v: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Kubernetes affinity block, checked against Kubernetes' own schema."""
    if v is None:
        return v
    import jsonschema  # only runs that set affinity pay for it

    schema = json.loads(data_path(AFFINITY_SCHEMA).read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(v))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        raise ValueError(f"{where + ': ' if where else ''}{error.message}")
    return v


class RunConfig(Strict):
    """One training run: what to train, on what, with how many GPUs. Keys every framework shares;
    a framework's own keys live in a section named after it (`paddledet:`), which the framework
    registry validates (detk8s.frameworks)."""

    name: Annotated[str, Field(description="The run's name: its file name without .yml.")]
    framework: str = Field(description="The trainer: a framework adapter's name.")
    model: str = Field(description="Model name shown in tables, e.g. picodet_s_320.")
    pretrain_weights: str | None = Field(
        None,
        description="Backbone weights: an http(s) URL, an s3:// URI (fetched by `detk8s exec` "
        "before training), an absolute path in the image, or a path relative to the dataset.",
    )
    dataset: str = Field(description="A dataset defined in configs/datasets/<name>.yml.")
    gpus: Annotated[int, Field(ge=1, le=64)] = Field(description="GPUs per node.")
    nodes: Annotated[int, Field(ge=1, le=1024)] = Field(
        1, description="Nodes (pods), each with `gpus` GPUs."
    )
    batch_size: Annotated[int, Field(ge=1, le=65536)] = Field(description="Batch size per GPU.")
    lr: Annotated[float, Field(gt=0, le=100, description="Base learning rate.")]
    epochs: Annotated[int, Field(ge=1, le=100_000)] = Field(description="Epochs to train.")
    image: ImageReference = Field(
        description="Training image; `auto` means the project's image of the framework's family."
    )
    input_size: InputSize | None = Field(
        None, description="Eval and export input size (square); default: the model's."
    )
    eval: bool = Field(
        True,
        description="Evaluate on the val list while training and keep the best weights; the "
        "result is the best weights' mAP.",
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        description="Arguments for the trainer's own command line, placed where it takes them.",
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="Plain env for the training container."
    )
    secret_env: dict[EnvName, SecretRef] = Field(
        default_factory=dict, description="Env from Kubernetes Secrets: NAME: {secret, key}."
    )
    resources: Resources = Field(Resources(), description="CPU and memory per replica.")
    shm_size: Quantity = Field("16Gi", description="/dev/shm size (a Memory emptyDir).")
    nccl: Nccl = Field(Nccl(), description="NCCL settings, rendered as NCCL_* env.")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Node labels the pods must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the pods tolerate (GPU nodes often have one)."
    )
    priority_class: DnsSubdomain | None = Field(None, description="The pods' PriorityClass.")
    run_as_user: Annotated[int, Field(ge=1, le=INT32_MAX)] = Field(
        IMAGE_UID, description="The UID the containers run as (never 0); the image's by default."
    )
    run_as_group: Annotated[int, Field(ge=1, le=INT32_MAX)] = Field(
        IMAGE_GID, description="Their GID, also the owner group of their volumes (fsGroup)."
    )
    service_account: DnsSubdomain | None = Field(
        None,
        description="Run the pods as this service account, with its token mounted; default: "
        "none mounted (the trainers need no API access).",
    )
    namespace: DnsLabel | None = Field(
        None, description="The run's namespace; default: the project's, then the context's."
    )
    labels: Annotated[dict[LabelKey, LabelValue], AfterValidator(_not_reserved)] = Field(
        default_factory=dict, description="Added to the job and to every pod."
    )
    annotations: Annotated[dict[LabelKey, str], AfterValidator(_not_reserved)] = Field(
        default_factory=dict, description="Added to the job and to every pod."
    )
    api: JobApi = Field(
        API_KUBEFLOW_V1,
        description="The job API: kubeflow-v1 (PaddleJob / PyTorchJob, the Training Operator) or "
        "trainer-v2 (a TrainJob of Kubeflow Trainer, under detk8s's runtimes); default: the "
        "project's `api`.",
    )
    queue: DnsLabel | None = Field(
        None,
        description="Kueue LocalQueue: the job is created suspended, with the queue-name label, "
        "and Kueue admits it.",
    )
    scheduling: Scheduling | None = Field(None, description="Gang scheduling (Volcano).")
    image_pull_secrets: list[DnsSubdomain] = Field(
        default_factory=list, description="Secrets to pull the image with."
    )
    affinity: Annotated[dict[str, Any] | None, AfterValidator(_affinity)] = Field(
        None, description="A Kubernetes affinity block for every pod (node and pod affinity)."
    )
    sidecars: bool = Field(
        False,
        description="Let a service mesh inject its sidecar (sidecar.istio.io/inject); off by "
        "default: a sidecar keeps a finished training pod running.",
    )
    restart_policy: Literal["OnFailure", "Never", "ExitCode", "Always"] = Field(
        "OnFailure", description="The replicas' restart policy (the operator's)."
    )
    termination_grace_seconds: Annotated[int, Field(ge=1, le=86400)] = Field(
        120, description="SIGTERM to SIGKILL: time to stop training and store the checkpoint."
    )
    run_policy: RunPolicy = Field(
        RunPolicy(), description="Backoff, cleanup and deadline of the job (its runPolicy)."
    )

    # Extra keys are kept for the framework registry: the framework's section, or mistakes it
    # reports (unknown keys, keys that moved into a section).
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=(), strict=True)

    @field_validator("name")
    @classmethod
    def _k8s_name(cls, v: str) -> str:
        if not RUN_NAME.match(v):
            raise ValueError(f"{v!r} cannot become a Kubernetes object name: {RUN_NAME_RULE}")
        return v

    @field_validator("pretrain_weights")
    @classmethod
    def _weights_source(cls, v: str | None) -> str | None:
        if v is not None:
            parse_weights_source(v)  # ValueError names what is wrong
        return v

    @field_validator("env")
    @classmethod
    def _no_plain_secrets(cls, v: dict[str, str]) -> dict[str, str]:
        return _no_credentials(v, "plain env ends up in the manifest; set it in secret_env instead")

    @field_validator("extra_args")
    @classmethod
    def _no_secret_args(cls, v: list[str]) -> list[str]:
        for i, arg in enumerate(v):
            kind = credential_kind(arg)
            if kind:
                raise ValueError(f"argument {i + 1} looks like a credential ({kind}): pass it "
                                 "through secret_env")  # fmt: skip
        return v

    @field_validator("env", "secret_env")
    @classmethod
    def _not_owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            owner = podenv.owner_of(name)
            if owner:
                raise ValueError(f"{name} is set by {owner} in every pod: the run's value would "
                                 "be replaced, or break it")  # fmt: skip
        return v

    @model_validator(mode="after")
    def _fits_trainer_v2(self) -> RunConfig:
        """A TrainJob sets the pod through runtimePatches, which cannot set these."""
        if self.api != API_TRAINER_V2:
            return self
        if self.priority_class:
            raise ValueError(
                "priority_class: a TrainJob cannot set it (its runtimePatches have no "
                "priorityClassName): use api: kubeflow-v1, or Kueue's queue"
            )
        if self.scheduling:
            raise ValueError("scheduling: on trainer-v2 gang scheduling is the runtime's "
                             "podGroupPolicy, not a run's: use api: kubeflow-v1")  # fmt: skip
        per_runtime = {"backoff_limit", "ttl_seconds_after_finished", "clean_pod_policy"}
        changed = sorted(k for k in per_runtime
                         if getattr(self.run_policy, k) != getattr(RunPolicy(), k))  # fmt: skip
        if changed or self.restart_policy != RunConfig.model_fields["restart_policy"].default:
            key = f"run_policy.{changed[0]}" if changed else "restart_policy"
            raise ValueError(f"{key}: on trainer-v2 restarts and cleanup are the runtime's "
                             "(a TrainJob sets only active_deadline_seconds): use api: "
                             "kubeflow-v1")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _one_queueing_layer(self) -> RunConfig:
        if self.queue and self.scheduling:
            raise ValueError("queue (Kueue) and scheduling (Volcano) are two queueing layers: "
                             "use one")  # fmt: skip
        if self.scheduling and (self.scheduling.min_available or 0) > self.nodes:
            raise ValueError(f"scheduling.min_available {self.scheduling.min_available} is more "
                             f"than the job's {self.nodes} replica(s)")  # fmt: skip
        return self

    @property
    def total_batch(self) -> int:
        return self.batch_size * self.gpus * self.nodes

    @property
    def job_name(self) -> str:
        return job_name(self.name)

    @property
    def sections(self) -> dict[str, Any]:
        """Keys beyond the common ones: the framework's section (and mistakes)."""
        return dict(self.model_extra or {})


class DatasetConfig(Strict):
    """A dataset in Pascal VOC layout, and optionally a deterministic subset of its train list."""

    name: str
    format: Literal["voc"] = "voc"
    num_classes: Annotated[int, Field(ge=1, le=100_000)]
    source: PlainUrl = Field(
        description="Where it lives: s3://bucket/path/, pvc://claim/sub/path or file:///path."
    )
    train_list: InsidePath = "train.txt"
    val_list: InsidePath = "val.txt"
    label_list: InsidePath = "label_list.txt"
    train_images: Annotated[int, Field(ge=1, le=10**9)] | None = Field(
        None, description="Lines in the full train list."
    )
    val_images: Annotated[int, Field(ge=1, le=10**9)] | None = None
    train_fraction: str | None = Field(
        None, description="Train on the first ceil(N x fraction) lines of train_list, e.g. 1/3."
    )

    @field_validator("source")
    @classmethod
    def _scheme(cls, v: str) -> str:
        parse_source(v)  # ValueError names what is wrong
        return v

    @property
    def location(self) -> DataSource:
        return parse_source(self.source)

    @field_validator("train_fraction")
    @classmethod
    def _fraction(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            f = Fraction(v)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{v!r} is not a fraction like 1/3") from None
        if not 0 < f <= 1:
            raise ValueError(f"{v} must be in (0, 1]")
        return v

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.train_fraction) if self.train_fraction else Fraction(1)

    def subset_lines(self, total: int) -> int:
        """How many leading lines of a train list of `total` lines this dataset trains on."""
        f = self.fraction
        return -(-total * f.numerator // f.denominator)  # ceil without floats

    @property
    def train_size(self) -> int | None:
        return self.subset_lines(self.train_images) if self.train_images else None


class StorageSettings(Strict):
    """Where runs keep results. Credentials never appear here: they come from the environment
    locally and from a Kubernetes Secret in the pod."""

    uri: PlainUrl = Field("file://output", description="s3://bucket/prefix or file:///path")
    endpoint_url: PlainUrl | None = Field(
        None, description="For MinIO, Ceph RGW and other S3 servers."
    )
    region: str | None = None
    secret: DnsSubdomain | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, for pods."
    )


class ImageConfig(Strict):
    """One image `detk8s build` builds and `image: auto` names, tagged by the hash of its inputs.
    In detk8s.yaml a plain string is the repository alone, with every other field defaulted."""

    repository: ImageRepository = Field(description="Where it is pushed, without a tag.")
    target: str | None = Field(
        None, description="The Dockerfile stage to build: paddle or pytorch for detk8s's own."
    )
    dockerfile: str | None = Field(
        None,
        description="Your own Dockerfile, relative to `context`; default: detk8s's, built from "
        "a context detk8s assembles (itself as a wheel, the project's model configs).",
    )
    context: InsidePath | None = Field(
        None, description="With your own Dockerfile: the build context, relative to the project."
    )
    build_args: dict[str, str] = Field(default_factory=dict, description="--build-arg K=V.")
    registry_secret: DnsSubdomain | None = Field(
        None,
        description="kubernetes.io/dockerconfigjson Secret that lets an in-cluster (kaniko) "
        "build push to the repository.",
    )

    @model_validator(mode="before")
    @classmethod
    def _repository_only(cls, v: Any) -> Any:
        return {"repository": v} if isinstance(v, str) else v

    @field_validator("build_args")
    @classmethod
    def _no_secret_build_args(cls, v: dict[str, str]) -> dict[str, str]:
        why = "build args stay in the image's history; give the build secrets another way"
        return _no_credentials(v, why)

    @model_validator(mode="after")
    def _context_needs_dockerfile(self) -> ImageConfig:
        if self.context is not None and self.dockerfile is None:
            raise ValueError("context is for your own Dockerfile: set dockerfile too")
        return self


class ProjectConfig(Strict):
    """detk8s.yaml: where the configs are, the cluster, the images, and defaults for every run."""

    runs_dir: InsidePath = "configs/runs"
    datasets_dir: InsidePath = "configs/datasets"
    namespace: DnsLabel | None = Field(None, description="Default: the kubeconfig context's.")
    context: str | None = Field(None, description="kubeconfig context; default: the current.")
    api: JobApi | None = Field(
        None, description="Every run's job API unless it says: kubeflow-v1 (the default) or "
        "trainer-v2.",
    )  # fmt: skip
    images: dict[str, ImageConfig] = Field(
        default_factory=dict,
        description="Images by name; `image: auto` uses the one named after the framework's "
        "family (paddle, pytorch).",
    )
    storage: StorageSettings = StorageSettings()
    backend: Literal["kubernetes", "local"] = Field(
        "kubernetes", description="Where submit runs jobs unless --backend says otherwise."
    )
    local_dir: str = Field("output", description="The local backend's work dir (runs, data).")
    local_python: dict[str, str] = Field(
        default_factory=dict,
        description="For the local backend, the Python interpreter of each image family (paddle, "
        "pytorch) with its trainer and detk8s installed, relative to this file; default: the "
        "one running detk8s.",
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Run config keys applied beneath every run."
    )
