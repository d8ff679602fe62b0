"""When a job fails on a cluster, the user still sees why: detk8s against the emulator's
Training Operator (tests/kube/operator.py), which deletes every pod at the backoff limit,
recreates deleted pods under their names, and keeps PyTorch workers in an init container."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kube.emulator import KubeEmulator
from kube.operator import BACKOFF, DEADLINE, Operator
from test_cluster import wait_until

from detk8s.project import Project
from detk8s.runner.logsync import LogSync

NS = "detection"


def in_background(play: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=play, daemon=True)
    t.start()
    return t


def flat(table: str) -> str:
    """A rich table's text as one line: cell borders gone, whitespace collapsed."""
    return " ".join(table.replace("│", " ").split())


def store_log(project: Path, tmp_path: Path, run: str, replica: str, text: str) -> None:
    """What `detk8s exec` in the pod does while it trains: its log into the run's storage."""
    log = tmp_path / f"{run}-{replica}.log"
    log.write_text(text)
    LogSync(Project.discover(project).storage(), run, replica, log).flush()


def test_crash_loop_past_the_backoff_limit(
    cluster: KubeEmulator, project: Path, tmp_path: Path, cli: Any
) -> None:
    assert cli("submit", "Y4").code == 0
    op = Operator(cluster, NS)
    op.reconcile("y4")
    op.log("y4-worker-0", "Epoch: [0] loss 3.2\nTraceback: CUDA error: out of memory\n")
    store_log(project, tmp_path, "Y4", "worker-0",
              "[detk8s] train list: ...\nEpoch: [0] loss 3.2\nTraceback: CUDA error\n")  # fmt: skip
    op.crash("y4-worker-0", 137, "OOMKilled")
    status = cli("status", "Y4")
    assert status.code == 0, status.err
    assert "y4-worker-0 restarted 1x, last exit OOMKilled (exit 137)" in flat(status.out)
    for _ in range(2):
        op.run_again("y4-worker-0")
        op.crash("y4-worker-0")
    assert op.pods("y4") == [] and op.failed(op.job("y4"))

    logs = cli("logs", "Y4")  # no pod left: the log the run stored
    assert logs.code == 0, logs.err
    assert logs.out.splitlines()[-1] == "Traceback: CUDA error"
    assert logs.err.strip() == (
        "[detk8s] no pod of paddlejobs/y4 (worker-0) in namespace detection: the log "
        "worker-0 stored while it ran follows"
    )
    status = flat(cli("status", "Y4").out)
    assert "Failed 0/1 0" in status and f"PaddleJobFailed: {BACKOFF.format('y4')}" in status
    wait = cli("submit", "Y4", "--wait", "--poll", "0.05")  # unchanged job: follows it
    assert wait.code == 1
    assert (f"[detk8s] paddlejobs/y4: Failed: PaddleJobFailed: {BACKOFF.format('y4')}"
            in wait.err.splitlines())  # fmt: skip
    assert wait.err.splitlines()[-1] == "paddlejobs/y4: Failed"


def test_deadline_reached(cluster: KubeEmulator, project: Path, cli: Any) -> None:
    (project / "configs/runs/Y9.yml").write_text(
        "_BASE_: Y4.yml\nrun_policy: {active_deadline_seconds: 3600}\n"
    )
    assert cli("submit", "Y9").code == 0
    op = Operator(cluster, NS)
    op.reconcile("y9")
    op.pass_deadline("y9")
    status = flat(cli("status", "Y9").out)
    assert "Failed 0/1 0" in status and DEADLINE.format("y9") in status


def test_no_pod_and_nothing_stored_is_one_line(cluster: KubeEmulator, cli: Any) -> None:
    assert cli("submit", "Y4").code == 0
    result = cli("logs", "Y4")
    assert result.code == 1
    assert result.err.strip() == (
        "error: no pod of paddlejobs/y4 (worker-0) in namespace detection, and no log stored "
        "by the run (yet)"
    )


