"""JobSpec -> Kubernetes manifests (ConfigMap, then the Kubeflow job), rendered from k8s_templates/.

The templates say what a manifest looks like; this module only feeds them and stamps the result
with a hash of the rendered spec, which `submit` compares to tell "same job" from "changed job".
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from detk8s.backends.kubernetes.kinds import API_GROUP, API_VERSION, GPU_RESOURCE, KINDS
from detk8s.labels import OP_REPLICA_INDEX, OP_REPLICA_TYPE, SPEC_HASH_LABEL
from detk8s.layout import POD
from detk8s.paths import TEMPLATES_DIR, data_path
from detk8s.spec import JobSpec

if TYPE_CHECKING:
    from detk8s.config.load import LoadedRun
    from detk8s.config.schema import ProjectConfig

Manifest = dict[str, Any]
SHM_DIR = "/dev/shm"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _json(value: Any) -> str:
    """`tojson` for YAML: a JSON scalar or flow collection, which YAML reads as is. (Jinja's own
    also escapes < > & ' for HTML, which YAML does not need.)"""
    return json.dumps(value, ensure_ascii=False)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_path(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML; values are quoted by `tojson`
    )
    env.filters["tojson"] = _json
    return env


def _render(template: str, job: JobSpec) -> Manifest:
    kind = KINDS[job.kind]
    text = (
        _environment()
        .get_template(template)
        .render(
            job=job,
            kind=kind,
            api_version=f"{API_GROUP}/{API_VERSION}",
            gpu_resource=GPU_RESOURCE,
            paths={"config": POD.config_dir, "output": POD.output_dir, "shm": SHM_DIR},
            op_labels={"replica_type": OP_REPLICA_TYPE, "replica_index": OP_REPLICA_INDEX},
        )
    )
    manifest: Manifest = yaml.load(text, Loader=_Loader)
    return manifest


def spec_hash(manifests: list[Manifest]) -> str:
    canonical = json.dumps(manifests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_manifests(job: JobSpec) -> list[Manifest]:
    """The ConfigMap and the job, labelled with the hash of both as rendered."""
    manifests = [_render("configmap.yaml.j2", job), _render(KINDS[job.kind].template, job)]
    digest = spec_hash(manifests)
    for m in manifests:
        m["metadata"]["labels"][SPEC_HASH_LABEL] = digest
    return manifests


def manifests_for(loaded: LoadedRun, project: ProjectConfig) -> list[Manifest]:
    from detk8s.jobspec import build_job_spec

    return render_manifests(build_job_spec(loaded, project))


class _BlockDumper(_Dumper):  # type: ignore[misc, valid-type]
    """Multi-line strings (the framework config) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml.dump_all(
        manifests, Dumper=_BlockDumper, sort_keys=False, explicit_start=True, width=100
    )
