"""Run config + framework adapter + project settings -> the backend-neutral JobSpec."""

from __future__ import annotations

import json

from detk8s import podenv
from detk8s.config.schema import ProjectConfig, RunConfig, SecretRef
from detk8s.errors import ConfigError
from detk8s.frameworks import get_adapter
from detk8s.labels import (
    FRAMEWORK_LABEL,
    ISTIO_INJECT_ANNOTATION,
    MANAGED_BY_LABEL,
    RUN_LABEL,
)
from detk8s.layout import POD, POD_HOME, RUN_FILE, Layout
from detk8s.project import LoadedRun
from detk8s.spec import DataVolume, GangScheduling, JobSpec

AUTO_IMAGE = "auto"


def image_name(loaded: LoadedRun, project: ProjectConfig) -> str | None:
    """The `images:` key the run's image names: its framework's family for `auto`, a key, or
    a declared repository without a tag; None for an image named verbatim."""
    from detk8s.images.image import declared_image

    run = loaded.config
    if run.image == AUTO_IMAGE:
        return get_adapter(run.framework).family
    return declared_image(run.image, project)


def resolve_image(loaded: LoadedRun, project: ProjectConfig) -> str:
    """`auto`, an `images:` key or a declared repository without a tag: that image tagged by
    the hash of its current inputs (what `detk8s build` builds). Anything else verbatim."""
    from detk8s.images.context import ContextError
    from detk8s.images.image import image_build

    name = image_name(loaded, project)
    if name is None:
        return loaded.config.image
    config = project.images.get(name)
    if config is None:
        raise ConfigError(loaded.file, "image", f"is 'auto' but detk8s.yaml has no images.{name}")
    root = loaded.project_root
    key = (name, str(root), config.model_dump_json())
    if key not in _IMAGE_REFS:  # one hash of the build context per image and process
        try:
            _IMAGE_REFS[key] = image_build(name, config, root).ref
        except ContextError as e:
            raise ConfigError(loaded.file, "image", f"cannot tag images.{name}: {e}") from None
    return _IMAGE_REFS[key]


_IMAGE_REFS: dict[tuple[str, str, str], str] = {}


def nccl_env(loaded: LoadedRun) -> dict[str, str]:
    nccl = loaded.config.nccl
    env = {
        "NCCL_DEBUG": nccl.debug,
        "NCCL_IB_DISABLE": str(int(nccl.ib_disable)),
        "NCCL_P2P_DISABLE": str(int(nccl.p2p_disable)),
    }
    if nccl.socket_ifname:
        env["NCCL_SOCKET_IFNAME"] = nccl.socket_ifname
    return env


def storage_env(
    project: ProjectConfig, storage_uri: str
) -> tuple[dict[str, str], dict[str, SecretRef]]:
    storage = project.storage
    env = {podenv.STORAGE: storage_uri}
    if storage.endpoint_url:
        env[podenv.AWS_ENDPOINT_URL] = storage.endpoint_url
    if storage.region:
        env[podenv.AWS_DEFAULT_REGION] = storage.region
    secrets = {}
    if storage.secret:
        secrets = {k: SecretRef(secret=storage.secret, key=k) for k in podenv.AWS_SECRET_KEYS}
    return env, secrets


def run_file(loaded: LoadedRun, layout: Layout) -> str:
    """The resolved run, its dataset and the layout: all `detk8s exec` needs where there is no
    project checkout (the pod), and the same file on this machine."""
    resolved = {
        "run": loaded.config.model_dump(mode="json", exclude_none=True),
        "dataset": loaded.dataset.model_dump(mode="json", exclude_none=True),
        "layout": layout.to_dict(),
    }
    # Compact JSON: only detk8s reads it, and a sweep writes many (YAML, or JSON with an indent,
    # is 20x slower to write).
    return json.dumps(resolved, ensure_ascii=False, separators=(",", ":")) + "\n"


def exec_command(run: str, layout: Layout) -> list[str]:
    """`detk8s exec` prepares data, builds this replica's train command, trains, uploads
    checkpoints and results."""
    return [*layout.detk8s, "exec", run, "--run-file", layout.run_file]


