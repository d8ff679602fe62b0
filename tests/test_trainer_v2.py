"""Every run also as a Kubeflow Trainer v2 TrainJob (api: trainer-v2): rendered under detk8s's
versioned runtimes, valid against the v2.3 CRDs and their CEL rules, and the JobSet the
controller would build from them valid against JobSet's CRD, with the pod of the same run on
v1; submitted, watched, logged and deleted against the emulator with the test playing the
Trainer controller; and Paddle's launch wired from what the runtime gives ranks 0 and 1."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s_schema import K8S_VERSION
from kube.emulator import KubeEmulator
from test_cluster_fit import AFFINITY, FIT, add
from test_render import env_of, pod_spec, render
from trainer_v2 import build_jobset, node_pod, validate_v2

from detk8s.labels import JOB_COMPLETION_INDEX, JOBSET_NAME, JOBSET_REPLICATED_JOB

NS = "detection"
SHIPPED = ["L1", "L2", "L3", "L4", "Y1", "Y2", "Y3", "Y4", "U1", "X1", "M1", "S1"]


def runtimes(cli: Any) -> dict[str, dict[str, Any]]:
    r = cli("runtimes")
    assert r.code == 0, r.err
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(r.out) if d}


def as_v2(project: Path, run: str, **extra: Any) -> str:
    name = f"V{run}"
    add(project, name, {"_BASE_": f"{run}.yml", "api": "trainer-v2", **extra})
    return name


def v1_pod(cli: Any, run: str) -> dict[str, Any]:
    """Rank 0's pod spec of the run on v1 (its PaddleJob or PyTorchJob)."""
    return pod_spec(render(cli, run)[1])


def test_runtimes_are_versioned_and_valid(cli: Any) -> None:
    found = runtimes(cli)
    assert sorted(n.rsplit("-", 1)[0] for n in found) == ["detk8s-paddle", "detk8s-torch"]
    for runtime in found.values():
        validate_v2(runtime)
        (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
        # The runtime webhook: the trainer step has one replica and a `node` container.
        assert rjob["replicas"] == 1 and rjob["name"] == "node"
        pod = rjob["template"]["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["containers"]] == ["node"]
        assert pod["automountServiceAccountToken"] is False
    assert runtimes(cli) == found  # the same name for the same content


@pytest.mark.parametrize("run", SHIPPED)
def test_every_shipped_run_renders_a_valid_trainjob(project: Path, cli: Any, run: str) -> None:
    name = as_v2(project, run)
    cm, job = render(cli, name)
    assert job["kind"] == "TrainJob" and cm["kind"] == "ConfigMap"
    validate_v2(job)
    runtime = runtimes(cli)[job["spec"]["runtimeRef"]["name"]]
    for patch in job["spec"]["runtimePatches"]:  # the TrainJob webhook's checks
        assert "/" in patch["manager"]
        spec = patch["trainingRuntimeSpec"]["template"]["spec"]
        for rjob in spec["replicatedJobs"]:
            assert rjob["name"] == "node"
            for c in rjob["template"]["spec"]["template"]["spec"]["containers"]:
                assert c["name"] == "node" and "env" not in c
    jobset = build_jobset(runtime, job)
    validate_v2(jobset)
    pod = node_pod(jobset)
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    # The same pod as on v1: command, GPU limits and requests, /dev/shm, NCCL and storage env,
    # security context, volumes.
    v1_spec = v1_pod(cli, run)
    v1 = v1_spec["containers"][0]
    (node,) = pod["spec"]["containers"]
    assert node["image"] == v1["image"] and node["command"][:2] == v1["command"][:2]
    assert node["resources"] == v1["resources"]
    assert node["securityContext"] == v1["securityContext"]
    v1_env, v2_env = env_of(v1), env_of(node)
    for key in ("NCCL_DEBUG", "NCCL_SOCKET_IFNAME", "DETK8S_STORAGE", "AWS_ACCESS_KEY_ID", "HOME"):
        assert v2_env[key] == v1_env[key]
    assert {m["mountPath"] for m in node["volumeMounts"]} == {
        m["mountPath"] for m in v1["volumeMounts"]
    }
    shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "dshm")
    v1_shm = next(v for v in v1_spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["sizeLimit"] == v1_shm["emptyDir"]["sizeLimit"]
    assert (
        jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"]
        == (job["spec"]["trainer"]["numNodes"])
    )


def test_cluster_fit_keys_reach_the_trainjob(project: Path, cli: Any) -> None:
    name = as_v2(project, "U1", nodes=2, queue="team-a", **FIT)
    _, job = render(cli, name)
    validate_v2(job)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    jobset = build_jobset(runtimes(cli)[job["spec"]["runtimeRef"]["name"]], job)
    validate_v2(jobset)
    pod = node_pod(jobset)
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    spec = pod["spec"]
    assert spec["affinity"] == AFFINITY and spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "trainer"
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "alice@example.com"
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]
    # The runtime mounts no token; the named service account's comes as a projected volume.
    (node,) = spec["containers"]
    token = next(m for m in node["volumeMounts"] if m["name"] == "sa-token")
    assert token["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    # torchrun's env from the torch policy: PET_* (no MASTER_ADDR/RANK as on v1).
    env = env_of(node)
    assert env["PET_NNODES"] == "2" and env["PET_MASTER_ADDR"] == f"{name.lower()}-node-0-0." + (
        name.lower()
    )


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"priority_class": "high"}, "priority_class: a TrainJob cannot set it"),
        ({"scheduling": {"queue": "q"}}, "scheduling: on trainer-v2 gang scheduling"),
        ({"run_policy": {"backoff_limit": 5}}, "run_policy.backoff_limit: on trainer-v2"),
        ({"api": "trainer-v3"}, "api: input should be 'kubeflow-v1' or 'trainer-v2'"),
    ],
)
def test_what_a_trainjob_cannot_set_is_one_line(
    project: Path, cli: Any, extra: dict[str, Any], error: str
) -> None:
    name = as_v2(project, "L1", **extra)
    r = cli("validate", name)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and error in r.err, r.err


