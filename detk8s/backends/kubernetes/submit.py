"""Idempotent submission: what a careful engineer does with kubectl, for one run.

Same job name and same spec hash: nothing to do. Another hash: refuse unless --replace. A new
job: ConfigMap first, then the job, then the ConfigMap gets the job as owner (so deleting the job
deletes it); if the job cannot be created, the ConfigMap is removed again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.kinds import API_GROUP, API_VERSION, KINDS, JobKind
from detk8s.backends.kubernetes.state import job_state
from detk8s.labels import SPEC_HASH_LABEL

Manifest = dict[str, Any]
DRY_RUN_ALL = "All"


@dataclass(frozen=True)
class Outcome:
    run: str
    job: str
    action: str  # created, replaced, unchanged, refused, validated, failed, skipped
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.action not in ("refused", "failed")


def _hash(obj: Manifest) -> str | None:
    labels: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels.get(SPEC_HASH_LABEL)


def submit_manifests(
    cluster: Cluster,
    run: str,
    manifests: list[Manifest],
    replace: bool = False,
    server_dry_run: bool = False,
) -> Outcome:
    config_map, job = manifests
    kind = KINDS[job["kind"]]
    name = job["metadata"]["name"]
    for m in manifests:  # the project's namespace or --namespace; the cluster's wins
        m["metadata"]["namespace"] = cluster.namespace
    if server_dry_run:
        cluster.call(
            cluster.core.create_namespaced_config_map,
            cluster.namespace, config_map, dry_run=DRY_RUN_ALL,
        )  # fmt: skip
        _create_job(cluster, kind, job, dry_run=DRY_RUN_ALL)
        return Outcome(run, name, "validated", "the API server accepts it (nothing persisted)")
    existing = cluster.get_job(kind, name)
    action = "created"
    if existing is not None:
        if _hash(existing) == _hash(job):
            return Outcome(run, name, "unchanged", f"already submitted: {job_state(existing)}")
        if not replace:
            return Outcome(
                run, name, "refused",
                f"{kind.plural}/{name} exists with another spec (hash {_hash(existing)}, now "
                f"{_hash(job)}): use --replace to delete and recreate it",
            )  # fmt: skip
        delete_job(cluster, kind, name)
        _wait_gone(cluster, kind, name)
        action = "replaced"
    _put_config_map(cluster, config_map)
    try:
        created = _create_job(cluster, kind, job)
    except BaseException:
        _delete_quietly(cluster, config_map["metadata"]["name"])
        raise
    _own(cluster, config_map["metadata"]["name"], kind, created)
    return Outcome(run, name, action)


def _create_job(
    cluster: Cluster, kind: JobKind, job: Manifest, dry_run: str | None = None
) -> Manifest:
    kwargs = {"dry_run": dry_run} if dry_run else {}
    created: Manifest = cluster.call(
        cluster.custom.create_namespaced_custom_object,
        API_GROUP, API_VERSION, cluster.namespace, kind.plural, job, **kwargs,
    )  # fmt: skip
    return created


def _put_config_map(cluster: Cluster, config_map: Manifest) -> None:
    """Create, or take over a leftover of an earlier attempt (same name, no live job)."""
    try:
        cluster.call(cluster.core.create_namespaced_config_map, cluster.namespace, config_map)
    except ApiException as e:
        if e.status != 409:
            raise
        name = config_map["metadata"]["name"]
        cluster.call(
            cluster.core.patch_namespaced_config_map,
            name, cluster.namespace,
            {"metadata": {"labels": config_map["metadata"]["labels"], "ownerReferences": None},
             "data": config_map["data"]},
        )  # fmt: skip


def _own(cluster: Cluster, config_map: str, kind: JobKind, job: Manifest) -> None:
    owner = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": kind.kind,
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "blockOwnerDeletion": False,
    }
    cluster.call(
        cluster.core.patch_namespaced_config_map,
        config_map, cluster.namespace, {"metadata": {"ownerReferences": [owner]}},
    )  # fmt: skip


def _delete_quietly(cluster: Cluster, config_map: str) -> None:
    # The create failure is what the user needs to see, not this one's.
    with contextlib.suppress(ApiException, ClusterError):
        cluster.call(cluster.core.delete_namespaced_config_map, config_map, cluster.namespace)


def delete_job(cluster: Cluster, kind: JobKind, name: str) -> bool:
    """Delete the job and its ConfigMap; False when there was no such job."""
    try:
        cluster.call(
            cluster.custom.delete_namespaced_custom_object,
            API_GROUP, API_VERSION, cluster.namespace, kind.plural, name,
            propagation_policy="Background",
        )  # fmt: skip
        found = True
    except ApiException:  # 404
        found = False
    # The ownerReference lets the garbage collector do this; doing it here too means nothing is
    # left behind on clusters (or emulators) without one.
    with contextlib.suppress(ApiException):
        cluster.call(cluster.core.delete_namespaced_config_map, f"{name}-config", cluster.namespace)
    return found


def _wait_gone(cluster: Cluster, kind: JobKind, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while cluster.get_job(kind, name) is not None:
        if time.monotonic() > deadline:
            raise ClusterError(f"{kind.plural}/{name} still exists {timeout:.0f} s after delete")
        time.sleep(0.2)
