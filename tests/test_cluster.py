"""submit / status / logs / delete against a stateful Kubernetes API on loopback HTTP.

The test plays the Training Operator: it creates the pods with the operator's labels, moves
the job's conditions, serves logs and events. The `kubernetes` client is the real one, talking
HTTP; nothing in it is patched.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube.emulator import KubeEmulator

from detk8s.labels import SPEC_HASH_LABEL

NS = "detection"
KIND = "paddlejobs"


def names(emu: KubeEmulator, plural: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in emu.list(plural, NS))


def wait_until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def add_run(project: Path, name: str, text: str) -> None:
    (project / f"configs/runs/{name}.yml").write_text(text)


def test_submit_creates_configmap_and_job(cluster: KubeEmulator, cli: Any) -> None:
    result = cli("submit", "Y4")
    assert result.code == 0, result.err
    assert result.out.strip() == (
        "Y4: created paddlejobs/y4 in namespace detection; "
        "logs: kubectl logs -n detection -f y4-worker-0"
    )
    job = cluster.get(KIND, NS, "y4")
    cm = cluster.get("configmaps", NS, "y4-config")
    assert (
        job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"]["nvidia.com/gpu"]
        == 2
    )
    assert cm["metadata"]["ownerReferences"] == [
        {"apiVersion": "kubeflow.org/v1", "kind": "PaddleJob", "name": "y4",
         "uid": job["metadata"]["uid"], "blockOwnerDeletion": False}
    ]  # fmt: skip
    assert "base_lr: 0.0025" in cm["data"]["paddledet.yml"]
    assert job["metadata"]["labels"][SPEC_HASH_LABEL] == cm["metadata"]["labels"][SPEC_HASH_LABEL]


def test_submit_twice_creates_no_duplicate(cluster: KubeEmulator, cli: Any) -> None:
    assert cli("submit", "Y4").code == 0
    uid = cluster.get(KIND, NS, "y4")["metadata"]["uid"]
    cluster.set_job_condition(KIND, NS, "y4", "Created")
    again = cli("submit", "Y4")
    assert again.code == 0
    assert again.out.strip() == (
        "Y4: unchanged paddlejobs/y4 in namespace detection: already submitted: Created"
    )
    assert names(cluster, KIND) == ["y4"]
    assert names(cluster, "configmaps") == ["y4-config"]
    assert cluster.get(KIND, NS, "y4")["metadata"]["uid"] == uid  # the same object, applied


def test_changed_spec_is_refused_then_replaced(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    assert cli("submit", "Y4").code == 0
    first = cluster.get(KIND, NS, "y4")
    run = project / "configs/runs/Y4.yml"
    run.write_text(run.read_text().replace("epochs: 80", "epochs: 90"))
    refused = cli("submit", "Y4")
    assert refused.code == 1
    old, new = first["metadata"]["labels"][SPEC_HASH_LABEL], None
    assert refused.err.splitlines()[0].startswith(
        f"error: Y4: paddlejobs/y4 exists with another spec (hash {old}, now "
    )
    assert refused.err.splitlines()[0].endswith("): use --replace to delete and recreate it")
    assert cluster.get(KIND, NS, "y4")["metadata"]["uid"] == first["metadata"]["uid"]
    replaced = cli("submit", "Y4", "--replace")
    assert replaced.code == 0, replaced.err
    assert replaced.out.startswith("Y4: replaced paddlejobs/y4")
    job = cluster.get(KIND, NS, "y4")
    new = job["metadata"]["labels"][SPEC_HASH_LABEL]
    assert new != old and job["metadata"]["uid"] != first["metadata"]["uid"]
    assert "epoch: 90" in cluster.get("configmaps", NS, "y4-config")["data"]["paddledet.yml"]


def test_sweep_with_one_failing_create(cluster: KubeEmulator, cli: Any) -> None:
    cluster.fail(422, times=1, method="PATCH", path=f"/namespaces/{NS}/{KIND}/l[1-4]$",
                 message="admission webhook denied the request")  # fmt: skip
    result = cli("submit", "L*")
    assert result.code == 1
    created = [line.split(":")[0] for line in result.out.splitlines() if ": created " in line]
    (failed_line,) = [line for line in result.err.splitlines() if line.startswith("error: L")]
    failed = failed_line.removeprefix("error: ").split(":")[0]
    assert sorted([*created, failed]) == ["L1", "L2", "L3", "L4"]
    assert "admission webhook denied the request" in failed_line
    assert result.err.splitlines()[-1] == "1 of 4 submission(s) failed"
    assert names(cluster, KIND) == sorted(r.lower() for r in created)
    # Nothing of the failed run is left.
    assert names(cluster, "configmaps") == sorted(f"{r.lower()}-config" for r in created)
    retry = cli("submit", "L*")
    assert retry.code == 0
    assert f"{failed}: created" in retry.out and retry.out.count("unchanged") == 3


def test_a_configmap_that_cannot_be_applied_takes_its_job_back(
    cluster: KubeEmulator, cli: Any
) -> None:
    cluster.fail(422, times=1, method="PATCH", path=f"/namespaces/{NS}/configmaps/l2-config$",
                 message="configmaps is forbidden: exceeded quota")  # fmt: skip
    result = cli("submit", "L1", "L2")
    assert result.code == 1
    assert "exceeded quota" in result.err and "L2" in result.err
    assert names(cluster, KIND) == ["l1"] and names(cluster, "configmaps") == ["l1-config"]
    assert cli("submit", "L1", "L2").code == 0
    assert names(cluster, KIND) == ["l1", "l2"]


@pytest.mark.parametrize("stored_as", ["index", "DONE"])
def test_done_runs_are_skipped_unless_forced(
    cluster: KubeEmulator, cluster_store: Any, cli: Any, stored_as: str
) -> None:
    cluster_store.put("Y3/eval.json", b"{}")
    if stored_as == "index":  # as detk8s exec stores a result
        cluster_store.put("_index/Y3.json", b"{}")
    else:  # as it did before indexes
        cluster_store.put("Y3/DONE", b"")
    cluster_store.put("_index/Y4.json", b"{}")  # an index without the run's objects: not Y4's
    result = cli("submit", "Y3", "Y4")
    assert result.code == 0
    assert "Y3: skipped paddlejobs/y3 in namespace detection: results already stored" in result.out
    assert names(cluster, KIND) == ["y4"]
    assert cli("submit", "Y3", "--force").code == 0
    assert names(cluster, KIND) == ["y3", "y4"]


def test_resubmitting_unchanged_runs_asks_no_storage(
    cluster: KubeEmulator, cluster_store: Any, cli: Any
) -> None:
    """Storage is asked only about runs that would be created: with the bucket gone, an
    unchanged sweep still re-submits cleanly (a new run would get a warning)."""
    assert cli("submit", "L*").code == 0
    cluster_store.client.delete_bucket(Bucket=cluster_store.bucket)
    again = cli("submit", "L*")
    assert again.code == 0 and again.out.count(": unchanged ") == 4
    assert "warning" not in again.err
    new = cli("submit", "Y1")
    assert new.code == 0 and new.err.startswith("warning: cannot check stored results")


def test_a_namespace_that_does_not_exist_is_named(cluster: KubeEmulator, cli: Any) -> None:
    result = cli("submit", "L1", "L2", "-n", "nowhere")
    assert result.code == 1
    for run in ("L1", "L2"):
        assert f"error: {run}: Kubernetes API error 404 in context " in result.err
    assert result.err.count('namespaces "nowhere" not found') == 2


def test_a_sweep_as_its_own_process(
    cluster: KubeEmulator, cluster_store: Any, project: Path
) -> None:
    """As users run it: in a process of its own, without threads, the storage check and half
    the rendering go to forked children (util.Background, SplitMap)."""
    for i in range(24):  # enough runs to split
        add_run(project, f"W{i:03d}", f"_BASE_: ../bases/picodet_s_320.yml\nepochs: {300 + i}\n")
    cluster_store.put("W017/eval.json", b"{}")
    cluster_store.put("_index/W017.json", b"{}")

    def submit(runs: str = "W*") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "detk8s", "submit", runs], cwd=project,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    first = submit()
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created ") == 23 and "W017: skipped " in first.stdout
    assert names(cluster, KIND) == [f"w{i:03d}" for i in range(24) if i != 17]
    for cm in cluster.list("configmaps", NS):  # each run's own manifests, whoever rendered them
        i = int(cm["metadata"]["name"][1:4])
        assert f"epoch: {300 + i}\n" in "".join(cm["data"].values()), cm["metadata"]["name"]
    again = submit()
    assert again.returncode == 0 and again.stdout.count(": unchanged ") == 23, again.stdout
    # No run new: the storage check stops unused, and is asked again for a run whose spec
    # changed, which has its results stored meanwhile.
    add_run(project, "W003", "_BASE_: ../bases/picodet_s_320.yml\nepochs: 999\n")
    cluster_store.put("W003/eval.json", b"{}")
    cluster_store.put("_index/W003.json", b"{}")
    changed = submit("W00*")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "W003: skipped " in changed.stdout and changed.stdout.count(": unchanged ") == 9


def test_dry_runs_persist_nothing(cluster: KubeEmulator, cli: Any) -> None:
    client = cli("submit", "Y4", "--dry-run")
    assert client.code == 0
    assert [d["kind"] for d in yaml.safe_load_all(client.out)] == ["ConfigMap", "PaddleJob"]
    server = cli("submit", "Y4", "--dry-run=server")
    assert server.code == 0, server.err
    assert "validated" in server.out
    assert cluster.requests("PATCH", f"/namespaces/{NS}/{KIND}/y4$")  # the server was asked
    assert names(cluster, KIND) == [] and names(cluster, "configmaps") == []


def operator(emu: KubeEmulator, job: str, script: Callable[[], None]) -> threading.Thread:
    """Plays the Training Operator in the background once the job exists."""

    def run() -> None:
        wait_until(lambda: emu.get(KIND, NS, job))
        script()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_wait_follows_to_success_explaining_pending(cluster: KubeEmulator, cli: Any) -> None:
    def play() -> None:
        cluster.set_job_condition(KIND, NS, "y4", "Created")
        cluster.add_event(NS, "y4-worker-0")  # 0/3 nodes: Insufficient nvidia.com/gpu
        cluster.add_pod(NS, "y4", "worker", 0, phase="Pending", node=None)
        wait_until(
            lambda: cluster.requests("GET", f"/namespaces/{NS}/events")
        )  # read while pending
        cluster.set_pod_phase(NS, "y4-worker-0", "Running")
        cluster.set_job_condition(KIND, NS, "y4", "Running")
        cluster.set_pod_log(NS, "y4-worker-0", "Epoch: [0] [ 0/10] loss: 9.1\n")
        time.sleep(0.3)
        cluster.append_pod_log(NS, "y4-worker-0", "mAP(0.50, integral) = 93.63%\n")
        cluster.set_pod_phase(NS, "y4-worker-0", "Succeeded")
        cluster.set_job_condition(KIND, NS, "y4", "Succeeded")

    t = operator(cluster, "y4", play)
    result = cli("submit", "Y4", "--wait", "--poll", "0.05", "--timeout", "30")
    t.join()
    assert result.code == 0, result.err
    out = result.out.splitlines()
    assert out[1:] == ["Epoch: [0] [ 0/10] loss: 9.1", "mAP(0.50, integral) = 93.63%"]
    assert ("[detk8s] y4-worker-0 is not running: FailedScheduling: 0/3 nodes are available: "
            "3 Insufficient nvidia.com/gpu.") in result.err.splitlines()  # fmt: skip
    assert result.err.splitlines()[-1] == "paddlejobs/y4: Succeeded"


def test_wait_failure_exits_1(cluster: KubeEmulator, cli: Any) -> None:
    def play() -> None:
        cluster.add_pod(NS, "y4", "worker", 0, phase="Running")
        cluster.set_pod_log(NS, "y4-worker-0", "Traceback: CUDA out of memory\n")
        cluster.set_pod_phase(NS, "y4-worker-0", "Failed")
        cluster.set_job_condition(KIND, NS, "y4", "Failed", "PaddleJobFailed", "worker failed")

    t = operator(cluster, "y4", play)
    result = cli("submit", "Y4", "--wait", "--poll", "0.05")
    t.join()
    assert result.code == 1
    assert "Traceback: CUDA out of memory" in result.out
    assert result.err.splitlines()[-1] == "paddlejobs/y4: Failed"


def test_wait_timeout_exits_3(cluster: KubeEmulator, cli: Any) -> None:
    def play() -> None:
        cluster.add_pod(NS, "y4", "worker", 0, phase="Pending", node="gpu-1",
                        waiting_reason="ImagePullBackOff",
                        waiting_message='Back-off pulling image "registry/x:1"')  # fmt: skip

    t = operator(cluster, "y4", play)
    result = cli("submit", "Y4", "--wait", "--poll", "0.05", "--timeout", "0.5")
    t.join()
    assert result.code == 3
    assert ('[detk8s] y4-worker-0 is not running: ImagePullBackOff: Back-off pulling image '
            '"registry/x:1"') in result.err  # fmt: skip
    assert result.err.splitlines()[-1] == "paddlejobs/y4: still running after 0.5 s"


def test_wait_needs_one_run(cluster: KubeEmulator, cli: Any) -> None:
    result = cli("submit", "L1", "L2", "--wait")
    assert result.code == 2
    assert result.err.strip() == "error: --wait follows one run; submit a sweep without --wait"
    assert names(cluster, KIND) == []


@pytest.fixture
def two_node_job(cluster: KubeEmulator, project: Path, cli: Any) -> Iterator[str]:
    add_run(project, "Y5", "_BASE_: ../bases/yolov3_mobilenet_v1.yml\ngpus: 2\nnodes: 2\n"
            "lr: 0.005\n")  # fmt: skip
    assert cli("submit", "Y5").code == 0
    for i in (0, 1):
        cluster.add_pod(NS, "y5", "worker", i, node=f"gpu-{i}")
        cluster.set_pod_log(NS, f"y5-worker-{i}", f"rank {i} line 1\nrank {i} line 2\n")
    cluster.set_job_condition(KIND, NS, "y5", "Running")
    yield "Y5"


def test_logs_of_a_two_replica_job(two_node_job: str, cli: Any) -> None:
    rank0 = cli("logs", two_node_job)
    assert rank0.code == 0
    assert rank0.out.splitlines() == ["rank 0 line 1", "rank 0 line 2"]
    one = cli("logs", two_node_job, "--replica", "worker-1")
    assert one.out.splitlines() == ["rank 1 line 1", "rank 1 line 2"]
    both = cli("logs", two_node_job, "--all")
    assert sorted(both.out.splitlines()) == [
        "[worker-0] rank 0 line 1", "[worker-0] rank 0 line 2",
        "[worker-1] rank 1 line 1", "[worker-1] rank 1 line 2",
    ]  # fmt: skip
    missing = cli("logs", two_node_job, "--replica", "worker-7")
    assert missing.code == 1
    assert missing.err.strip() == (
        "error: no pod of paddlejobs/y5 (worker-7) in namespace detection, and no log stored by "
        "the run (yet)"
    )


def test_logs_follow_all_replicas(two_node_job: str, cluster: KubeEmulator, cli: Any) -> None:
    def finish() -> None:
        time.sleep(0.3)
        for i in (0, 1):
            cluster.append_pod_log(NS, f"y5-worker-{i}", f"rank {i} done\n")
            cluster.set_pod_phase(NS, f"y5-worker-{i}", "Succeeded")

    t = threading.Thread(target=finish)
    t.start()
    result = cli("logs", two_node_job, "--all", "-f")
    t.join()
    assert result.code == 0
    lines = result.out.splitlines()
    assert sorted(lines) == sorted(
        [f"[worker-{i}] rank {i} {w}" for i in (0, 1) for w in ("line 1", "line 2", "done")]
    )
    for i in (0, 1):  # each replica's lines stay in order
        mine = [line for line in lines if line.startswith(f"[worker-{i}]")]
        assert mine[-1] == f"[worker-{i}] rank {i} done"


def test_status_explains_pending(cluster: KubeEmulator, project: Path, cli: Any) -> None:
    assert cli("submit", "Y4", "L1").code == 0
    cluster.set_job_condition(KIND, NS, "y4", "Created")
    cluster.add_pod(NS, "y4", "worker", 0, phase="Pending", node=None)
    cluster.add_event(NS, "y4-worker-0")
    cluster.set_job_condition(KIND, NS, "l1", "Running")
    cluster.add_pod(NS, "l1", "worker", 0, node="gpu-7", restarts=2)
    result = cli("status")
    assert result.code == 0, result.err
    rows = {
        cells[0]: cells[1:]
        for line in result.out.splitlines() if line.startswith("│")
        for cells in [[c.strip() for c in line.split("│")[1:-1]]]
        if cells[0]
    }  # fmt: skip
    assert rows["L1"][:7] == ["paddlejobs/l1", "Running", "1/1", "2", rows["L1"][4], "gpu-7", "1"]
    assert rows["Y4"][:6] == ["paddlejobs/y4", "Created", "0/1", "0", rows["Y4"][4], "-"]
    assert rows["Y4"][6] == "2"
    assert "FailedScheduling: 0/3 nodes are available: 3" in result.out
    only = cli("status", "L1")
    assert "paddlejobs/l1" in only.out and "paddlejobs/y4" not in only.out


def test_retries_429_then_succeeds(cluster: KubeEmulator, cli: Any) -> None:
    cluster.fail(429, times=2, method="PATCH", path=f"/namespaces/{NS}/configmaps/y4-config$",
                 retry_after=0.1)  # fmt: skip
    cluster.fail(503, times=1, method="GET", path=f"/namespaces/{NS}/{KIND}/y4$")
    result = cli("submit", "Y4")
    assert result.code == 0, result.err
    # 2 throttled, then the apply of the ConfigMap owned by the job
    assert len(cluster.requests("PATCH", f"/namespaces/{NS}/configmaps/y4-config$")) == 3
    assert names(cluster, KIND) == ["y4"]


def test_forbidden_is_one_line(cluster: KubeEmulator, cli: Any) -> None:
    cluster.fail(403, times=None, message='paddlejobs.kubeflow.org is forbidden: User "ci" '
                 'cannot list resource "paddlejobs"')  # fmt: skip
    result = cli("status")
    assert result.code == 1
    assert result.err.strip() == (
        "error: forbidden (403) in context 'emu', namespace 'detection': paddlejobs.kubeflow.org "
        'is forbidden: User "ci" cannot list resource "paddlejobs"'
    )


def test_unauthorized_is_one_line(
    cluster: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    bad = cluster.kubeconfig(tmp_path / "bad-kubeconfig", token="expired")
    monkeypatch.setenv("KUBECONFIG", str(bad))
    result = cli("submit", "Y4")
    assert result.code == 1
    err = result.err.strip().splitlines()
    assert err[0].startswith("error: Y4: not authenticated (401) in context 'emu', namespace")
    assert "Traceback" not in result.err


def test_unreachable_server_is_one_line(
    cluster: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    host = cluster.unreachable_host()
    cfg = cluster.kubeconfig(tmp_path / "gone", server=host)
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    result = cli("status")
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: cannot reach the Kubernetes API at {host} (context 'emu'): ")


def test_delete(cluster: KubeEmulator, cli: Any) -> None:
    assert cli("submit", "Y4", "Y3").code == 0
    result = cli("delete", "Y4")
    assert result.code == 0
    assert result.out.strip() == "deleted paddlejobs/y4 in namespace detection"
    assert names(cluster, KIND) == ["y3"]
    assert names(cluster, "configmaps") == ["y3-config"]
    assert cli("delete", "--all").out.strip() == "deleted paddlejobs/y3 in namespace detection"
    assert names(cluster, KIND) == [] and names(cluster, "configmaps") == []
    gone = cli("delete", "Y4")
    assert gone.code == 0 and gone.err.strip() == "Y4: no job y4 in namespace detection"


def test_status_shows_every_row_when_one_cannot_be_read(cluster: KubeEmulator, cli: Any) -> None:
    """One job's pods cannot be listed: its row says why, the other rows still show."""
    assert cli("submit", "Y4", "L1").code == 0
    cluster.set_job_condition(KIND, NS, "l1", "Running")
    cluster.add_pod(NS, "l1", "worker", 0, node="gpu-7")
    cluster.fail(403, times=1, method="GET", path=f"/namespaces/{NS}/pods$",
                 message="pods is forbidden: cannot list")  # fmt: skip
    result = cli("status")
    assert result.code == 0, result.err
    text = " ".join(result.out.replace("│", " ").split())
    assert text.count("cannot read:") == 1 and "forbidden" in text
    assert "paddlejobs/l1" in text and "paddlejobs/y4" in text