def test_the_project_chooses_the_api(project: Path, cli: Any) -> None:
    text = (project / "detk8s.yaml").read_text()
    (project / "detk8s.yaml").write_text(text + "api: trainer-v2\n")
    assert render(cli, "Y4")[1]["kind"] == "TrainJob"
    add(project, "Y9", {"_BASE_": "Y4.yml", "api": "kubeflow-v1"})
    assert render(cli, "Y9")[1]["kind"] == "PaddleJob"


def test_dollar_signs_stay_literal_in_the_trainjob(project: Path, cli: Any) -> None:
    name = as_v2(project, "L1", env={"GREETING": "$(HOME) costs $5"}, extra_args=["-o", "x=$(y)"])
    _, job = render(cli, name)
    env = {e["name"]: e.get("value") for e in job["spec"]["trainer"]["env"]}
    assert env["GREETING"] == "$$(HOME) costs $$5"
    runtime = copy.deepcopy(runtimes(cli)[job["spec"]["runtimeRef"]["name"]])
    # The runtime's own $(...) is the kubelet's expansion of the pod's JobSet name, on purpose.
    master = env_of(node_pod(build_jobset(runtime, job))["spec"]["containers"][0])
    assert master["PADDLE_MASTER"] == "$(DETK8S_JOBSET)-node-0-0.$(DETK8S_JOBSET):36543"


def test_the_cel_rules_are_run(project: Path, cli: Any) -> None:
    _, job = render(cli, as_v2(project, "L1"))
    long = copy.deepcopy(job)
    long["metadata"]["name"] = "a" * 64
    with pytest.raises(AssertionError, match="no more than 63 characters"):
        validate_v2(long)
    runtime = copy.deepcopy(next(iter(runtimes(cli).values())))
    runtime["spec"]["mlPolicy"] = {"torch": {}, "mpi": {}}
    with pytest.raises(AssertionError, match="Only one of the policy can be configured"):
        validate_v2(runtime)


# -- against the emulator, the test playing the Trainer controller ---------------------------------

LOGS = Path(__file__).parent / "data" / "logs"


def install_runtimes(cluster: KubeEmulator, cli: Any) -> None:
    for runtime in runtimes(cli).values():
        cluster.create("clustertrainingruntimes", None, runtime)