def data_volume(loaded: LoadedRun, layout: Layout) -> DataVolume:
    location = loaded.dataset.location
    return DataVolume(
        layout.dataset_dir(loaded.dataset), claim=location.claim, sub_path=location.sub_path
    )


def gang_scheduling(run: RunConfig) -> GangScheduling | None:
    s = run.scheduling
    if s is None:
        return None
    return GangScheduling(
        scheduler=s.scheduler,
        min_available=s.min_available or run.nodes,  # all replicas: the gang
        queue=s.queue,
        priority_class=s.priority_class or run.priority_class,
        timeout_seconds=s.timeout_seconds,
    )


def job_namespace(run: RunConfig, project: ProjectConfig) -> str | None:
    """The run's, else the project's; None: the kubeconfig context's."""
    return run.namespace or project.namespace


def build_job_spec(
    loaded: LoadedRun,
    project: ProjectConfig,
    layout: Layout = POD,
    image: str | None = None,
    storage_uri: str | None = None,
) -> JobSpec:
    """The job of a run: for a pod (POD layout, its image) or for this machine (a local layout,
    no image, the storage URI resolved against the project)."""
    run = loaded.config
    plan = get_adapter(run.framework).plan(loaded.run, layout)
    store_env, store_secrets = storage_env(project, storage_uri or project.storage.uri)
    image_env = {podenv.IMAGE: image} if image else {}
    home = {"HOME": POD_HOME} if layout == POD else {}  # the pod's root filesystem is read-only
    # Later wins: the run's own env overrides what detk8s and the adapter chose.
    env = {**home, **nccl_env(loaded), **plan.env, **store_env, **image_env, **run.env}
    labels = {RUN_LABEL: run.name, FRAMEWORK_LABEL: run.framework, MANAGED_BY_LABEL: "detk8s"}
    return JobSpec(
        run=run.name,
        name=run.job_name,
        namespace=job_namespace(run, project),
        framework=run.framework,
        kind=plan.job_kind,
        image=image,
        command=exec_command(run.name, layout),
        env=env,
        secret_env={**store_secrets, **run.secret_env},
        files={**plan.files, RUN_FILE: run_file(loaded, layout)},
        gpus=run.gpus,
        nodes=run.nodes,
        cpu=run.resources.cpu,
        memory=run.resources.memory,
        shm_size=run.shm_size,
        data=data_volume(loaded, layout),
        restart_policy=run.restart_policy,
        termination_grace_seconds=run.termination_grace_seconds,
        run_policy=run.run_policy,
        node_selector=dict(run.node_selector),
        tolerations=[t.model_dump(exclude_none=True, by_alias=True) for t in run.tolerations],
        priority_class=run.priority_class,
        labels={**run.labels, **labels},
        annotations=dict(run.annotations),
        pod_annotations={} if run.sidecars else {ISTIO_INJECT_ANNOTATION: "false"},
        queue=run.queue,
        gang=gang_scheduling(run),
        image_pull_secrets=list(run.image_pull_secrets),
        affinity=run.affinity,
        run_as_user=run.run_as_user,
        run_as_group=run.run_as_group,
        service_account=run.service_account,
        api=run.api,
    )


def pod_job_spec(loaded: LoadedRun, project: ProjectConfig) -> JobSpec:
    """The job as the cluster runs it: pod paths and the run's image."""
    check_reachable_from_pods(loaded, project)
    return build_job_spec(loaded, project, POD, resolve_image(loaded, project))


def check_reachable_from_pods(loaded: LoadedRun, project: ProjectConfig) -> None:
    """A file:// dataset or storage is this machine's disk, which a pod does not have."""
    hint = "a pod cannot reach this machine's disk: use s3:// or pvc://, or the local backend"
    if loaded.dataset.location.kind == "file":
        raise ConfigError(loaded.dataset_file or loaded.file, "source", f"file://: {hint}")
    if project.storage.uri.startswith("file://") or "://" not in project.storage.uri:
        file = loaded.project_file or loaded.project_root
        raise ConfigError(
            file, "storage.uri", f"{project.storage.uri}: {hint.replace(' or pvc://', '')}"
        )
