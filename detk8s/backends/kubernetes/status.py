"""One row per job for `detk8s status`: state, replicas, restarts, age, nodes, GPUs, and why a
Pending job is pending."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detk8s.backends.kubernetes.cluster import Cluster
from detk8s.backends.kubernetes.kinds import GPU_RESOURCE, JobKind
from detk8s.backends.kubernetes.pods import (
    job_pods,
    last_exit,
    newest_warning,
    pending_reason,
    rank0,
    replica_of,
    restarts,
)
from detk8s.backends.kubernetes.state import QUEUED, condition_reason, job_state, queued_in_kueue
from detk8s.errors import first_line
from detk8s.labels import MANAGED_BY_LABEL, RUN_LABEL


@dataclass(frozen=True)
class JobRow:
    run: str
    job: str  # plural/name, as kubectl names it
    state: str
    ready: int
    total: int
    restarts: int
    age: str
    nodes: str
    gpus: int
    reason: str
    namespace: str = ""
    progress: str = ""  # of a running job: epoch, iteration, loss, ETA from rank 0's log


# The job (with its labels) and rank 0's log tail -> progress text, or None.
ProgressOf = Callable[[dict[str, Any], str], "str | None"]
LOG_TAIL_LINES = 200


def _replica_specs(job: dict[str, Any]) -> dict[str, Any]:
    spec = job.get("spec") or {}
    for key, value in spec.items():
        if key.endswith("ReplicaSpecs"):
            specs: dict[str, Any] = value
            return specs
    return {}


def _gpus(job: dict[str, Any]) -> tuple[int, int]:
    """GPUs and replicas the job asks for (a TrainJob: per node, times its nodes)."""
    trainer = (job.get("spec") or {}).get("trainer")
    if trainer is not None:
        nodes = int(trainer.get("numNodes", 1))
        limits = (trainer.get("resourcesPerNode") or {}).get("limits") or {}
        return nodes * int(limits.get(GPU_RESOURCE, 0)), nodes
    total_gpus = total_replicas = 0
    for spec in _replica_specs(job).values():
        replicas = int(spec.get("replicas", 1))
        total_replicas += replicas
        for c in spec["template"]["spec"].get("containers", []):
            limits = (c.get("resources") or {}).get("limits") or {}
            total_gpus += replicas * int(limits.get(GPU_RESOURCE, 0))
    return total_gpus, total_replicas


def age(created: str | None, now: dt.datetime | None = None) -> str:
    if not created:
        return "?"
    start = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = int(((now or dt.datetime.now(dt.timezone.utc)) - start).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def kueue_reason(workloads: list[dict[str, Any]], job: dict[str, Any]) -> str:
    """Why Kueue has not admitted the job: its Workload's newest condition message."""
    uid = job["metadata"].get("uid")
    for w in workloads:
        if any(r.get("uid") == uid for r in w["metadata"].get("ownerReferences") or []):
            conditions = (w.get("status") or {}).get("conditions") or []
            latest: dict[str, Any] = max(
                conditions, key=lambda c: c.get("lastTransitionTime") or "", default={}
            )
            if latest.get("message"):
                return f"Kueue: {latest['message']}"
    return "Kueue: waiting for admission"


def running_progress(
    cluster: Cluster, kind: JobKind, job: dict[str, Any], pods: list[Any], progress: ProgressOf
) -> str:
    """The progress rank 0's log shows (its last lines); "" when it shows none."""
    first = rank0(kind)
    pod = next((p for p in pods if replica_of(p, kind) == first), None)
    if pod is None:
        return ""
    try:
        log: str = cluster.call(
            cluster.core.read_namespaced_pod_log, pod.metadata.name, cluster.namespace,
            container=kind.container, tail_lines=LOG_TAIL_LINES,
        )  # fmt: skip
    except Exception:  # a log that cannot be read has no progress to show
        return ""
    return progress(job, log) or ""


def job_row(
    cluster: Cluster, kind: JobKind, job: dict[str, Any],
    workloads: list[dict[str, Any]] | None = None, progress: ProgressOf | None = None,
) -> JobRow:  # fmt: skip
    meta = job["metadata"]
    name = meta["name"]
    pods = job_pods(cluster, kind, job)
    gpus, total = _gpus(job)
    ready = sum(
        1 for p in pods
        if p.status and p.status.phase == "Running"
        and all(s.ready for s in p.status.container_statuses or [])
    )  # fmt: skip
    state = job_state(job)
    reasons = [why] if (why := condition_reason(job)) else []
    if state == QUEUED:
        state = "queued (Kueue)"
        reasons.append(kueue_reason(workloads or [], job))
    for p in pods:
        why = pending_reason(cluster, p)
        if why:
            reasons.append(f"{p.metadata.name}: {why}")
            break
    for p in pods:
        if restarts(p):
            reasons.append(f"{p.metadata.name} restarted {restarts(p)}x, last exit "
                           f"{last_exit(p) or 'unknown'}")  # fmt: skip
    if not pods and state in ("Pending", "Created"):
        none_yet = "no pods yet (operator or gang scheduler has not created them)"
        reasons.append(newest_warning(cluster, name) or none_yet)
    reason = "; ".join(reasons)
    nodes = sorted({p.spec.node_name for p in pods if p.spec and p.spec.node_name})
    where = running_progress(cluster, kind, job, pods, progress) if (
        progress and state in ("Running", "Restarting")) else ""  # fmt: skip
    return JobRow(
        run=(meta.get("labels") or {}).get(RUN_LABEL, name),
        job=f"{kind.plural}/{name}",
        state=state,
        ready=ready,
        total=total,
        restarts=sum(restarts(p) for p in pods),
        age=age(meta.get("creationTimestamp")),
        nodes=",".join(nodes) or "-",
        gpus=gpus,
        reason=reason,
        namespace=meta.get("namespace", cluster.namespace),
        progress=where,
    )


def _row_or_error(
    cluster: Cluster, kind: JobKind, job: dict[str, Any], workloads: list[dict[str, Any]],
    progress: ProgressOf | None,
) -> JobRow:  # fmt: skip
    """The job's row; when reading it fails, a row that says so (the others still show)."""
    try:
        return job_row(cluster, kind, job, workloads, progress)
    except Exception as e:  # an API error, or a job object not shaped as expected
        meta = job.get("metadata") or {}
        name = str(meta.get("name", "?"))
        run = str((meta.get("labels") or {}).get(RUN_LABEL, name))
        return JobRow(run, f"{kind.plural}/{name}", "Unknown", 0, 0, 0, "?", "-", 0,
                      f"cannot read: {first_line(e)}", cluster.namespace)  # fmt: skip


def job_rows(
    cluster: Cluster, runs: list[str] | None = None, progress: ProgressOf | None = None
) -> list[JobRow]:
    jobs = cluster.list_jobs(f"{MANAGED_BY_LABEL}=detk8s")
    workloads = cluster.kueue_workloads() if any(queued_in_kueue(j) for _, j in jobs) else []
    rows = [_row_or_error(cluster, kind, job, workloads, progress) for kind, job in jobs]
    if runs is not None:
        rows = [r for r in rows if r.run in runs]
    return sorted(rows, key=lambda r: r.run)
