"""Idempotent submission by server-side apply (field manager `detk8s`), as `kubectl apply
--server-side` does: what others changed with kubectl apply or edit on fields detk8s sets is a
conflict, reported and not overwritten (unless --force-conflicts).

Same job name and same spec hash: nothing to apply (fields others changed since are named;
--force-conflicts takes them back). Another
hash: refuse unless --replace, which deletes and recreates it (a training job's spec is not
changed under it). A new job: the job, then its ConfigMap already owned by it (deleting the job
deletes it), two requests. No pod starts without its files: the kubelet waits for a ConfigMap
volume until it exists. If the ConfigMap cannot be applied, the job is deleted again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.kinds import KINDS, JobKind
from detk8s.backends.kubernetes.rest import ApiError
from detk8s.backends.kubernetes.state import job_state
from detk8s.labels import RUN_LABEL, SPEC_HASH_LABEL
from detk8s.names import config_map_name

Manifest = dict[str, Any]
Known = dict[str, tuple[JobKind, Manifest]]  # job name -> its kind and the job
DRY_RUN_ALL = "All"
FIELD_MANAGER = "detk8s"
APPLY_PATCH = "application/apply-patch+yaml"


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
    force_conflicts: bool = False,
    known: Known | None = None,
) -> Outcome:
    """`known`: the namespace's jobs by name, when listed up front (a sweep lists once instead
    of asking for each run's job of every kind)."""
    config_map, job = manifests
    kind = KINDS[job["kind"]]
    name = job["metadata"]["name"]
    for m in manifests:  # the run's namespace, -n's or the context's: where it is applied
        m["metadata"]["namespace"] = cluster.namespace
    try:
        return _submit(cluster, run, kind, config_map, job, replace, server_dry_run,
                       force_conflicts, known)  # fmt: skip
    except ApiError as e:  # 409 from an apply: fields someone else manages
        if e.status != 409:
            raise
        return Outcome(
            run,
            name,
            "refused",
            f"{kind.plural}/{name}: {e.message}; "
            "they were changed by someone else: --force-conflicts takes them back",
        )


def same_spec(found: tuple[JobKind, Manifest], job: Manifest) -> bool:
    """Whether the job found is `job` as rendered: the same kind and spec hash."""
    kind, existing = found
    return kind.kind == job["kind"] and _hash(existing) == _hash(job)


def _submit(
    cluster: Cluster, run: str, kind: JobKind, config_map: Manifest, job: Manifest,
    replace: bool, server_dry_run: bool, force: bool, known: Known | None,
) -> Outcome:  # fmt: skip
    name = job["metadata"]["name"]
    if server_dry_run:
        apply(cluster, None, config_map, force=True, dry_run=True)
        apply(cluster, kind, job, force=force, dry_run=True)
        return Outcome(run, name, "validated", "the API server accepts it (nothing persisted)")
    # The run's job, or one of the same name on another API (kubeflow-v1 vs trainer-v2).
    found = (cluster.find_job(name, first=kind) if known is None else known.get(name)) or (
        kind, None)  # fmt: skip
    existing = found[1] if found[0] is kind else None
    if existing is not None and same_spec((kind, existing), job):
        others = _other_managers(existing)
        if others and force:  # --force-conflicts: take their fields back
            existing = apply(cluster, kind, job, force=True)
            apply(cluster, None, _owned(config_map, kind, existing), force=True)
            others = []
        detail = f"already submitted: {job_state(existing)}"
        if others:  # nothing of ours changed: not re-applied, but said
            detail += (f"; its spec was also changed by {', '.join(others)} "
                       "(--force-conflicts takes those fields back)")  # fmt: skip
        return Outcome(run, name, "unchanged", detail)
    old = None if found[1] is None else (found[0], found[1])
    action = "created"
    if old is not None:
        old_kind, old_job = old
        if not replace:
            why = (f"exists with another spec (hash {_hash(old_job)}, now {_hash(job)})"
                   if old_kind is kind else "exists (the run on another API)")  # fmt: skip
            return Outcome(run, name, "refused",
                           f"{old_kind.plural}/{name} {why}: use --replace to delete and "
                           "recreate it")  # fmt: skip
        delete_job(cluster, old_kind, name)
        _wait_gone(cluster, old_kind, name)
        action = "replaced"
    created = apply(cluster, kind, job, force=force)
    try:  # a leftover ConfigMap (of an attempt whose job is gone) is taken over: force
        apply(cluster, None, _owned(config_map, kind, created), force=True)
    except BaseException:
        with contextlib.suppress(ApiError, ClusterError):  # the ConfigMap's failure is the news
            delete_job(cluster, kind, name)
        raise
    return Outcome(run, name, action)


def apply(
    cluster: Cluster, kind: JobKind | None, obj: Manifest, force: bool, dry_run: bool = False
) -> Manifest:
    """Server-side apply of a job of `kind`, or of a ConfigMap (kind None)."""
    name = obj["metadata"]["name"]
    path = cluster.config_maps_path(name) if kind is None else cluster.jobs_path(kind, name)
    query = {"fieldManager": FIELD_MANAGER, "force": str(force).lower()}
    if dry_run:
        query["dryRun"] = DRY_RUN_ALL
    applied: Manifest = cluster.request(  # JSON is YAML: the apply-patch body as sent
        "PATCH", path, query=query, body=obj, content_type=APPLY_PATCH
    )
    return applied


# Controllers that change a job's spec by design: Kueue admits a queued job by unsuspending it.
EXPECTED_MANAGERS = ("kueue",)


def _other_managers(job: Manifest) -> list[str]:
    """Who else changed the job's spec (kubectl edit, apply), from its managedFields; status
    writers and Kueue are expected."""
    return sorted({
        e["manager"] for e in job["metadata"].get("managedFields") or []
        if e.get("manager") != FIELD_MANAGER and e.get("subresource") != "status"
        and "f:spec" in (e.get("fieldsV1") or {})
        and not str(e.get("manager")).startswith(EXPECTED_MANAGERS)
    })  # fmt: skip


def known_jobs(cluster: Cluster) -> Known:
    """The jobs detk8s made in the cluster's namespace, of every kind: one list each."""
    return {j["metadata"]["name"]: (kind, j) for kind, j in cluster.list_jobs(RUN_LABEL)}


def _owned(config_map: Manifest, kind: JobKind, job: Manifest) -> Manifest:
    """The ConfigMap with the job as its owner: deleting the job deletes it."""
    owner = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "blockOwnerDeletion": False,
    }
    meta = {**config_map["metadata"], "ownerReferences": [owner]}
    return {**config_map, "metadata": meta}


def delete_job(cluster: Cluster, kind: JobKind, name: str) -> bool:
    """Delete the job and its ConfigMap; False when there was no such job."""
    try:
        query = {"propagationPolicy": "Background"}
        cluster.request("DELETE", cluster.jobs_path(kind, name), query=query)
        found = True
    except ApiError:  # 404
        found = False
    # The ownerReference lets the garbage collector do this; doing it here too means nothing is
    # left behind on clusters (or emulators) without one.
    with contextlib.suppress(ApiError):
        cluster.request("DELETE", cluster.config_maps_path(config_map_name(name)))
    return found


def _wait_gone(cluster: Cluster, kind: JobKind, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while cluster.get_job(kind, name) is not None:
        if time.monotonic() > deadline:
            raise ClusterError(f"{kind.plural}/{name} still exists {timeout:.0f} s after delete")
        time.sleep(0.2)
