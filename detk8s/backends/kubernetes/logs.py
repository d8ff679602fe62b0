"""`detk8s logs`: one replica's log, or every replica's interleaved with a prefix; when the pods
are gone (the operator deletes them all at the backoff limit or deadline), the log the run
stored while it trained."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.kinds import KINDS, JobKind
from detk8s.backends.kubernetes.pods import (
    Replica,
    follow_log,
    job_pods,
    rank0,
    read_log,
    replica_of,
)

# The log a run stored for a replica (worker-0, master-0), or None: see runner/logsync.py.
StoredLog = Callable[[str], "str | None"]


def print_logs(
    cluster: Cluster,
    job: str,
    replica: str | None,
    all_replicas: bool,
    follow: bool,
    out: Callable[[str], None],
    stored: StoredLog,
    note: Callable[[str], None],
) -> None:
    found = cluster.find_job(job)
    kind = found[0] if found else None
    want = Replica.parse(replica) if replica else (rank0(kind) if kind else None)
    pods = []
    if found is not None:
        pods = job_pods(cluster, found[0], found[1], None if all_replicas else want)
    if not pods:
        where = f"{kind.plural}/{job}" if kind else f"job {job}"
        label = "replicas" if all_replicas or want is None else str(want)
        _print_stored(stored, [str(want)] if want and not all_replicas else None, out, note,
                      f"no pod of {where} ({label}) in namespace {cluster.namespace}")  # fmt: skip
        return
    assert kind is not None
    prefix = len(pods) > 1 or all_replicas
    if not follow:
        for pod in pods:
            label = str(replica_of(pod, kind))
            try:
                text = read_log(cluster, pod.metadata.name, kind.container)
            except ClusterError as e:  # waiting to start: init container, image pull, ...
                out(f"[{label}] (no log yet: {_why(e)})")
                continue
            for line in text.splitlines():
                out(f"[{label}] {line}" if prefix else line)
        return
    if not prefix:
        for line in follow_log(cluster, pods[0].metadata.name, kind.container):
            out(line)
        return
    _follow_many(cluster, kind, pods, out)


def _print_stored(
    stored: StoredLog,
    replicas: list[str] | None,
    out: Callable[[str], None],
    note: Callable[[str], None],
    missing: str,
) -> None:
    """The stored logs of `replicas` (None: rank 0's, then any other found), or the error."""
    names = replicas or list(dict.fromkeys(f"{k.rank0_replica}-0" for k in KINDS.values()))
    shown = False
    for name in names:
        text = stored(name)
        if text is None:
            continue
        note(f"[detk8s] {missing}: the log {name} stored while it ran follows")
        for line in text.splitlines():
            out(line)
        shown = True
        break
    if not shown:
        raise ClusterError(f"{missing}, and no log stored by the run (yet)")


def _why(e: ClusterError) -> str:
    text = str(e)
    return text.rsplit(": ", 1)[-1] if "waiting to start" in text else text


def _follow_many(
    cluster: Cluster, kind: JobKind, pods: list[Any], out: Callable[[str], None]
) -> None:
    """Lines of several pods as they arrive, each prefixed with its replica; a replica not
    started yet gets one line saying so."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(pod: str, label: str) -> None:
        try:
            for line in follow_log(cluster, pod, kind.container):
                lines.put(f"[{label}] {line}")
        except ClusterError as e:
            lines.put(f"[{label}] (no log yet: {_why(e)})")
        finally:
            lines.put(None)

    for pod in pods:
        threading.Thread(
            target=pump, args=(pod.metadata.name, str(replica_of(pod, kind))), daemon=True
        ).start()
    open_streams = len(pods)
    while open_streams:
        item = lines.get()
        if item is None:
            open_streams -= 1
        else:
            out(item)
