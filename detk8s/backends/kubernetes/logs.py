"""`detk8s logs`: one replica's log, or every replica's interleaved with a prefix."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.pods import (
    Replica,
    follow_log,
    job_pods,
    rank0,
    read_log,
    replica_of,
)


def print_logs(
    cluster: Cluster,
    job: str,
    replica: str | None,
    all_replicas: bool,
    follow: bool,
    out: Callable[[str], None],
) -> None:
    found = cluster.find_job(job)
    if found is None:
        raise ClusterError(f"no job {job} in namespace {cluster.namespace}")
    kind, _ = found
    if all_replicas:
        pods = job_pods(cluster, job)
    else:
        want = Replica.parse(replica) if replica else rank0(kind)
        pods = job_pods(cluster, job, want)
        if not pods:
            raise ClusterError(f"no pod for {kind.plural}/{job} replica {want} (yet)")
    if not pods:
        raise ClusterError(f"no pods for {kind.plural}/{job} (yet)")
    prefix = len(pods) > 1 or all_replicas
    names = [(p.metadata.name, str(replica_of(p))) for p in pods]
    if not follow:
        for pod, label in names:
            for line in read_log(cluster, pod, kind.container).splitlines():
                out(f"[{label}] {line}" if prefix else line)
        return
    if len(names) == 1 and not prefix:
        for line in follow_log(cluster, names[0][0], kind.container):
            out(line)
        return
    _follow_many(cluster, names, kind.container, out)


def _follow_many(
    cluster: Cluster, pods: list[tuple[str, str]], container: str, out: Callable[[str], None]
) -> None:
    """Lines of several pods as they arrive, each prefixed with its replica."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(pod: str, label: str) -> None:
        try:
            for line in follow_log(cluster, pod, container):
                lines.put(f"[{label}] {line}")
        finally:
            lines.put(None)

    for pod, label in pods:
        threading.Thread(target=pump, args=(pod, label), daemon=True).start()
    open_streams = len(pods)
    while open_streams:
        item = lines.get()
        if item is None:
            open_streams -= 1
        else:
            out(item)
