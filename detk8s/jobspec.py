"""Run config + framework adapter + project settings -> the backend-neutral JobSpec."""

from __future__ import annotations

from detk8s.config.load import LoadedRun
from detk8s.config.schema import ProjectConfig, SecretRef
from detk8s.errors import ConfigError
from detk8s.frameworks import get_adapter
from detk8s.labels import FRAMEWORK_LABEL, MANAGED_BY_LABEL, RUN_LABEL
from detk8s.layout import POD, RUN_FILE, Layout
from detk8s.spec import DataVolume, JobSpec

AUTO_IMAGE = "auto"
# The keys of the project's storage Secret, named as boto3 reads them from the environment.
STORAGE_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def resolve_image(loaded: LoadedRun, project: ProjectConfig) -> str:
    """`auto`, an `images:` key or a declared repository without a tag: that image tagged by
    the hash of its current inputs (what `detk8s build` builds). Anything else verbatim."""
    from detk8s.build.context import ContextError
    from detk8s.build.images import declared_image, image_build

    run = loaded.config
    name = run.framework if run.image == AUTO_IMAGE else declared_image(run.image, project)
    if name is None:
        return run.image
    config = project.images.get(name)
    if config is None:
        raise ConfigError(
            loaded.file, "image", f"is 'auto' but detk8s.yaml has no images.{run.framework}"
        )
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


def storage_env(project: ProjectConfig) -> tuple[dict[str, str], dict[str, SecretRef]]:
    storage = project.storage
    env = {"DETK8S_STORAGE": storage.uri}
    if storage.endpoint_url:
        env["AWS_ENDPOINT_URL"] = storage.endpoint_url
    if storage.region:
        env["AWS_DEFAULT_REGION"] = storage.region
    secrets = {}
    if storage.secret:
        secrets = {k: SecretRef(secret=storage.secret, key=k) for k in STORAGE_SECRET_KEYS}
    return env, secrets


def run_file(loaded: LoadedRun) -> str:
    """The resolved run and dataset, for `detk8s exec` where there is no project checkout."""
    import yaml

    return yaml.dump(
        {
            "run": loaded.config.model_dump(mode="json", by_alias=True, exclude_none=True),
            "dataset": loaded.dataset.model_dump(mode="json", exclude_none=True),
        },
        Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
        sort_keys=False,
    )


def exec_command(run: str, layout: Layout, launch: list[str]) -> list[str]:
    """`detk8s exec` prepares data, runs `launch`, uploads checkpoints and results."""
    return ["detk8s", "exec", run, "--run-file", layout.run_file, "--", *launch]


def data_volume(loaded: LoadedRun) -> DataVolume:
    dataset = loaded.dataset
    mount = POD.dataset_dir(dataset)
    if dataset.source.startswith("pvc://"):
        claim, _, sub_path = dataset.source.removeprefix("pvc://").partition("/")
        return DataVolume(mount, claim=claim, sub_path=sub_path.strip("/") or None)
    return DataVolume(mount)


def build_job_spec(loaded: LoadedRun, project: ProjectConfig) -> JobSpec:
    run = loaded.config
    launch = get_adapter(run.framework).launch(run, loaded.dataset, POD)
    store_env, store_secrets = storage_env(project)
    # Later wins: the run's own env overrides what detk8s and the adapter chose.
    image = resolve_image(loaded, project)
    env = {**nccl_env(loaded), **launch.env, **store_env, "DETK8S_IMAGE": image, **run.env}
    files = {**launch.files, RUN_FILE: run_file(loaded)}
    return JobSpec(
        run=run.name,
        name=run.job_name,
        namespace=project.namespace or "default",
        framework=run.framework,
        kind=launch.job_kind,
        image=image,
        command=exec_command(run.name, POD, launch.command),
        env=env,
        secret_env={**store_secrets, **run.secret_env},
        files=files,
        gpus=run.gpus,
        nodes=run.nodes,
        cpu=run.resources.cpu,
        memory=run.resources.memory,
        shm_size=run.shm_size,
        data=data_volume(loaded),
        restart_policy=run.restart_policy,
        termination_grace_seconds=run.termination_grace_seconds,
        run_policy=run.run_policy,
        node_selector=dict(run.node_selector),
        tolerations=[t.model_dump(exclude_none=True) for t in run.tolerations],
        priority_class=run.priority_class,
        labels={RUN_LABEL: run.name, FRAMEWORK_LABEL: run.framework, MANAGED_BY_LABEL: "detk8s"},
    )
