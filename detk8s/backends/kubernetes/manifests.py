"""JobSpec -> Kubernetes manifests (ConfigMap, then the Kubeflow job), rendered from k8s_templates/.

The templates say what a manifest looks like; this module only feeds them and stamps the result
with a hash of the rendered spec, which `submit` compares to tell "same job" from "changed job".
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2

from detk8s import podenv, yaml_io
from detk8s.backends.kubernetes.kinds import (
    API_GROUP,
    API_VERSION,
    GPU_RESOURCE,
    KINDS,
    RUNTIMES,
    TRAINER_GROUP,
    TRAINER_NODE,
    TRAINER_VERSION,
    TRAINJOB,
)
from detk8s.config.schema import API_TRAINER_V2
from detk8s.labels import (
    JOBSET_NAME,
    KUEUE_QUEUE_LABEL,
    MANAGED_BY_LABEL,
    SPEC_HASH_LABEL,
    TRAINER_ANCESTOR_LABEL,
    TRAINER_FRAMEWORK_LABEL,
)
from detk8s.layout import POD
from detk8s.paths import TEMPLATES_DIR, data_path, user_cache_dir
from detk8s.spec import JobSpec

if TYPE_CHECKING:
    from detk8s.config.schema import ProjectConfig
    from detk8s.project import LoadedRun

Manifest = dict[str, Any]
RUNTIME_TEMPLATE = "clustertrainingruntime.yaml.j2"
RUNTIME_HASH_CHARS = 8
# A TrainJob's runtimePatches entry is keyed by its manager, a domain-prefixed path.
PATCH_MANAGER = "detk8s.io/detk8s"
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SHM_DIR = "/dev/shm"
TMP_DIR = "/tmp"
POD_PATHS = {"config": POD.config_dir, "output": POD.output_dir, "shm": SHM_DIR, "tmp": TMP_DIR}


# `tojson` for YAML: a JSON scalar or flow collection, which YAML reads as is. (Jinja's own also
# escapes < > & ' for HTML, which YAML does not need.) One encoder: json.dumps with options
# builds a new one per value, and a manifest has dozens.
_json = json.JSONEncoder(ensure_ascii=False).encode


def no_expansion(value: Any) -> Any:
    """The kubelet expands `$(VAR)` in a container's command, args and env values, and reads
    `$$` as a literal `$`: every `$` doubled, so each value reaches the program as written."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [no_expansion(v) for v in value]
    return value


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (compiling them is a tenth of a render); a cache
    that cannot be written is no cache, not an error."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _template_cache() -> jinja2.BytecodeCache | None:
    directory = user_cache_dir() / "templates"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _TemplateCache(str(directory))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_path(TEMPLATES_DIR)),
        bytecode_cache=_template_cache(),
        auto_reload=False,  # a process renders with the templates it started with: no stat per use
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML; values are quoted by `tojson`
    )
    env.filters["tojson"] = _json
    env.filters["no_expansion"] = no_expansion
    env.filters["pull_secret"] = lambda name: {"name": name}
    return env


def _render(template: str, **values: Any) -> Manifest:
    text = (
        _environment()
        .get_template(template)
        .render(
            api_version=f"{API_GROUP}/{API_VERSION}",
            trainer_api_version=f"{TRAINER_GROUP}/{TRAINER_VERSION}",
            gpu_resource=GPU_RESOURCE,
            paths=POD_PATHS,
            env_names=podenv,
            kueue_label=KUEUE_QUEUE_LABEL,
            node=TRAINER_NODE,
            **values,
        )
    )
    manifest: Manifest = yaml_io.load_rendered(text)
    return manifest


def runtime_manifest(launcher: str) -> Manifest:
    """detk8s's ClusterTrainingRuntime for a launcher kind (PaddleJob, PyTorchJob), named
    `detk8s-<family>-<hash of what it renders to>`."""
    return copy.deepcopy(_runtime(launcher))


@cache
def _runtime(launcher: str) -> Manifest:
    runtime = RUNTIMES[launcher]
    values = {
        "runtime": runtime, "kind": KINDS[TRAINJOB], "framework_label": TRAINER_FRAMEWORK_LABEL,
        "managed_by_label": MANAGED_BY_LABEL, "ancestor_label": TRAINER_ANCESTOR_LABEL,
        "jobset_label": JOBSET_NAME,
    }  # fmt: skip
    manifest = _render(RUNTIME_TEMPLATE, name="", **values)
    version = spec_hash([manifest])[:RUNTIME_HASH_CHARS]
    manifest["metadata"]["name"] = f"detk8s-{runtime.family}-{version}"
    return manifest


def runtime_name(launcher: str) -> str:
    return str(_runtime(launcher)["metadata"]["name"])


def spec_hash(manifests: list[Manifest]) -> str:
    canonical = json.dumps(manifests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_manifests(job: JobSpec) -> list[Manifest]:
    """The ConfigMap and the job (a Kubeflow v1 job, or a TrainJob under detk8s's runtime for
    the run's launcher), labelled with the hash of both as rendered."""
    if job.api == API_TRAINER_V2:
        kind = KINDS[TRAINJOB]
        extra = {
            "runtime": RUNTIMES[job.kind], "runtime_name": runtime_name(job.kind),
            "patch_manager": PATCH_MANAGER, "sa_token_dir": SA_TOKEN_DIR,
        }  # fmt: skip
    else:
        kind, extra = KINDS[job.kind], {}
    manifests = [
        _render("configmap.yaml.j2", job=job),
        _render(kind.template, job=job, kind=kind, **extra),
    ]
    digest = spec_hash(manifests)
    for m in manifests:
        m["metadata"]["labels"][SPEC_HASH_LABEL] = digest
    return manifests


def manifests_for(loaded: LoadedRun, project: ProjectConfig) -> list[Manifest]:
    from detk8s.jobspec import pod_job_spec

    return render_manifests(pod_job_spec(loaded, project))


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml_io.dump_all(manifests, explicit_start=True, width=100)
