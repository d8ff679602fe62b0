"""Kubeflow Trainer v2.3 as the API server and its controller take what detk8s renders:
TrainJobs and runtimes against their CRDs (../shared/crds/trainer-v2/: structural schema, unknown
fields, and the CEL rules, run by cel-python), and the JobSet the controller builds from a runtime
and a TrainJob (kubeflow/trainer v2.3.0 pkg/runtime/core/trainingruntime.go and
plugins/{jobset,torch,plainml}), against JobSet v0.12.0's CRD."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

import celpy
import jsonschema
import yaml
from k8s_schema import CRDS, pruned_fields

CRD_FILES = {
    "TrainJob": "trainer.kubeflow.org_trainjobs.yaml",
    "ClusterTrainingRuntime": "trainer.kubeflow.org_clustertrainingruntimes.yaml",
    "JobSet": "jobset.x-k8s.io_jobsets.v0.12.0.yaml",
}
ANCESTOR = "trainer.kubeflow.org/trainjob-ancestor-step"
TORCH_PORT = 29500  # constants.ContainerTrainerPort
# Strategic merge keys of the lists a runtime patch touches (the rest are replaced whole).
MERGE_KEYS = {"replicatedJobs": "name", "containers": "name", "initContainers": "name",
              "volumes": "name", "env": "name", "imagePullSecrets": "name",
              "schedulingGates": "name", "volumeMounts": "mountPath"}  # fmt: skip
JSON = dict[str, Any]


@cache
def v2_schema(kind: str) -> JSON:
    crd = yaml.safe_load((CRDS / "trainer-v2" / CRD_FILES[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema: JSON = version["schema"]["openAPIV3Schema"]
    return schema


def cel_rules(schema: JSON, value: Any, path: str = "") -> Iterator[tuple[str, JSON, Any]]:
    """(path, rule, value) for every x-kubernetes-validations rule that applies to `value`."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule, value
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, v in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from cel_rules(sub, v, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            yield from cel_rules(schema["items"], v, f"{path}[{i}]")


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(obj: JSON, schema: JSON) -> list[str]:
    """The messages of rules that fail; transition rules see an update that changes nothing."""
    failed = []
    for path, rule, value in cel_rules(schema, obj):
        cel = celpy.json_to_cel(value)
        if not _program(rule["rule"]).evaluate({"self": cel, "oldSelf": cel}):
            failed.append(f"{path or '.'}: {rule.get('message', rule['rule'])}")
    return failed


def validate_v2(obj: JSON) -> None:
    """Raises unless the API server would admit `obj` as it is, nothing pruned."""
    schema = v2_schema(obj["kind"])
    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
    pruned = pruned_fields(obj, schema)
    assert not pruned, f"fields unknown to the {obj['kind']} CRD: {pruned}"
    errors = cel_errors(obj, schema)
    assert not errors, f"{obj['kind']} CEL rules fail: {errors}"


def strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    """Kubernetes' strategic merge patch, for the fields a runtime patch sets."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base.get(k), v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        by = MERGE_KEYS[key]
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            i = next((i for i, b in enumerate(out_list) if b.get(by) == item.get(by)), None)
            if i is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[i] = strategic_merge(out_list[i], item)
        return out_list
    return copy.deepcopy(patch)


def build_jobset(runtime: JSON, trainjob: JSON) -> JSON:
    """The JobSet the Trainer controller makes of a TrainJob under `runtime`."""
    template = runtime["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    meta = copy.deepcopy(template.get("metadata") or {})
    for patch in trainjob["spec"].get("runtimePatches", []):
        patched = patch["trainingRuntimeSpec"]["template"]
        for field in ("labels", "annotations"):
            meta.setdefault(field, {}).update((patched.get("metadata") or {}).get(field) or {})
        spec = strategic_merge(spec, patched.get("spec") or {})
    policy = runtime["spec"].get("mlPolicy") or {}
    trainer = trainjob["spec"].get("trainer") or {}
    name = trainjob["metadata"]["name"]
    nodes = trainer.get("numNodes") or policy.get("numNodes") or 1
    for rjob in spec["replicatedJobs"]:
        job_spec = rjob["template"]["spec"]
        count = job_spec.get("parallelism", 1)
        if rjob["template"].get("metadata", {}).get("labels", {}).get(ANCESTOR) == "trainer":
            rjob["replicas"], count = 1, nodes
            (node,) = [c for c in job_spec["template"]["spec"]["containers"] if c["name"] == "node"]
            _override(node, trainer, policy, name, nodes)
        job_spec["parallelism"] = job_spec["completions"] = count
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": name, "namespace": trainjob["metadata"].get("namespace"), **meta},
        "spec": {**spec, "suspend": trainjob["spec"].get("suspend", False)},
    }  # fmt: skip


def _override(node: JSON, trainer: JSON, policy: JSON, name: str, nodes: int) -> None:
    """builder.go Trainer, MergeResourceRequirements, and the torch plugin's env and port."""
    for field in ("image", "command", "args"):
        if field in trainer:
            node[field] = copy.deepcopy(trainer[field])
    env = strategic_merge(node.get("env") or [], trainer.get("env") or [], "env")
    if "resourcesPerNode" in trainer:
        resources = node.setdefault("resources", {})
        for part, values in trainer["resourcesPerNode"].items():
            resources[part] = {**resources.get(part, {}), **values}
    if "torch" in policy:
        index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        env += [
            {"name": "PET_NNODES", "value": str(nodes)},
            {"name": "PET_NPROC_PER_NODE", "value": str(trainer.get("numProcPerNode", "auto"))},
            {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}},
            {"name": "PET_MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
            {"name": "PET_MASTER_PORT", "value": str(TORCH_PORT)},
        ]
        node.setdefault("ports", []).append({"containerPort": TORCH_PORT})
    node["env"] = env


def node_pod(jobset: JSON) -> JSON:
    """The trainer job's pod template, as a Pod."""
    (rjob,) = [r for r in jobset["spec"]["replicatedJobs"] if r["name"] == "node"]
    template = rjob["template"]["spec"]["template"]
    meta = {**template.get("metadata", {}), "name": f"{jobset['metadata']['name']}-node-0-0-abcde"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}
