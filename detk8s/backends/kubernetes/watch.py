"""Following a job to its end: state changes and Pending reasons on stderr, rank 0's log on
stdout. This is what `submit --wait` runs, in a terminal or in a CI pipeline."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.kinds import JobKind
from detk8s.backends.kubernetes.pods import follow_log, job_pods, pending_reason, rank0
from detk8s.backends.kubernetes.state import TERMINAL, job_state

TIMEOUT = "Timeout"
STARTED = ("Running", "Succeeded", "Failed")


class _LogFollower:
    """Streams one container's log on a thread; restarted when the container restarts."""

    def __init__(self, cluster: Cluster, pod: str, container: str, out: Callable[[str], None]):
        self.cluster, self.pod, self.container, self.out = cluster, pod, container, out
        self.restarts = -1
        self.thread: threading.Thread | None = None

    def ensure(self, restarts: int) -> None:
        if self.thread is not None and (self.thread.is_alive() or restarts == self.restarts):
            return
        self.restarts = restarts
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for line in follow_log(self.cluster, self.pod, self.container):
                self.out(line)
        except Exception as e:  # a broken stream must not end the wait; the state decides
            sys.stderr.write(f"[detk8s] log stream of {self.pod} ended: {e}\n")

    def finish(self, grace: float = 5.0) -> None:
        if self.thread is not None:
            self.thread.join(grace)


def wait_for_job(
    cluster: Cluster,
    kind: JobKind,
    name: str,
    timeout: float,
    poll: float = 2.0,
    out: Callable[[str], None] = print,
    note: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> str:
    """The job's final state (Succeeded, Failed) or TIMEOUT."""
    deadline = time.monotonic() + timeout
    last_state = None
    reasons: set[str] = set()
    follower: _LogFollower | None = None
    while True:
        job = cluster.get_job(kind, name)
        if job is None:
            raise ClusterError(f"{kind.plural}/{name} was deleted while waiting for it")
        state = job_state(job)
        if state != last_state:
            note(f"[detk8s] {kind.plural}/{name}: {state}")
            last_state = state
        pods = job_pods(cluster, name, rank0(kind))
        if pods:
            pod = pods[0]
            reason = pending_reason(cluster, pod)
            if reason and reason not in reasons:
                reasons.add(reason)
                note(f"[detk8s] {pod.metadata.name} is not running: {reason}")
            if pod.status and pod.status.phase in STARTED:
                if follower is None:
                    follower = _LogFollower(cluster, pod.metadata.name, kind.container, out)
                follower.ensure(_restarts(pod))
        if state in TERMINAL:
            if follower is not None:
                follower.finish()
            return state
        if time.monotonic() >= deadline:
            return TIMEOUT
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def _restarts(pod: Any) -> int:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return sum(s.restart_count or 0 for s in statuses)
