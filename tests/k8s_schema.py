"""Validation of rendered manifests against the real schemas: the Training Operator's CRDs from
../shared/crds/ and the Kubernetes API's own (kubernetes-validate, strict)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parent.parent.parent / "shared" / "crds"
K8S_VERSION = "1.30.0"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    path = CRDS / f"kubeflow.org_{kind.lower()}s.yaml"
    crd = yaml.load(path.read_text(), Loader=_Loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def pruned_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would silently drop: not declared in the structural schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in obj.items():
            if props is not None and k in props:
                out += pruned_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += pruned_fields(v, extra, f"{path}.{k}")
            elif props is not None:
                out.append(f"{path}.{k}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            out += pruned_fields(v, schema["items"], f"{path}[{i}]")
    return out


def validate_job(job: dict[str, Any]) -> None:
    """Raises unless the job is valid for its CRD and no field of it would be pruned."""
    schema = crd_schema(job["kind"])
    jsonschema.validate(job, schema, cls=jsonschema.Draft7Validator)
    pruned = pruned_fields(job, schema)
    assert not pruned, f"fields unknown to the {job['kind']} CRD: {pruned}"


def replica_specs(job: dict[str, Any]) -> dict[str, Any]:
    key = {"PaddleJob": "paddleReplicaSpecs", "PyTorchJob": "pytorchReplicaSpecs"}[job["kind"]]
    specs: dict[str, Any] = job["spec"][key]
    return specs


def validate_pod_templates(job: dict[str, Any]) -> None:
    """Each replica's pod template, as a Pod, against Kubernetes' schema in strict mode."""
    for replica, spec in replica_specs(job).items():
        template = spec["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "name": f"{job['metadata']['name']}-{replica}"},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def validate_core(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
