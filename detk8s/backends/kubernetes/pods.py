"""The pods of a job, found by the labels its API puts on them, and what they have to say:
why they are not running yet, and their logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from detk8s.backends.kubernetes.cluster import Cluster
from detk8s.backends.kubernetes.kinds import JobKind

# Waiting reasons that mean "this will not start by itself".
STUCK = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
         "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}  # fmt: skip


@dataclass(frozen=True)
class Replica:
    type: str  # lowercase, as in the pod labels: master, worker
    index: int

    @classmethod
    def parse(cls, text: str) -> Replica:
        """`worker-1`, `master-0`, or `worker` (index 0)."""
        kind, _, index = text.lower().rpartition("-")
        if not kind or not index.isdigit():
            return cls(text.lower(), 0)
        return cls(kind, int(index))

    def __str__(self) -> str:
        return f"{self.type}-{self.index}"


def replica_of(pod: Any, kind: JobKind) -> Replica:
    labels = pod.metadata.labels or {}
    return Replica(labels.get(kind.type_label, "?"), int(labels.get(kind.index_label, "0")))


def job_pods(
    cluster: Cluster, kind: JobKind, job: dict[str, Any], replica: Replica | None = None
) -> list[Any]:
    """The pods of `job`, the object: pods of an earlier job of the same name, still in their
    grace period after a --replace, are owned by another UID and left out; so are those of an
    earlier restart attempt of a JobSet (Trainer v2), whose pods the Jobs own."""
    name, uid = job["metadata"]["name"], job["metadata"].get("uid")
    selector = f"{kind.job_label}={name}"
    if replica is not None:
        selector += f",{kind.type_label}={replica.type},{kind.index_label}={replica.index}"
    pods = cluster.call(
        cluster.core.list_namespaced_pod, cluster.namespace, label_selector=selector
    ).items
    if kind.attempt_label:
        attempt = kind.attempt_label

        def tried(p: Any) -> int:
            value = (p.metadata.labels or {}).get(attempt, "0")
            return int(value) if value.isdigit() else 0

        newest = max((tried(p) for p in pods), default=0)
        pods = [p for p in pods if tried(p) == newest]
    elif uid:
        pods = [p for p in pods if uid in {r.uid for r in p.metadata.owner_references or []}]
    return sorted(pods, key=lambda p: (replica_of(p, kind).type, replica_of(p, kind).index))


def rank0(kind: JobKind) -> Replica:
    return Replica(kind.rank0_replica, 0)


def newest_warning(cluster: Cluster, name: str) -> str | None:
    """`reason: message` of the newest Warning event about the object `name` (a TrainJob whose
    JobSet cannot be created says so only this way)."""
    events = cluster.call(
        cluster.core.list_namespaced_event,
        cluster.namespace, field_selector=f"involvedObject.name={name}",
    ).items  # fmt: skip
    warnings = [e for e in events if e.type == "Warning"]
    if not warnings:
        return None
    e = max(warnings, key=_event_time)
    return f"{e.reason}: {e.message}"


def pending_reason(cluster: Cluster, pod: Any) -> str | None:
    """Why a pod is not running: its newest Warning event, a stuck container, or the scheduler."""
    phase = pod.status.phase if pod.status else None
    waiting = [
        s.state.waiting
        for s in (pod.status.container_statuses or [] if pod.status else [])
        if s.state and s.state.waiting and s.state.waiting.reason
    ]
    stuck = [w for w in waiting if w.reason in STUCK]
    if phase not in (None, "Pending") and not stuck:
        return None
    warning = newest_warning(cluster, pod.metadata.name)
    if warning:
        return warning
    if stuck or waiting:
        w = (stuck or waiting)[0]
        return f"{w.reason}: {w.message}" if w.message else str(w.reason)
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason}: {cond.message}"
    return None


def restarts(pod: Any) -> int:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return sum(s.restart_count or 0 for s in statuses)


def last_exit(pod: Any) -> str | None:
    """How the newest terminated container of a restarted pod ended: `OOMKilled (exit 137)`."""
    for s in (pod.status.container_statuses or []) if pod.status else []:
        ended = s.last_state.terminated if s.last_state else None
        if ended is None and s.state and s.state.terminated and s.state.terminated.exit_code:
            ended = s.state.terminated
        if ended is not None:
            return f"{ended.reason or 'Error'} (exit {ended.exit_code})"
    return None


def _event_time(e: Any) -> Any:
    import datetime as dt

    stamp = e.last_timestamp or e.event_time or e.first_timestamp
    return stamp or dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def read_log(cluster: Cluster, pod: str, container: str, tail: int | None = None) -> str:
    kwargs: dict[str, Any] = {"container": container}
    if tail is not None:
        kwargs["tail_lines"] = tail
    text: str = cluster.call(cluster.core.read_namespaced_pod_log, pod, cluster.namespace, **kwargs)
    return text


def follow_log(cluster: Cluster, pod: str, container: str) -> Iterator[str]:
    """Lines of the pod's log as they come, until the container stops."""
    resp = cluster.call(
        cluster.core.read_namespaced_pod_log,
        pod, cluster.namespace, container=container, follow=True, _preload_content=False,
    )  # fmt: skip
    buffer = b""
    try:
        for chunk in resp.stream(4096):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        if buffer:
            yield buffer.decode("utf-8", "replace")
    finally:
        resp.release_conn()
