"""The emulator against the real ``kubernetes`` client, configured from a written kubeconfig."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from .emulator import KubeEmulator

G, V = "kubeflow.org", "v1"
NS = "default"
WORKERS = "training.kubeflow.org/job-name=y4,training.kubeflow.org/replica-type=worker"


def api_client(emu: KubeEmulator, tmp_path: Path, **kwargs: str) -> client.ApiClient:
    path = emu.kubeconfig(tmp_path / "kubeconfig", **kwargs)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    return client.ApiClient(cfg)


def paddlejob(name: str, workers: int = 2, **labels: str) -> dict:
    container = {"name": "paddle", "image": "detk8s:test", "command": ["python"]}
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "PaddleJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "paddleReplicaSpecs": {
                "Worker": {"replicas": workers, "template": {"spec": {"containers": [container]}}}
            }
        },
    }


@pytest.fixture
def core(kube_api: KubeEmulator, tmp_path: Path) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(kube_api, tmp_path))


@pytest.fixture
def custom(kube_api: KubeEmulator, tmp_path: Path) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client(kube_api, tmp_path))


def test_kubeconfig_points_the_default_loader_at_the_emulator(
    kube_api: KubeEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = kube_api.kubeconfig(tmp_path / "kc")
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes reads $KUBECONFIG once, at import: an in-process CLI must pass it explicitly.
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    _, ctx = config.list_kube_config_contexts(config_file=str(path))
    assert ctx["name"] == "emu" and ctx["context"]["namespace"] == "default"
    assert client.Configuration.get_default_copy().host == kube_api.host
    assert client.VersionApi().get_code().git_version == "v1.29.4"  # GET /version/
    auth = kube_api.requests("GET", r"^/version")[0]["headers"]["Authorization"]
    assert auth == "Bearer emu-token"


def test_configmap_create_read_list_patch_delete(core: client.CoreV1Api) -> None:
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="y4-config", labels={"detk8s/run": "y4"}),
        data={"train.yml": "epoch: 80\n"},
    )
    created = core.create_namespaced_config_map(NS, body)  # 201 -> the object, not None
    assert isinstance(created, client.V1ConfigMap)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.namespace == NS and created.data == {"train.yml": "epoch: 80\n"}
    core.create_namespaced_config_map(NS, {"metadata": {"name": "other"}, "data": {}})

    assert core.read_namespaced_config_map("y4-config", NS).metadata.uid == created.metadata.uid
    listed = core.list_namespaced_config_map(NS, label_selector="detk8s/run=y4")
    assert [cm.metadata.name for cm in listed.items] == ["y4-config"]
    assert len(core.list_namespaced_config_map(NS).items) == 2
    assert core.list_namespaced_config_map(NS, label_selector="detk8s/run").items[0].data

    owner = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PaddleJob",
        "name": "y4",
        "uid": "1234",
        "controller": True,
    }
    patched = core.patch_namespaced_config_map(
        "y4-config", NS, {"metadata": {"ownerReferences": [owner]}}
    )
    assert patched.metadata.owner_references[0].uid == "1234"
    assert patched.data == {"train.yml": "epoch: 80\n"}  # a merge, not a replace
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(NS, body)
    assert exc.value.status == 409 and '"reason": "AlreadyExists"' in exc.value.body

    status = core.delete_namespaced_config_map("y4-config", NS)
    status = status if isinstance(status, dict) else status.to_dict()  # a dict from 37 on
    assert status["status"] == "Success"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("y4-config", NS)
    assert exc.value.status == 404 and 'configmaps \\"y4-config\\" not found' in exc.value.body


def test_create_is_validated_like_the_api_server(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    with pytest.raises(ApiException) as exc:  # run names must be lowercased by the CLI
        core.create_namespaced_config_map(NS, {"metadata": {"name": "Y4"}})
    assert exc.value.status == 422 and "RFC 1123" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("training", {"metadata": {"name": "y4"}})
    assert exc.value.status == 404 and 'namespaces \\"training\\" not found' in exc.value.body
    core.create_namespace({"metadata": {"name": "training"}})
    assert core.create_namespaced_config_map("training", {"metadata": {"name": "y4"}})
    names = [n.metadata.name for n in core.list_namespace().items]
    assert names == ["default", "kube-system", "training"]
    core.delete_namespace("training")  # takes its objects along
    assert kube_api.list("configmaps") == []


def test_paddlejob_lifecycle_through_custom_objects(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    args = (G, V, NS, "paddlejobs")
    dry = custom.create_namespaced_custom_object(*args, paddlejob("y4"), dry_run="All")
    assert dry["metadata"]["name"] == "y4" and kube_api.get("paddlejobs", NS, "y4") is None

    job = custom.create_namespaced_custom_object(*args, paddlejob("y4", sweep="lr"))
    assert job["kind"] == "PaddleJob" and job["metadata"]["uid"]
    custom.create_namespaced_custom_object(*args, paddlejob("y3"))
    got = custom.get_namespaced_custom_object(*args, "y4")
    assert got["spec"]["paddleReplicaSpecs"]["Worker"]["replicas"] == 2

    listed = custom.list_namespaced_custom_object(*args, label_selector="sweep=lr")
    assert listed["kind"] == "PaddleJobList" and [j["metadata"]["name"] for j in listed["items"]]
    assert [j["metadata"]["name"] for j in listed["items"]] == ["y4"]
    assert len(custom.list_namespaced_custom_object(*args)["items"]) == 2

    patched = custom.patch_namespaced_custom_object(
        *args, "y4", {"spec": {"runPolicy": {"suspend": True}}, "status": {"ignored": 1}}
    )
    assert patched["spec"]["runPolicy"] == {"suspend": True}
    assert "ignored" not in patched.get("status", {})  # status only through /status
    assert patched["metadata"]["generation"] == 2

    st = custom.patch_namespaced_custom_object_status(
        *args, "y4", {"status": {"conditions": [{"type": "Created", "status": "True"}]}}
    )
    assert st["status"]["conditions"][0]["type"] == "Created"
    assert custom.get_namespaced_custom_object_status(*args, "y4")["status"] == st["status"]

    # A ConfigMap owned by the job goes with it (the garbage collector, at once).
    core.create_namespaced_config_map(
        NS,
        {
            "metadata": {
                "name": "y4-config",
                "ownerReferences": [
                    {
                        "apiVersion": f"{G}/{V}",
                        "kind": "PaddleJob",
                        "name": "y4",
                        "uid": job["metadata"]["uid"],
                    }
                ],
            }
        },
    )
    kube_api.add_pod(NS, "y4", "Worker", 0)
    custom.delete_namespaced_custom_object(*args, "y4", propagation_policy="Background")
    assert kube_api.get("paddlejobs", NS, "y4") is None
    assert kube_api.get("configmaps", NS, "y4-config") is None
    assert kube_api.list("pods", NS) == []
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(*args, "y4")
    assert exc.value.status == 404

    torch = {"apiVersion": f"{G}/{V}", "kind": "PyTorchJob", "metadata": {"name": "u5"}}
    custom.create_namespaced_custom_object(G, V, NS, "pytorchjobs", torch)
    assert custom.get_namespaced_custom_object(G, V, NS, "pytorchjobs", "u5")["kind"] == (
        "PyTorchJob"
    )


def test_pods_filtered_by_the_operators_labels(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    job = custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y3"))
    kube_api.add_pod(NS, "y4", "Master", 0)
    kube_api.add_pod(NS, "y4", "Worker", 0)
    kube_api.add_pod(NS, "y4", "Worker", 1, phase="Pending", waiting_reason="ImagePullBackOff")
    kube_api.add_pod(NS, "y3", "Worker", 0, restarts=2, last_terminated_reason="OOMKilled")

    pods = core.list_namespaced_pod(NS, label_selector=WORKERS).items
    assert [p.metadata.name for p in pods] == ["y4-worker-0", "y4-worker-1"]
    assert pods[0].metadata.owner_references[0].uid == job["metadata"]["uid"]
    assert pods[0].spec.node_name == "gpu-1" and pods[0].status.phase == "Running"
    assert pods[0].metadata.labels["training.kubeflow.org/operator-name"] == (
        "paddlejob-controller"
    )
    waiting = pods[1].status.container_statuses[0].state.waiting
    assert (pods[1].status.phase, waiting.reason) == ("Pending", "ImagePullBackOff")

    master = core.list_namespaced_pod(NS, label_selector="training.kubeflow.org/job-role=master")
    assert [p.metadata.name for p in master.items] == ["y4-master-0"]
    sel = "training.kubeflow.org/job-name in (y3,y4),training.kubeflow.org/replica-index!=0"
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector=sel).items] == [
        "y4-worker-1"
    ]
    y3 = core.read_namespaced_pod("y3-worker-0", NS).status.container_statuses[0]
    assert (y3.restart_count, y3.last_state.terminated.reason) == (2, "OOMKilled")
    unscheduled = kube_api.add_pod(NS, "y3", "Worker", 1, phase="Pending", node=None)
    assert unscheduled["status"]["conditions"][0]["reason"] == "Unschedulable"
    assert len(core.list_pod_for_all_namespaces().items) == 5


def test_job_conditions_follow_the_operator(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    kube_api.set_job_condition("paddlejobs", NS, "y4", "Created")
    kube_api.set_job_condition(
        "PaddleJob", NS, "y4", "Running", replica_statuses={"Worker": {"active": 2}}
    )
    kube_api.set_job_condition(
        "paddlejobs",
        NS,
        "y4",
        "Succeeded",
        replica_statuses={"Worker": {"succeeded": 2}},
    )
    status = custom.get_namespaced_custom_object_status(G, V, NS, "paddlejobs", "y4")["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running", "Succeeded"]
    assert conds["Running"]["status"] == "False" and conds["Succeeded"]["status"] == "True"
    assert conds["Succeeded"]["reason"] == "PaddleJobSucceeded"
    assert conds["Succeeded"]["message"] == "PaddleJob default/y4 successfully completed."
    assert conds["Succeeded"]["lastTransitionTime"].endswith("Z")
    assert status["replicaStatuses"]["Worker"]["succeeded"] == 2
    assert "replica-type=worker" in status["replicaStatuses"]["Worker"]["selector"]
    assert status["startTime"] and status["completionTime"]
    kube_api.set_job_condition("paddlejobs", NS, "y4", "Failed", "X", "late")  # no-op? no:
    # Failed after Succeeded is still appended (the operator only freezes after Failed).
    after = kube_api.get("paddlejobs", NS, "y4")["status"]["conditions"]
    assert after[-1]["type"] == "Failed"
    kube_api.set_job_condition("paddlejobs", NS, "y4", "Running")
    assert kube_api.get("paddlejobs", NS, "y4")["status"]["conditions"] == after


def test_pod_logs_plain_tail_waiting_and_follow(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    kube_api.add_pod(NS, "y4", "Worker", 0)
    kube_api.set_pod_log(NS, "y4-worker-0", "epoch 1\nepoch 2\nmAP(0.50, integral) = 93.63%\n")
    log = core.read_namespaced_pod_log("y4-worker-0", NS)
    assert log.endswith("mAP(0.50, integral) = 93.63%\n")
    assert core.read_namespaced_pod_log("y4-worker-0", NS, tail_lines=1).startswith("mAP")
    assert core.read_namespaced_pod_log("y4-worker-0", NS, container="paddle") == log

    kube_api.add_pod(NS, "y4", "Worker", 1, phase="Pending", waiting_reason="ImagePullBackOff")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("y4-worker-1", NS)
    assert exc.value.status == 400 and "is waiting to start: ImagePullBackOff" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("nope", NS)
    assert exc.value.status == 404

    def trainer() -> None:
        for i in range(3, 6):
            time.sleep(0.05)
            kube_api.append_pod_log(NS, "y4-worker-0", f"epoch {i}\n")
        kube_api.set_pod_phase(NS, "y4-worker-0", "Succeeded")  # ends the stream

    resp = core.read_namespaced_pod_log(
        "y4-worker-0", NS, follow=True, _preload_content=False, _request_timeout=10
    )
    threading.Thread(target=trainer).start()
    lines = [line.decode() for line in resp.stream(amt=None)]
    text = "".join(lines)
    assert text.startswith("epoch 1\n") and text.endswith("epoch 3\nepoch 4\nepoch 5\n")
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_events_by_field_selector(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    kube_api.add_pod(NS, "y4", "Worker", 0, phase="Pending", node=None)
    kube_api.add_event(NS, "y4-worker-0")
    kube_api.add_event(NS, "y4-worker-1", "Scheduled", "Successfully assigned", "Normal")
    kube_api.add_event(NS, "y4", "JobCreated", "created", "Normal", kind="PaddleJob")
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=y4-worker-0")
    assert len(events.items) == 1
    ev = events.items[0]
    assert (ev.reason, ev.type, ev.involved_object.kind) == ("FailedScheduling", "Warning", "Pod")
    assert ev.message == "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert ev.involved_object.uid == kube_api.get("pods", NS, "y4-worker-0")["metadata"]["uid"]
    warnings = core.list_namespaced_event(NS, field_selector="type=Warning,reason!=Scheduled")
    assert [e.involved_object.name for e in warnings.items] == ["y4-worker-0"]
    kinds = core.list_namespaced_event(NS, field_selector="involvedObject.kind=PaddleJob")
    assert [e.reason for e in kinds.items] == ["JobCreated"]


def test_429_is_retried_by_urllib3_for_reads_but_not_for_creates(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}})
    # GET: urllib3's default Retry honours Retry-After on 429/503 for idempotent methods.
    fault = kube_api.fail(429, times=2, method="GET", path="/configmaps/a$", retry_after=0)
    assert core.read_namespaced_config_map("a", NS).metadata.name == "a"
    assert fault.hits == 2
    # POST is not retried: the CLI sees 429 with Retry-After and must back off itself.
    kube_api.fail(429, method="POST", path="/configmaps$", retry_after=3)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "b"}})
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "3"
    assert core.create_namespaced_config_map(NS, {"metadata": {"name": "b"}}).metadata.uid
    assert [r["method"] for r in kube_api.requests(path="/configmaps/?b?$")][-2:] == [
        "POST",
        "POST",
    ]


def test_server_errors_and_delays(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
) -> None:
    kube_api.fail(500, times=1, path="/paddlejobs")
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    assert exc.value.status == 500 and '"reason": "InternalError"' in exc.value.body
    kube_api.fail(503, times=1, method="POST")
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    assert exc.value.status == 503
    # A slow server: urllib3 retries a timed-out GET 3 times before giving up.
    slow = kube_api.fail(None, times=None, delay=0.3, method="GET")
    with pytest.raises(urllib3.exceptions.MaxRetryError) as timeout:
        custom.list_namespaced_custom_object(G, V, NS, "paddlejobs", _request_timeout=(1, 0.1))
    assert isinstance(timeout.value.reason, urllib3.exceptions.ReadTimeoutError)
    assert slow.hits == 4
    kube_api.clear_faults()
    assert custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))


def test_forbidden_and_unauthorized(
    kube_api: KubeEmulator,
    tmp_path: Path,
) -> None:
    custom = client.CustomObjectsApi(api_client(kube_api, tmp_path))
    kube_api.fail(403, times=None)
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    assert exc.value.status == 403
    assert 'cannot create resource \\"paddlejobs\\" in API group \\"kubeflow.org\\"' in (
        exc.value.body
    )
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object(G, V, NS, "pytorchjobs")
    assert exc.value.status == 403
    kube_api.clear_faults()
    assert custom.list_namespaced_custom_object(G, V, NS, "pytorchjobs")["items"] == []

    bad = client.CoreV1Api(api_client(kube_api, tmp_path / "bad", token="wrong"))
    with pytest.raises(ApiException) as exc:
        bad.list_namespaced_pod(NS)
    assert exc.value.status == 401


def test_unreachable_and_missing_crd(
    kube_api: KubeEmulator,
    tmp_path: Path,
) -> None:
    gone = client.CoreV1Api(api_client(kube_api, tmp_path, server=kube_api.unreachable_host()))
    gone.api_client.configuration.retries = 0
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        gone.list_namespaced_pod(NS)

    custom = client.CustomObjectsApi(api_client(kube_api, tmp_path))
    kube_api.uninstall("paddlejobs")  # no Training Operator CRDs on this cluster
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob("y4"))
    assert exc.value.status == 404
    assert "could not find the requested resource" in exc.value.body
    groups = client.ApisApi(custom.api_client).get_api_versions().groups
    assert sorted(g.name for g in groups) == ["kubeflow.org", "trainer.kubeflow.org"]


def test_watch_honours_timeout_and_selectors(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    kube_api.add_pod(NS, "y4", "Worker", 0, phase="Pending")
    kube_api.add_pod(NS, "y3", "Worker", 0)
    start = time.monotonic()
    seen = []
    stream = watch.Watch().stream(
        core.list_namespaced_pod, NS, label_selector=WORKERS, timeout_seconds=1
    )
    for e in stream:  # the operator acts once the watch has started: no race with it
        seen.append((e["type"], e["object"].metadata.name, e["object"].status.phase))
        if len(seen) == 1:
            kube_api.set_pod_phase(NS, "y4-worker-0", "Running")
            kube_api.add_pod(NS, "y4", "Worker", 1)
    assert 0.9 < time.monotonic() - start < 3
    assert seen == [
        ("ADDED", "y4-worker-0", "Pending"),
        ("MODIFIED", "y4-worker-0", "Running"),
        ("ADDED", "y4-worker-1", "Running"),
    ]


def test_helpers_are_thread_safe_under_client_load(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    def operator(i: int) -> None:
        kube_api.add_pod(NS, f"j{i}", "Worker", 0)
        kube_api.add_event(NS, f"j{i}-worker-0", "Pulled", "ok", "Normal")

    with ThreadPoolExecutor(8) as pool:
        readers = [pool.submit(core.list_namespaced_pod, NS) for _ in range(20)]
        list(pool.map(operator, range(40)))
        assert all(r.result() for r in readers)
    assert len(core.list_namespaced_pod(NS).items) == 40
    assert len(core.list_namespaced_event(NS).items) == 40


def test_sweep_of_100_runs_is_fast(
    kube_api: KubeEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """100 ConfigMaps + 100 PaddleJobs, each create then get: serially and on 16 threads."""
    api = api_client(kube_api, tmp_path)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    def submit(run: str) -> None:
        core.create_namespaced_config_map(NS, {"metadata": {"name": run}, "data": {"a": "b"}})
        core.read_namespaced_config_map(run, NS)
        custom.create_namespaced_custom_object(G, V, NS, "paddlejobs", paddlejob(run))
        custom.get_namespaced_custom_object(G, V, NS, "paddlejobs", run)

    start = time.perf_counter()
    for i in range(100):
        submit(f"serial-{i}")
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, [f"threaded-{i}" for i in range(100)]))
    threaded = time.perf_counter() - start
    assert len(kube_api.list("paddlejobs", NS)) == 200
    with capsys.disabled():
        print(f"\n400 requests: serial {serial:.2f} s, 16 threads {threaded:.2f} s")
    assert serial < 5 and threaded < 5


def raw_patch(emu: KubeEmulator, path: str, body: Any, content_type: str) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        emu.host + path,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": content_type, "Authorization": f"Bearer {emu.token}"},
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_patch_flavours_replace_finalizers_and_collection_delete(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    args = (G, V, NS, "paddlejobs")
    custom.create_namespaced_custom_object(*args, paddlejob("y4"))
    ops = [{"op": "replace", "path": "/spec/paddleReplicaSpecs/Worker/replicas", "value": 4}]
    # Raw HTTP: how a client picks the patch content type differs between client versions.
    path = f"/apis/{G}/{V}/namespaces/{NS}/paddlejobs/y4"
    code, job = raw_patch(kube_api, path, ops, "application/json-patch+json")
    assert code == 200 and job["spec"]["paddleReplicaSpecs"]["Worker"]["replicas"] == 4
    # As on a real server: no strategic merge patch for custom resources.
    code, _ = raw_patch(kube_api, path, {"spec": {}}, "application/strategic-merge-patch+json")
    assert code == 415

    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    cm.data = {"k": "2"}
    assert core.replace_namespaced_config_map("a", NS, cm).data == {"k": "2"}
    with pytest.raises(ApiException) as exc:  # stale resourceVersion
        core.replace_namespaced_config_map("a", NS, cm)
    assert exc.value.status == 409

    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "held", "finalizers": ["detk8s/keep"], "labels": {"x": "1"}}}
    )
    core.delete_namespaced_config_map("held", NS)
    assert kube_api.get("configmaps", NS, "held")["metadata"]["deletionTimestamp"]
    core.patch_namespaced_config_map("held", NS, {"metadata": {"finalizers": None}})
    assert kube_api.get("configmaps", NS, "held") is None

    for name in ("b", "c"):
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": {"x": "1"}}})
    core.delete_collection_namespaced_config_map(NS, label_selector="x=1")
    assert [c["metadata"]["name"] for c in kube_api.list("configmaps", NS)] == ["a"]


def test_watch_custom_objects_and_pytorchjob_pods(
    kube_api: KubeEmulator,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    torch = {"apiVersion": f"{G}/{V}", "kind": "PyTorchJob", "metadata": {"name": "u5"}}
    custom.create_namespaced_custom_object(G, V, NS, "pytorchjobs", torch)

    def operator() -> None:
        time.sleep(0.1)
        kube_api.set_job_condition("PyTorchJob", NS, "u5", "Running")
        kube_api.set_job_condition("PyTorchJob", NS, "u5", "Failed", "BackoffLimitExceeded")

    threading.Thread(target=operator).start()
    types = []
    for event in watch.Watch().stream(
        custom.list_namespaced_custom_object, G, V, NS, "pytorchjobs", timeout_seconds=5
    ):
        conds = event["object"].get("status", {}).get("conditions", [])
        types.append(conds[-1]["type"] if conds else None)
        if types[-1] == "Failed":
            break
    assert types == [None, "Running", "Failed"]

    pod = kube_api.add_pod(NS, "u5", "Master", 0, phase="Failed", exit_code=137)
    labels = pod["metadata"]["labels"]
    assert labels["training.kubeflow.org/operator-name"] == "pytorchjob-controller"
    assert labels["training.kubeflow.org/job-role"] == "master"
    read = core.read_namespaced_pod("u5-master-0", NS)
    assert read.spec.containers[0].name == "pytorch"
    assert read.status.container_statuses[0].state.terminated.exit_code == 137
    assert core.read_namespaced_pod_log("u5-master-0", NS) == ""


def test_kmock_reactions_override_the_emulation(
    kube_api: KubeEmulator,
    core: client.CoreV1Api,
) -> None:
    def react() -> None:  # kmock's DSL, on the server loop
        kube_api.api["get /api/v1/namespaces/default/configmaps/canned"] << {
            "kind": "ConfigMap",
            "metadata": {"name": "canned"},
            "data": {"from": "kmock"},
        }

    kube_api.call(react)
    assert core.read_namespaced_config_map("canned", NS).data == {"from": "kmock"}
    assert core.list_namespaced_config_map(NS).items == []  # everything else still emulated


def test_tls_and_a_service_time(tmp_path: Path) -> None:
    """Over TLS (a self-signed certificate the kubeconfig trusts) with 0.2 s per request: a
    client verifies the server, and each request takes at least the service time."""
    with KubeEmulator(tls=True, service_time=0.2) as emu:
        assert emu.host.startswith("https://")
        core = client.CoreV1Api(api_client(emu, tmp_path))
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            listed = list(pool.map(lambda _: core.list_namespaced_pod(NS), range(4)))
        took = time.monotonic() - start
        assert all(r.items == [] for r in listed)
        assert took >= 0.2, took
        insecure = client.Configuration()
        insecure.host, insecure.verify_ssl = emu.host, True
        with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
            client.CoreV1Api(client.ApiClient(insecure)).list_namespaced_pod(NS, _request_timeout=5)
