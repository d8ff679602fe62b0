"""Fitting the clusters people run: Kueue queues, Volcano gang scheduling, labels, annotations,
pull secrets, service accounts and affinity on CRD-valid jobs; submission by server-side apply
(field manager detk8s) against the emulator, conflicts with kubectl edits reported; the
namespace and kubeconfig as kubectl picks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from k8s_schema import replica_specs, validate_job, validate_pod_templates
from kube.emulator import KubeEmulator, ResourceSpec
from test_render import container, render

NS = "detection"
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A100"]}]}]}}}  # fmt: skip
FIT = {
    "labels": {"team": "vision", "example.com/cost-center": "cv-42"},
    "annotations": {"example.com/owner": "alice@example.com"},
    "image_pull_secrets": ["regcred"],
    "service_account": "trainer",
    "affinity": AFFINITY,
}
WORKLOAD = ResourceSpec("kueue.x-k8s.io", "v1beta1", "workloads", "Workload")


def add(project: Path, name: str, run: dict[str, Any]) -> None:
    (project / "configs/runs" / f"{name}.yml").write_text(yaml.safe_dump(run))


def pods(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["template"] for spec in replica_specs(job).values()]


def test_kueue_run_renders_a_suspended_queued_job(project: Path, cli: Any) -> None:
    add(project, "Q1", {"_BASE_": "U1.yml", "nodes": 2, "queue": "team-a", **FIT})
    _, job = render(cli, "Q1")
    validate_job(job)
    validate_pod_templates(job)
    meta = job["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert meta["labels"]["team"] == "vision" and meta["annotations"] == FIT["annotations"]
    assert job["spec"]["runPolicy"]["suspend"] is True
    assert len(pods(job)) == 2  # Master and Worker
    for template in pods(job):
        labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]
        assert labels["example.com/cost-center"] == "cv-42"
        assert "kueue.x-k8s.io/queue-name" not in labels  # Kueue queues the job, not each pod
        assert annotations == {**FIT["annotations"], "sidecar.istio.io/inject": "false"}
        spec = template["spec"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["serviceAccountName"] == "trainer" and spec["affinity"] == AFFINITY
        assert "schedulerName" not in spec


def test_volcano_run_is_gang_scheduled(project: Path, cli: Any) -> None:
    add(project, "V1", {"_BASE_": "L1.yml", "nodes": 2, "lr": 0.16, "sidecars": True,
                        "scheduling": {"queue": "research", "priority_class": "high",
                                       "timeout_seconds": 600}})  # fmt: skip
    _, job = render(cli, "V1")
    validate_job(job)
    validate_pod_templates(job)
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {
        "minAvailable": 2, "queue": "research", "priorityClass": "high",
        "scheduleTimeoutSeconds": 600,
    }  # fmt: skip
    (template,) = pods(job)
    assert template["spec"]["schedulerName"] == "volcano"
    assert "annotations" not in template["metadata"]  # sidecars: true, no opt-out


def test_bad_fit_values_are_one_line(project: Path, cli: Any) -> None:
    cases = {
        "queue: team-a\nscheduling: {queue: q}\n": "two queueing layers",
        "scheduling: {min_available: 3}\n": "scheduling.min_available 3 is more than",
        "labels: {detk8s.io/run: other}\n": "labels: detk8s.io/run is set by detk8s",
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "{nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Near}]}]}}}\n": (
            "affinity: nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
            "nodeSelectorTerms.0.matchExpressions.0.operator: 'Near' is not one of"
        ),
        "affinity: {nodeAffinity: {prefered: []}}\n": "affinity: nodeAffinity: Additional",
        "image_pull_secrets: [Reg_Cred]\n": "image_pull_secrets.0: 'Reg_Cred' is not a valid",
    }
    for text, expected in cases.items():
        (project / "configs/runs/B1.yml").write_text(f"_BASE_: L1.yml\nnodes: 2\nlr: 0.16\n{text}")
        r = cli("validate", "B1")
        assert r.code == 2 and r.err.count("\n") == 1, r.err
        assert r.err.startswith("error: configs/runs/B1.yml: ") and expected in r.err, r.err


def manager_of(obj: dict[str, Any]) -> dict[str, str]:
    return {e["manager"]: e["operation"] for e in obj["metadata"].get("managedFields") or []}


def test_submit_applies_server_side_and_reports_conflicts(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    add(project, "Q1", {"_BASE_": "U1.yml", "queue": "team-a", **FIT})
    r = cli("submit", "Q1")
    assert r.code == 0, r.err
    job = cluster.get("pytorchjobs", NS, "q1")
    assert manager_of(job) == {"detk8s": "Apply"}
    assert manager_of(cluster.get("configmaps", NS, "q1-config")) == {"detk8s": "Apply"}
    assert cluster.get("configmaps", NS, "q1-config")["metadata"]["ownerReferences"][0]["uid"] \
        == job["metadata"]["uid"]  # fmt: skip

    # `kubectl edit` changes a field detk8s sets: the next submit reports it, changes nothing
    cluster.patch("pytorchjobs", NS, "q1", {"spec": {"runPolicy": {"backoffLimit": 9}}},
                  manager="kubectl-edit")  # fmt: skip
    assert manager_of(cluster.get("pytorchjobs", NS, "q1")) == {
        "detk8s": "Apply",
        "kubectl-edit": "Update",
    }
    # Nothing of ours changed: not applied again (a conflict would refuse it), but said.
    again = cli("submit", "Q1")
    assert again.code == 0, again.err
    assert "its spec was also changed by kubectl-edit (--force-conflicts" in again.out
    assert cluster.get("pytorchjobs", NS, "q1")["spec"]["runPolicy"]["backoffLimit"] == 9
    forced = cli("submit", "Q1", "--force-conflicts")
    assert forced.code == 0, forced.err
    job = cluster.get("pytorchjobs", NS, "q1")
    assert job["spec"]["runPolicy"]["backoffLimit"] == 3 and manager_of(job) == {
        "detk8s": "Apply"
    }  # fmt: skip
    # Kueue admitting the job (unsuspending it) is expected: a re-submit says nothing of it.
    cluster.patch("pytorchjobs", NS, "q1", {"spec": {"runPolicy": {"suspend": False}}},
                  manager="kueue-admission")  # fmt: skip
    admitted = cli("submit", "Q1")
    assert admitted.code == 0 and "unchanged" in admitted.out and "also" not in admitted.out


def test_status_says_queued_in_kueue_and_why(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    cluster.call(cluster.api.declare, WORKLOAD)
    add(project, "Q1", {"_BASE_": "U1.yml", "queue": "team-a"})
    assert cli("submit", "Q1").code == 0
    job = cluster.get("pytorchjobs", NS, "q1")
    cluster.create("workloads", NS, {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": "pytorchjob-q1-1a2b3", "ownerReferences": [
            {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "q1",
             "uid": job["metadata"]["uid"]}]},
        "status": {"conditions": [{
            "type": "QuotaReserved", "status": "False", "reason": "Pending",
            "lastTransitionTime": "2026-12-01T10:00:00Z",
            "message": "couldn't assign flavors to pod set master: insufficient unused quota "
                       "for nvidia.com/gpu in flavor a100, 2 more needed"}]},
    })  # fmt: skip
    r = cli("status")
    assert r.code == 0, r.err
    text = " ".join(r.out.replace("│", " ").split())
    assert "queued (Kueue)" in text and "insufficient unused quota for nvidia.com/gpu" in text
    cluster.patch("pytorchjobs", NS, "q1", {"spec": {"runPolicy": {"suspend": False}}})
    cluster.set_job_condition("pytorchjobs", NS, "q1", "Running")  # admitted
    text = " ".join(cli("status").out.replace("│", " ").split())
    assert "Running" in text and "Kueue" not in text


def test_namespace_as_kubectl_picks_it(
    cluster: KubeEmulator, project: Path, cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """-n, then the run's, then the project's, then the kubeconfig context's; and --kubeconfig
    instead of $KUBECONFIG."""
    for ns in ("team-a", "team-b", "ctx-ns"):
        cluster.add_namespace(ns)
    add(project, "N1", {"_BASE_": "Y4.yml", "namespace": "team-a"})
    assert cli("submit", "N1").code == 0
    assert cluster.get("paddlejobs", "team-a", "n1") is not None
    assert cli("submit", "Y4", "-n", "team-b").code == 0
    assert cluster.get("paddlejobs", "team-b", "y4") is not None
    assert cli("delete", "N1").out.strip() == "deleted paddlejobs/n1 in namespace team-a"

    kubeconfig = cluster.kubeconfig(tmp_path / "explicit", namespace="ctx-ns")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["namespace"] = None  # nothing in the project: the context's namespace
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("submit", "Y3", "--kubeconfig", str(kubeconfig))
    assert r.code == 0, r.err
    assert cluster.get("paddlejobs", "ctx-ns", "y3") is not None
    assert "namespace" not in render(cli, "Y3")[1]["metadata"]  # kubectl apply picks it too


def test_the_image_container_carries_no_kueue_label(project: Path, cli: Any) -> None:
    add(project, "Q1", {"_BASE_": "U1.yml", "queue": "team-a"})
    cm, job = render(cli, "Q1")
    assert "kueue.x-k8s.io/queue-name" not in cm["metadata"]["labels"]
    assert container(job)["name"] == "pytorch"


def test_a_missing_image_stops_submit_before_any_job(
    cluster: KubeEmulator, project: Path, cli: Any, monkeypatch: Any
) -> None:
    from registry import FakeRegistry

    FakeRegistry.has_everything = False  # the registry has none of the runs' images
    r = cli("submit", "Y4")
    assert r.code == 1 and r.err.count("\n") == 1, r.err
    assert r.err.startswith("error: image 127.0.0.1:")
    assert r.err.rstrip().endswith("is not in its registry: detk8s build --push, or submit --build")
    assert cluster.list("paddlejobs", NS) == []
    monkeypatch.setenv("PATH", str(project))  # --build builds first: here, with no builder
    built = cli("submit", "Y4", "--build")
    assert built.code == 1 and "no image builder" in built.err
    assert cluster.list("paddlejobs", NS) == []
    FakeRegistry.has_everything = True  # pushed meanwhile
    assert cli("submit", "Y4").code == 0
