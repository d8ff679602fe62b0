"""The emulator's Training Operator (tests/kube/operator.py) against the operator's rules as its
v1.9 source states them, through the real kubernetes client: not against detk8s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kube.emulator import KubeEmulator
from kube.operator import BACKOFF, DEADLINE, Operator

NS = "train"


def job_body(name: str, kind: str = "PaddleJob", replicas: int = 1, **run_policy: Any) -> Any:
    pod = {"spec": {"containers": [{"name": "paddle" if kind == "PaddleJob" else "pytorch",
                                    "image": "x"}]}}  # fmt: skip
    if kind == "PaddleJob":
        specs = {
            "paddleReplicaSpecs": {
                "Worker": {"replicas": replicas, "restartPolicy": "OnFailure", "template": pod}
            }
        }
    else:
        specs = {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": pod},
                "Worker": {"replicas": replicas, "restartPolicy": "OnFailure", "template": pod},
            }
        }
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"runPolicy": {"backoffLimit": 3, **run_policy}, **specs}}  # fmt: skip


@pytest.fixture
def core(kube_api: KubeEmulator, tmp_path: Path) -> Iterator[client.CoreV1Api]:
    kube_api.add_namespace(NS)
    cfg = client.Configuration()
    config.load_kube_config(str(kube_api.kubeconfig(tmp_path / "kc")), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def test_crash_loop_past_the_backoff_limit(kube_api: KubeEmulator, core: Any) -> None:
    kube_api.create("paddlejobs", NS, job_body("j", replicas=2))
    op = Operator(kube_api, NS)
    op.reconcile("j")
    assert sorted(p.metadata.name for p in core.list_namespaced_pod(NS).items) == [
        "j-worker-0", "j-worker-1",
    ]  # fmt: skip
    assert len(core.list_namespaced_service(NS).items) == 2
    op.log("j-worker-0", "epoch 1\n")
    op.crash("j-worker-0", 137, "OOMKilled")  # 1 restart: in place, same pod
    pod = core.read_namespaced_pod("j-worker-0", NS)
    status = pod.status.container_statuses[0]
    assert (status.restart_count, status.state.waiting.reason) == (1, "CrashLoopBackOff")
    assert (status.last_state.terminated.reason, status.last_state.terminated.exit_code) == (
        "OOMKilled", 137
    )  # fmt: skip
    assert core.read_namespaced_pod_log("j-worker-0", NS, previous=True) == "epoch 1\n"
    op.run_again("j-worker-0")
    op.crash("j-worker-0")  # 2: still below backoffLimit 3
    assert kube_api.get("paddlejobs", NS, "j")["status"]["conditions"][-1]["type"] == "Running"
    # Restarts count only on Running pods; the crashed one waits in CrashLoopBackOff (phase
    # Running all along, as under OnFailure) until its third crash.
    op.run_again("j-worker-0")
    op.crash("j-worker-0")
    assert core.list_namespaced_pod(NS).items == []  # every pod and service deleted first
    assert core.list_namespaced_service(NS).items == []
    cond = kube_api.get("paddlejobs", NS, "j")["status"]["conditions"][-1]
    assert (cond["type"], cond["reason"], cond["message"]) == (
        "Failed", "PaddleJobFailed", BACKOFF.format("j")
    )  # fmt: skip
    (event,) = [e for e in core.list_namespaced_event(NS).items if e.involved_object.name == "j"]
    assert (event.type, event.reason, event.message) == ("Normal", "PaddleJobFailed",
                                                         BACKOFF.format("j"))  # fmt: skip
    op.reconcile("j")  # a failed job stays failed: nothing comes back
    assert core.list_namespaced_pod(NS).items == []


def test_restarts_of_pods_not_running_do_not_count(kube_api: KubeEmulator) -> None:
    kube_api.create("paddlejobs", NS, job_body("j", backoffLimit=1))
    op = Operator(kube_api, NS)
    op.reconcile("j")
    kube_api.set_pod_phase(NS, "j-worker-0", "Pending")
    op.crash("j-worker-0")
    assert op.pods("j") != [] and not op.failed(op.job("j"))
    kube_api.set_pod_phase(NS, "j-worker-0", "Running")
    op.reconcile("j")
    assert op.pods("j") == [] and op.failed(op.job("j"))


def test_deadline_deletes_everything_then_fails(kube_api: KubeEmulator) -> None:
    kube_api.create("paddlejobs", NS, job_body("j", activeDeadlineSeconds=60,
                                                cleanPodPolicy="None"))  # fmt: skip
    op = Operator(kube_api, NS)
    op.reconcile("j")
    op.pass_deadline("j")
    assert op.pods("j") == []  # whatever cleanPodPolicy says
    assert op.job("j")["status"]["conditions"][-1]["message"] == DEADLINE.format("j")


def test_a_deleted_pod_comes_back_under_its_name_with_a_new_uid(
    kube_api: KubeEmulator, core: Any
) -> None:
    kube_api.create("paddlejobs", NS, job_body("j"))
    op = Operator(kube_api, NS)
    op.reconcile("j")
    op.log("j-worker-0", "old pod\n")
    first = op.uid("j-worker-0")
    op.evict("j-worker-0")
    assert op.uid("j-worker-0") not in (None, first)
    assert core.read_namespaced_pod_log("j-worker-0", NS) == ""  # a new container's log


def test_pytorch_workers_wait_in_an_init_container(kube_api: KubeEmulator, core: Any) -> None:
    kube_api.create("pytorchjobs", NS, job_body("p", kind="PyTorchJob"))
    op = Operator(kube_api, NS, "pytorchjobs")
    kube_api.add_pod(NS, "p", "master", 0, kind="pytorchjobs", phase="Pending", node=None)
    op.reconcile("p")  # the master is not up: the worker waits for it
    worker = core.read_namespaced_pod("p-worker-0", NS)
    assert [c.name for c in worker.spec.init_containers] == ["init-pytorch"]
    assert worker.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("p-worker-0", NS, container="pytorch")
    assert e.value.status == 400 and "is waiting to start: PodInitializing" in e.value.body