def test_wait_follows_a_pod_recreated_under_its_name(cluster: KubeEmulator, cli: Any) -> None:
    op = Operator(cluster, NS)

    def play() -> None:
        wait_until(lambda: cluster.get("paddlejobs", NS, "y4"))
        op.reconcile("y4")
        op.log("y4-worker-0", "first pod: epoch 0\n")
        time.sleep(0.4)
        op.evict("y4-worker-0")  # preempted: the operator makes it again
        op.log("y4-worker-0", "second pod: epoch 0 again\n")
        time.sleep(0.4)
        op.log("y4-worker-0", "second pod: done\n")
        cluster.set_pod_phase(NS, "y4-worker-0", "Succeeded")
        cluster.set_job_condition("paddlejobs", NS, "y4", "Succeeded")

    t = in_background(play)
    result = cli("submit", "Y4", "--wait", "--poll", "0.05", "--timeout", "30")
    t.join()
    assert result.code == 0, result.err
    out = result.out.splitlines()
    assert out[1:] == ["first pod: epoch 0", "second pod: epoch 0 again", "second pod: done"]
    assert "[detk8s] y4-worker-0 was recreated: following the new pod" in result.err


def test_wait_shows_restarts_with_their_exit(cluster: KubeEmulator, cli: Any) -> None:
    op = Operator(cluster, NS)

    def followed(times: int) -> Callable[[], bool]:  # --wait asked for the log `times` times
        return lambda: (
            len(cluster.requests("GET", f"/namespaces/{NS}/pods/y4-worker-0/log")) >= times
        )

    def play() -> None:
        wait_until(lambda: cluster.get("paddlejobs", NS, "y4"))
        op.reconcile("y4")
        op.log("y4-worker-0", "try 1\n")
        wait_until(followed(1))
        op.crash("y4-worker-0", 137, "OOMKilled")
        op.run_again("y4-worker-0")
        wait_until(followed(2))  # it follows the restarted container
        op.log("y4-worker-0", "try 2\n")
        cluster.set_pod_phase(NS, "y4-worker-0", "Succeeded")
        cluster.set_job_condition("paddlejobs", NS, "y4", "Succeeded")

    t = in_background(play)
    result = cli("submit", "Y4", "--wait", "--poll", "0.05", "--timeout", "30")
    t.join()
    assert result.code == 0, result.err
    assert result.out.splitlines()[1:] == ["try 1", "try 2"]
    assert "[detk8s] y4-worker-0 restarted (1), last exit: OOMKilled (exit 137)" in result.err


def test_logs_all_with_a_replica_still_starting(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    (project / "configs/runs/U2.yml").write_text("_BASE_: U1.yml\nnodes: 2\n")
    assert cli("submit", "U2").code == 0
    op = Operator(cluster, NS, "pytorchjobs")
    cluster.add_pod(NS, "u2", "master", 0, kind="pytorchjobs", phase="Pending", node=None)
    op.reconcile("u2")  # the worker waits for the master in init-pytorch
    cluster.set_pod_phase(NS, "u2-master-0", "Running")
    cluster.patch("pods", NS, "u2-master-0", {"status": {"containerStatuses": [
        {"name": "pytorch", "ready": True, "restartCount": 0, "image": "x", "imageID": "x",
         "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}]}},
        subresource="status")  # fmt: skip
    op.log("u2-master-0", "master line 1\nmaster line 2\n")
    for args in (["--all"], ["--all", "-f"]):
        if "-f" in args:
            in_background(lambda: (time.sleep(0.3), cluster.close_pod_log(NS, "u2-master-0")))
        result = cli("logs", "U2", *args)
        assert result.code == 0, result.err
        assert sorted(result.out.splitlines()) == [
            "[master-0] master line 1", "[master-0] master line 2",
            "[worker-0] (no log yet: PodInitializing)",
        ]  # fmt: skip


def test_pods_of_an_older_job_of_the_same_name_are_ignored(cluster: KubeEmulator, cli: Any) -> None:
    """After --replace, the old job's pod may linger in its grace period under the same name
    and labels: it is not the new job's."""
    assert cli("submit", "Y4").code == 0
    stale = cluster.add_pod(NS, "y4", "worker", 0)
    owner = {**stale["metadata"]["ownerReferences"][0], "uid": "uid-of-the-replaced-job"}
    cluster.patch("pods", NS, "y4-worker-0", {"metadata": {"ownerReferences": [owner]}})
    cluster.set_pod_log(NS, "y4-worker-0", "the old job's log\n")
    result = cli("logs", "Y4")
    assert result.code == 1 and "the old job's log" not in result.out
    assert "no pod of paddlejobs/y4" in result.err