def test_submit_needs_the_runtime_then_applies_the_trainjob(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    name = as_v2(project, "Y4")
    r = cli("submit", name)
    assert r.code == 1 and r.err.strip().splitlines()[-1].startswith(
        "error: ClusterTrainingRuntime detk8s-paddle-"
    ) and "detk8s runtimes | kubectl apply -f -" in r.err  # fmt: skip
    assert cluster.get("trainjobs", NS, "vy4") is None
    assert cluster.get("configmaps", NS, "vy4-config") is None
    install_runtimes(cluster, cli)
    r = cli("submit", name)
    assert r.code == 0, r.err
    assert "created trainjobs/vy4" in r.out and f"logs: detk8s logs {name} -f" in r.out
    job = cluster.get("trainjobs", NS, "vy4")
    managers = {e["manager"] for e in job["metadata"]["managedFields"]}
    assert managers == {"detk8s"}
    owner = cluster.get("configmaps", NS, "vy4-config")["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["apiVersion"], owner["uid"]) == (
        "TrainJob", "trainer.kubeflow.org/v1alpha1", job["metadata"]["uid"]
    )  # fmt: skip
    again = cli("submit", name)
    assert again.code == 0 and "unchanged" in again.out and "Created" in again.out


def test_status_logs_and_wait_follow_the_jobset_pods(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    from kube.trainer import Trainer

    install_runtimes(cluster, cli)
    name = as_v2(project, "Y4", nodes=2)
    assert cli("submit", name).code == 0
    trainer = Trainer(cluster, NS)
    old = trainer.start("vy4", attempt=0)
    cluster.set_pod_log(NS, old[0]["metadata"]["name"], "attempt 0 of node 0\n")
    new = trainer.start("vy4", attempt=1)  # JobSet restarted: attempt 0's pods linger
    text = (LOGS / "ppdet_train.log").read_text().splitlines(keepends=True)
    cluster.set_pod_log(NS, new[0]["metadata"]["name"], "".join(text[:5]))
    cluster.set_pod_log(NS, new[1]["metadata"]["name"], "node 1 says hello\n")
    r = cli("status", name, "-o", "json")
    assert r.code == 0, r.err
    (row,) = yaml.safe_load(r.out)
    assert (row["job"], row["state"], row["ready"], row["total"]) == ("trainjobs/vy4", "Running",
                                                                       2, 2)  # fmt: skip
    assert row["progress"] == "epoch 1/80, iter 2/4, loss 3.968, ETA 0:00:02"
    logs = cli("logs", name)
    assert logs.code == 0 and "Epoch: [0] [1/4]" in logs.out and "attempt 0" not in logs.out
    both = cli("logs", name, "--all")
    assert "[node-1] node 1 says hello" in both.out and "attempt 0" not in both.out
    trainer.finish("vy4", failed="FailedJobs", message="jobset failed: job vy4-node-0 failed")
    waited = cli("submit", name, "--wait", "--timeout", "30s")
    assert waited.code == 1
    assert "trainjobs/vy4: Failed" in waited.err
    assert "FailedJobs: jobset failed: job vy4-node-0 failed" in cli("status", name).out


def test_a_run_moved_to_the_other_api_is_replaced_only_when_asked(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    install_runtimes(cluster, cli)
    add(project, "Q1", {"_BASE_": "U1.yml"})
    assert cli("submit", "Q1").code == 0
    add(project, "Q1", {"_BASE_": "U1.yml", "api": "trainer-v2"})
    r = cli("submit", "Q1")
    assert r.code == 1 and "pytorchjobs/q1 exists (the run on another API)" in r.err
    assert cli("submit", "Q1", "--replace").code == 0
    assert cluster.get("pytorchjobs", NS, "q1") is None
    assert cluster.get("trainjobs", NS, "q1") is not None
    deleted = cli("delete", "Q1")
    assert deleted.code == 0 and "deleted trainjobs/q1" in deleted.out
    assert cluster.get("trainjobs", NS, "q1") is None


def test_a_jobset_that_cannot_be_created_shows_in_status(
    cluster: KubeEmulator, project: Path, cli: Any
) -> None:
    install_runtimes(cluster, cli)
    name = as_v2(project, "Y4")
    assert cli("submit", name).code == 0
    message = ("TrainJob resources reconciliation failed: admission webhook denied the request: "
               "JobSet name is too long")  # fmt: skip
    cluster.add_event(NS, "vy4", "TrainJobResourcesCreationFailed", message, kind="TrainJob",
                      component="trainjob-controller")  # fmt: skip
    (row,) = yaml.safe_load(cli("status", name, "-o", "yaml").out)
    assert row["state"] == "Created"
    assert row["reason"] == f"TrainJobResourcesCreationFailed: {message}"


# -- Paddle's launch under detk8s's runtime, for real on this machine ------------------------------

ALL_REDUCE = """
import paddle
import paddle.distributed as dist
dist.init_parallel_env()
x = paddle.to_tensor([float(dist.get_rank() + 1)])
dist.all_reduce(x)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum {float(x.numpy()[0]):g}", flush=True)
"""


def pod_env(runtime: dict[str, Any], trainjob: dict[str, Any], rank: int) -> dict[str, str]:
    """The env a pod of completion index `rank` gets, as the kubelet resolves the runtime's
    downward-API fields and expands its `$(VAR)`s (pod IP: this machine)."""
    pod = node_pod(build_jobset(runtime, trainjob))
    name = trainjob["metadata"]["name"]
    fields = {f"metadata.labels['{JOBSET_REPLICATED_JOB}']": "node",
              f"metadata.annotations['{JOB_COMPLETION_INDEX}']": str(rank),
              f"metadata.labels['{JOBSET_NAME}']": name, "status.podIP": "127.0.0.1"}  # fmt: skip
    env: dict[str, str] = {}
    for e in pod["spec"]["containers"][0]["env"]:
        if "value" in e:
            value = e["value"]
            for var, resolved in env.items():
                value = value.replace(f"$({var})", resolved)
            env[e["name"]] = value.replace("$$", "$")
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def test_paddle_launch_meets_across_two_processes(
    project: Path, cli: Any, tmp_path: Path, free_port: int
) -> None:
    """Ranks 0 and 1 of a 2-node run, as two CPU processes given what the runtime computes:
    rank 0 listens on its pod IP, rank 1 dials node 0's name (which cluster DNS resolves; here
    to this machine), and paddle.distributed.launch forms one world of two."""
    import os
    import subprocess
    import sys

    from detk8s.frameworks import get_adapter
    from detk8s.layout import local_layout
    from detk8s.project import Project
    from detk8s.replica import Replica

    name = as_v2(project, "Y4", nodes=2, gpus=1, lr=0.00125)
    _, job = render(cli, name)
    runtime = runtimes(cli)[job["spec"]["runtimeRef"]["name"]]
    loaded = Project.discover().load_run(name)
    script = tmp_path / "all_reduce.py"
    script.write_text(ALL_REDUCE)
    procs = []
    for rank in (0, 1):
        env = pod_env(runtime, job, rank)
        assert env["PADDLE_MASTER"] == "vy4-node-0-0.vy4:36543" and env["PADDLE_NNODES"] == "2"
        env["PADDLE_MASTER"] = f"127.0.0.1:{free_port}"  # node 0's name, as DNS resolves it
        replica = Replica.from_env(env, dev=tmp_path)  # no GPUs: paddle's CPU launcher
        assert (replica.node_rank, replica.rank0, replica.nnodes) == (rank, rank == 0, 2)
        layout = local_layout(tmp_path / f"node-{rank}", name, python=sys.executable)
        argv = get_adapter("paddledet").train_command(loaded.run, layout, replica, None).argv
        launch = argv[: argv.index("--log_dir") + 2]
        assert launch[3:9] == ["--master", f"127.0.0.1:{free_port}", "--nnodes", "2",
                               "--rank", str(rank)]  # fmt: skip
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE")}
        procs.append(subprocess.Popen([*launch, str(script)], env=clean, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))  # fmt: skip
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = "".join(outs) + "".join(f.read_text() for f in tmp_path.glob("node-*/*/log/*"))
    assert "rank 0 of 2: sum 3" in said and "rank 1 of 2: sum 3" in said, said


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_cluster_without_trainer_v2(cluster: KubeEmulator, project: Path, cli: Any) -> None:
    cluster.uninstall("trainjobs")
    cluster.uninstall("clustertrainingruntimes")
    assert cli("submit", "Y4").code == 0
    r = cli("status")
    assert r.code == 0 and "paddlejobs/y4" in r.out, r.err
    v2 = cli("submit", as_v2(project, "Y4"))
    assert v2.code == 1 and "ClusterTrainingRuntime detk8s-paddle-" in v2.err
