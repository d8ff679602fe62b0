"""Following a job to its end: state changes, restarts and reasons on stderr, rank 0's log on
stdout. This is what `submit --wait` runs, in a terminal or in a CI pipeline.

Rank 0's pod is followed by UID: the operator recreates a deleted or evicted pod under the same
name, and that new pod's log is followed from its start; a container restarted in place
(OnFailure) is followed again from its new start.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from detk8s.backends.kubernetes.cluster import Cluster, ClusterError
from detk8s.backends.kubernetes.kinds import JobKind
from detk8s.backends.kubernetes.pods import (
    follow_log,
    job_pods,
    last_exit,
    pending_reason,
    rank0,
    restarts,
)
from detk8s.backends.kubernetes.state import TERMINAL, condition_reason, job_state

TIMEOUT = "Timeout"
STARTED = ("Running", "Succeeded", "Failed")


class _LogFollower:
    """Streams one container's log on a thread, until that container stops."""

    def __init__(self, cluster: Cluster, pod: str, container: str, out: Callable[[str], None]):
        self.thread = threading.Thread(
            target=self._run, args=(cluster, pod, container, out), daemon=True
        )
        self.thread.start()

    @staticmethod
    def _run(cluster: Cluster, pod: str, container: str, out: Callable[[str], None]) -> None:
        try:
            for line in follow_log(cluster, pod, container):
                out(line)
        except Exception as e:  # a broken stream must not end the wait; the state decides
            sys.stderr.write(f"[detk8s] log stream of {pod} ended: {e}\n")

    def finish(self, grace: float = 5.0) -> None:
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
    said: set[str] = set()
    followed: tuple[str, int] | None = None  # (pod UID, restarts) of the container followed
    follower: _LogFollower | None = None
    while True:
        job = cluster.get_job(kind, name)
        if job is None:
            raise ClusterError(f"{kind.plural}/{name} was deleted while waiting for it")
        state = job_state(job)
        if state != last_state:
            why = condition_reason(job)
            note(f"[detk8s] {kind.plural}/{name}: {state}" + (f": {why}" if why else ""))
            last_state = state
        for pod in job_pods(cluster, kind, job, rank0(kind)):
            reason = pending_reason(cluster, pod)
            if reason and reason not in said:
                said.add(reason)
                note(f"[detk8s] {pod.metadata.name} is not running: {reason}")
            if not (pod.status and pod.status.phase in STARTED):
                continue
            current = (pod.metadata.uid, restarts(pod))
            if current == followed:
                continue
            if followed is not None and current[0] != followed[0]:
                note(f"[detk8s] {pod.metadata.name} was recreated: following the new pod")
            elif followed is not None:
                note(f"[detk8s] {pod.metadata.name} restarted ({current[1]}), last exit: "
                     f"{last_exit(pod) or 'unknown'}")  # fmt: skip
            followed = current
            follower = _LogFollower(cluster, pod.metadata.name, kind.container, out)
        if state in TERMINAL:
            if follower is not None:
                follower.finish()
            return state
        if time.monotonic() >= deadline:
            return TIMEOUT
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
