"""`detk8s render`: every shipped run renders to manifests the cluster accepts, with the numbers
of MISSION.md's run matrix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schema import replica_specs, validate_core, validate_job, validate_pod_templates
from kubelet import container_as_started, kubelet_expand

from detk8s.backends.kubernetes.manifests import render_manifests, spec_hash
from detk8s.frameworks import get_adapter
from detk8s.jobspec import pod_job_spec
from detk8s.labels import RUN_LABEL, SPEC_HASH_LABEL
from detk8s.layout import POD
from detk8s.project import Project
from detk8s.replica import Replica

SHIPPED = ["L1", "L2", "L3", "L4", "Y1", "Y2", "Y3", "Y4"]  # the PaddleDetection matrix
ALL_RUNS = ["L1", "L2", "L3", "L4", "M1", "S1", "U1", "X1", "Y1", "Y2", "Y3", "Y4"]
MATRIX = {  # run: (model, full data?, gpus, batch/GPU, lr, epochs), from MISSION.md
    "L1": ("picodet_s_320", True, 1, 32, 0.08, 300),
    "L2": ("picodet_s_320", True, 2, 32, 0.16, 300),
    "L3": ("picodet_s_320", True, 2, 48, 0.24, 300),
    "L4": ("picodet_s_320", True, 2, 32, 0.16, 600),
    "Y1": ("yolov3_mobilenet_v1", False, 1, 8, 0.00125, 80),
    "Y2": ("yolov3_mobilenet_v1", False, 2, 8, 0.0025, 80),
    "Y3": ("yolov3_mobilenet_v1", True, 1, 8, 0.00125, 80),
    "Y4": ("yolov3_mobilenet_v1", True, 2, 8, 0.0025, 80),
}


def render(cli: Any, *args: str) -> list[dict[str, Any]]:
    result = cli("render", *args)
    assert result.code == 0, result.err
    return [d for d in yaml.safe_load_all(result.out) if d]


def exec_of(c: dict[str, Any]) -> str:
    """The run the container's `detk8s exec` runs: the train command is built in the pod."""
    run: str = c["command"][2]
    assert c["command"] == ["detk8s", "exec", run, "--run-file", "/etc/detk8s/run.json"]
    return run


def train_argv(run: str, replica: Replica | None = None, **overrides: Any) -> list[str]:
    """The train command `detk8s exec` builds in the pod for `replica` (a one-node GPU pod
    unless given)."""
    loaded = Project.discover().load_run(run)
    replica = replica or Replica(gpus=loaded.config.gpus)
    command = get_adapter(loaded.config.framework).train_command(
        loaded.run, POD, replica, overrides.get("resume")
    )
    return command.argv


def pod_spec(job: dict[str, Any], replica: str | None = None) -> dict[str, Any]:
    """The pod spec of `replica` (default: rank 0's, Worker or Master)."""
    replica = replica or ("Master" if job["kind"] == "PyTorchJob" else "Worker")
    spec: dict[str, Any] = replica_specs(job)[replica]["template"]["spec"]
    return spec


def container(job: dict[str, Any], replica: str | None = None) -> dict[str, Any]:
    """The training container of `replica` (default: rank 0's, Worker or Master)."""
    c: dict[str, Any] = pod_spec(job, replica)["containers"][0]
    return c


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or -> valueFrom for env from Secrets and the downward API."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def ppdet_config(cm: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(cm["data"]["paddledet.yml"])
    return cfg


@pytest.mark.parametrize("run", SHIPPED)
def test_shipped_run_renders_valid_manifests(run: str, project: Path, cli: Any) -> None:
    cm, job = render(cli, run)
    assert cm["kind"] == "ConfigMap" and job["kind"] == "PaddleJob"
    validate_core(cm)
    validate_job(job)
    validate_pod_templates(job)
    model, full, gpus, batch, lr, epochs = MATRIX[run]
    cfg = ppdet_config(cm)
    assert (cfg["epoch"], cfg["LearningRate"]["base_lr"]) == (epochs, lr)
    assert cfg["TrainReader"]["batch_size"] == batch
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert cfg["_BASE_"] == [f"/opt/detk8s/configs/paddledet/{model}_voc.yml"]
    assert cfg["TrainDataset"]["anno_path"] == (
        "train.txt" if full else f"/output/{run}/lists/train.txt"
    )
    assert cfg["EvalDataset"]["anno_path"] == "val.txt"
    assert cfg["EvalDataset"]["dataset_dir"] == "/data/mouse_other_voc" + ("" if full else "_1of3")


def test_y4(project: Path, cli: Any) -> None:
    cm, job = render(cli, "Y4")
    assert job["metadata"]["name"] == "y4"
    assert job["metadata"]["labels"][RUN_LABEL] == "Y4"
    worker = replica_specs(job)["Worker"]
    assert worker["replicas"] == 1  # one node
    assert "Master" not in replica_specs(job)  # collective mode
    c = container(job)
    assert c["name"] == "paddle"
    assert c["ports"] == [{"name": "master", "containerPort": 36543}]
    assert exec_of(c) == "Y4"
    assert train_argv("Y4") == [
        "python",
        "-m",
        "paddle.distributed.launch",
        "--gpus",
        "0,1",
        "--log_dir",
        "/output/Y4/log",
        "/opt/detk8s/detk8s/frameworks/paddledet_worker.py",
        "train",
        "--config",
        "/etc/detk8s/paddledet.yml",
        "--eval",
    ]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert c["resources"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": 2}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    env = env_of(c)
    assert {k: env[k] for k in env if k.startswith("NCCL_")} == {
        "NCCL_DEBUG": "WARN",
        "NCCL_IB_DISABLE": "1",
        "NCCL_P2P_DISABLE": "0",
        "NCCL_SOCKET_IFNAME": "eth0",
    }
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "detk8s-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    pod = worker["template"]["spec"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert job["spec"]["runPolicy"] == {
        "backoffLimit": 3,
        "cleanPodPolicy": "Running",
        "ttlSecondsAfterFinished": 604800,
    }
    cfg = ppdet_config(cm)
    assert cfg["TrainDataset"]["dataset_dir"] == "/data/mouse_other_voc"
    assert cfg["TrainDataset"]["anno_path"] == "train.txt"
    # YOLOv3's step schedule follows the run's 80 epochs.
    piecewise = next(s for s in cfg["LearningRate"]["schedulers"] if s["name"] == "PiecewiseDecay")
    assert all(m < 80 for m in piecewise["milestones"])
    assert cm["metadata"]["name"] == "y4-config"
    assert pod["volumes"][0] == {"name": "run-config", "configMap": {"name": "y4-config"}}


def test_l3(project: Path, cli: Any) -> None:
    cm, _ = render(cli, "L3")
    cfg = ppdet_config(cm)
    assert cfg["TrainReader"]["batch_size"] == 48
    assert cfg["LearningRate"]["base_lr"] == 0.24
    assert cfg["epoch"] == 300
    cosine = next(s for s in cfg["LearningRate"]["schedulers"] if s["name"] == "CosineDecay")
    assert cosine["max_epochs"] == 300
    assert train_argv("L3")[3:5] == ["--gpus", "0,1"]
    assert cfg["_BASE_"] == ["/opt/detk8s/configs/paddledet/picodet_s_320_voc.yml"]


def test_l4_cosine_schedule_follows_epochs(project: Path, cli: Any) -> None:
    cm, _ = render(cli, "L4")
    cosine = next(
        s for s in ppdet_config(cm)["LearningRate"]["schedulers"] if s["name"] == "CosineDecay"
    )
    assert cosine["max_epochs"] == 600


def test_one_gpu_runs_without_launcher(project: Path) -> None:
    assert train_argv("Y1") == [
        "python", "/opt/detk8s/detk8s/frameworks/paddledet_worker.py", "train",
        "--config", "/etc/detk8s/paddledet.yml", "--eval",
    ]  # fmt: skip


def test_resume_flags_and_extra_args(project: Path) -> None:
    from detk8s.frameworks.base import Checkpoint

    (project / "configs/runs/Y9.yml").write_text(
        "_BASE_: Y1.yml\nextra_args: ['-o', 'log_iter=5']\n"
    )
    ckpt = Path("/output/Y9/ckpt/paddledet/12.pdparams")
    resume = Checkpoint("12", (ckpt,), ckpt, "resumable", 13)
    assert train_argv("Y9", resume=resume)[2:] == [
        "train", "--config", "/etc/detk8s/paddledet.yml", "--eval",
        "--resume", "/output/Y9/ckpt/paddledet/12", "-o", "log_iter=5",
    ]  # fmt: skip


def test_y1_and_y3_differ_only_in_train_list(project: Path, cli: Any) -> None:
    (cm1, _), (cm3, _) = render(cli, "Y1"), render(cli, "Y3")
    c1, c3 = ppdet_config(cm1), ppdet_config(cm3)
    assert c1["TrainDataset"]["anno_path"] == "/output/Y1/lists/train.txt"
    assert c3["TrainDataset"]["anno_path"] == "train.txt"
    for cfg in (c1, c3):  # same val list and labels: mAP compares
        assert (cfg["EvalDataset"]["anno_path"], cfg["EvalDataset"]["label_list"]) == (
            "val.txt",
            "label_list.txt",
        )


def test_one_third_is_the_first_1943_lines(project: Path) -> None:
    ds = Project.discover().load_dataset("mouse_other_voc_1of3", project)
    assert ds.train_fraction == "1/3"
    assert ds.subset_lines(5828) == 1943
    assert ds.train_size == 1943


def test_multi_node(project: Path, cli: Any) -> None:
    (project / "configs/runs/Y5.yml").write_text(
        "_BASE_: ../bases/yolov3_mobilenet_v1.yml\ngpus: 2\nnodes: 2\nlr: 0.005\n"
    )
    _, job = render(cli, "--strict", "Y5")
    validate_job(job)
    validate_pod_templates(job)
    worker = replica_specs(job)["Worker"]
    assert worker["replicas"] == 2
    assert "Master" not in replica_specs(job)
    c = container(job)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    # Each replica's command is built in its pod from the operator's PADDLE_* env.
    worker1 = Replica.from_env(
        {"PADDLE_MASTER": "y5-worker-0:36543", "PADDLE_NNODES": "2", "PADDLE_JOB_ID": "y5",
         "DETK8S_REPLICA_TYPE": "worker", "DETK8S_RANK0_REPLICA": "worker",
         "DETK8S_REPLICA_INDEX": "1"}, dev=Path("/nonexistent")
    )  # fmt: skip
    assert (worker1.node_rank, worker1.rank0, worker1.gpus) == (1, False, 0)
    gpu_worker1 = dataclasses.replace(worker1, gpus=2)
    assert train_argv("Y5", gpu_worker1)[:15] == [
        "python", "-m", "paddle.distributed.launch", "--gpus", "0,1",
        "--master", "y5-worker-0:36543", "--nnodes", "2", "--rank", "1", "--job_id", "y5",
        "--log_dir", "/output/Y5/log",
    ]  # fmt: skip
    # On a machine without GPUs (paddle's CPU launcher rejects --gpus): one CPU process.
    assert "--gpus" not in train_argv("Y5", worker1)


def test_one_gpu_two_nodes_uses_launcher(project: Path, cli: Any) -> None:
    (project / "configs/runs/Y6.yml").write_text(
        "_BASE_: ../bases/yolov3_mobilenet_v1.yml\ngpus: 1\nnodes: 2\nlr: 0.0025\n"
    )
    render(cli, "--strict", "Y6")
    assert train_argv("Y6")[2:5] == ["paddle.distributed.launch", "--gpus", "0"]


def test_overrides_and_args_reach_the_program_literally(project: Path, cli: Any) -> None:
    evil = "$(rm -rf /)"
    (project / "configs/runs/X1.yml").write_text(
        "_BASE_: ../bases/picodet_s_320.yml\n"
        f"paddledet: {{config: picodet_s_320_voc.yml, "
        f"overrides: {{weights: '{evil}', TrainReader: {{shuffle: false}}}}}}\n"
        f"extra_args: ['-o', 'use_vdl={evil}; echo pwned']\n"
        f"env: {{NOTE: '\"quoted\" `{evil}`'}}\n"
    )
    cm, job = render(cli, "X1")
    c = container(job)
    assert train_argv("X1")[-2:] == ["-o", f"use_vdl={evil}; echo pwned"]
    assert "sh" not in c["command"] and "-c" not in c["command"] and "args" not in c
    # The kubelet reads `$$` as `$`: what reaches the program is the value as written.
    assert kubelet_expand(env_of(c)["NOTE"], {}) == f'"quoted" `{evil}`'
    cfg = ppdet_config(cm)
    assert cfg["weights"] == evil
    assert cfg["TrainReader"] == {"batch_size": 32, "shuffle": False}


def test_no_value_is_expanded_by_the_kubelet(project: Path, cli: Any) -> None:
    """`$(VAR)` in any value a run renders reaches the program as written, never the value of
    VAR (here a Secret's): checked through the kubelet's own expansion rule."""
    hostile = ["$(AWS_SECRET_ACCESS_KEY)", "$$(X)", "a$b", "$(", "$", "$(DETK8S_STORAGE)x"]
    (project / "configs/runs/X4.yml").write_text(yaml.safe_dump({
        "_BASE_": "L1.yml", "model": hostile[0], "extra_args": hostile,
        "env": {f"V{i}": v for i, v in enumerate(hostile)},
        "nccl": {"socket_ifname": "$(AWS_SECRET_ACCESS_KEY)"},
    }))  # fmt: skip
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())  # project values reach env too
    cfg["storage"].update(endpoint_url="http://s3.local/$(AWS_SECRET_ACCESS_KEY)")
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    cm, job = render(cli, "X4")
    started = container_as_started(container(job), {"AWS_SECRET_ACCESS_KEY": "hunter2"})
    assert "hunter2" not in json.dumps(started["command"]) + json.dumps(
        {k: v for k, v in started["env"].items() if k != "AWS_SECRET_ACCESS_KEY"}
    )
    assert [started["env"][f"V{i}"] for i in range(len(hostile))] == hostile
    assert started["env"]["DETK8S_STORAGE"] == "s3://detk8s/runs"
    assert started["env"]["NCCL_SOCKET_IFNAME"] == "$(AWS_SECRET_ACCESS_KEY)"
    assert started["env"]["AWS_ENDPOINT_URL"] == "http://s3.local/$(AWS_SECRET_ACCESS_KEY)"
    assert started["command"] == ["detk8s", "exec", "X4", "--run-file", "/etc/detk8s/run.json"]
    # The rest travels in the ConfigMap, which the kubelet does not expand.
    run = json.loads(cm["data"]["run.json"])["run"]
    assert (run["extra_args"], run["model"]) == (hostile, hostile[0])


def test_scheduling_and_secrets_from_config(project: Path, cli: Any) -> None:
    (project / "configs/runs/X2.yml").write_text(
        "_BASE_: ../bases/picodet_s_320.yml\n"
        "node_selector: {nvidia.com/gpu.product: A100}\n"
        "priority_class: training-high\n"
        "secret_env: {WANDB_API_KEY: {secret: wandb, key: api-key}}\n"
        "nccl: {p2p_disable: true, socket_ifname: null}\n"
        "shm_size: 4Gi\n"
        "run_policy: {active_deadline_seconds: 86400, clean_pod_policy: All}\n"
    )
    _, job = render(cli, "X2")
    validate_job(job)
    validate_pod_templates(job)
    pod = replica_specs(job)["Worker"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["priorityClassName"] == "training-high"
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"priorityClass": "training-high"}
    assert job["spec"]["runPolicy"]["activeDeadlineSeconds"] == 86400
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "All"
    env = env_of(container(job))
    assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}
    assert env["NCCL_P2P_DISABLE"] == "1" and "NCCL_SOCKET_IFNAME" not in env
    assert next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] == "4Gi"


def test_pvc_dataset_is_mounted_read_only(project: Path, cli: Any) -> None:
    (project / "configs/datasets/onpvc.yml").write_text(
        "_BASE_: mouse_other_voc.yml\nsource: pvc://datasets/voc/mouse_other_voc\n"
    )
    (project / "configs/runs/X3.yml").write_text(
        "_BASE_: ../bases/picodet_s_320.yml\ndataset: onpvc\n"
    )
    _, job = render(cli, "X3")
    validate_pod_templates(job)
    pod = replica_specs(job)["Worker"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert mount == {
        "name": "data",
        "mountPath": "/data/onpvc",
        "readOnly": True,
        "subPath": "voc/mouse_other_voc",
    }


def test_no_secret_value_in_manifests(project: Path, cli: Any) -> None:
    out = cli("render", "--all").out
    assert "secretKeyRef" in out
    for doc in yaml.safe_load_all(out):
        for c in [] if doc["kind"] == "ConfigMap" else [container(doc)]:
            for e in c["env"]:
                assert "SECRET" not in e["name"] or "valueFrom" in e


def test_render_all_and_output_dir(project: Path, cli: Any) -> None:
    docs = render(cli, "--all")
    jobs = {d["metadata"]["labels"][RUN_LABEL]: d["kind"] for d in docs if d["kind"] != "ConfigMap"}
    assert jobs == {
        **dict.fromkeys(SHIPPED, "PaddleJob"),
        **dict.fromkeys(["M1", "S1", "U1", "X1"], "PyTorchJob"),
    }
    assert list(jobs) == ALL_RUNS
    result = cli("render", "L1", "L2", "-o", "out")
    assert result.code == 0 and result.out == ""
    assert sorted(p.name for p in (project / "out").iterdir()) == ["L1.yaml", "L2.yaml"]
    assert [d["kind"] for d in yaml.safe_load_all((project / "out/L2.yaml").read_text())] == [
        "ConfigMap",
        "PaddleJob",
    ]


def test_glob_selection(project: Path, cli: Any) -> None:
    docs = render(cli, "Y*", "L1")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "PaddleJob"] == [
        "y1",
        "y2",
        "y3",
        "y4",
        "l1",
    ]


def test_spec_hash_is_stable_and_tracks_changes(project: Path, cli: Any) -> None:
    first = render(cli, "Y4")[1]["metadata"]["labels"][SPEC_HASH_LABEL]
    assert render(cli, "Y4")[1]["metadata"]["labels"][SPEC_HASH_LABEL] == first
    run = project / "configs/runs/Y4.yml"
    run.write_text(run.read_text().replace("epochs: 80", "epochs: 81"))
    assert render(cli, "Y4")[1]["metadata"]["labels"][SPEC_HASH_LABEL] != first


def test_hash_covers_everything_but_itself(project: Path) -> None:
    p = Project.discover()
    manifests = render_manifests(pod_job_spec(p.load_run("L1"), p.settings))
    digest = manifests[1]["metadata"]["labels"].pop(SPEC_HASH_LABEL)
    manifests[0]["metadata"]["labels"].pop(SPEC_HASH_LABEL)
    assert spec_hash(manifests) == digest


def test_pytorchjob_template(project: Path) -> None:
    """The PyTorchJob template (for the torchrun frameworks to come) against its CRD."""
    p = Project.discover()
    spec = dataclasses.replace(
        pod_job_spec(p.load_run("Y4"), p.settings), kind="PyTorchJob", nodes=3
    )
    _, job = render_manifests(spec)
    validate_job(job)
    validate_pod_templates(job)
    specs = replica_specs(job)
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)
    assert job["spec"]["nprocPerNode"] == "2"
    c = container(job, "Master")
    assert (c["name"], c["ports"]) == (
        "pytorch",
        [{"name": "pytorchjob-port", "containerPort": 23456}],
    )


def test_linear_scaling_warning_and_strict(project: Path, cli: Any) -> None:
    run = project / "configs/runs/L2.yml"
    run.write_text(run.read_text().replace("lr: 0.16", "lr: 0.1"))
    line = (
        "configs/runs/L2.yml: lr: 0.1 breaks the linear scaling rule: expected 0.16 for total "
        "batch 64 (32/GPU x 2 GPUs x 1 node), as picodet_s_320.yml has lr 0.08 for total batch 32"
    )
    result = cli("render", "L2")
    assert result.code == 0 and result.err.strip() == f"warning: {line}"
    result = cli("validate", "--strict")
    assert result.code == 2 and result.err.strip() == f"error: {line}"


def test_shipped_runs_pass_strict(project: Path, cli: Any) -> None:
    result = cli("validate", "--strict")
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.splitlines()[-1] == f"{len(ALL_RUNS)} run(s) valid: {', '.join(ALL_RUNS)}"


def test_runs_table(project: Path, cli: Any) -> None:
    result = cli("runs")
    assert result.code == 0
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in result.out.splitlines()
        if line.startswith("│")
    }
    assert list(rows) == ALL_RUNS
    assert rows["L3"] == [
        "paddledet",
        "picodet_s_320",
        "2 x 1",
        "48",
        "96",
        "0.24",
        "300",
        "mouse_other_voc",
        "5,828",
    ]
    assert rows["Y2"][-2:] == ["mouse_other_voc_1of3", "1,943 (1/3)"]


def test_schema_accepts_shipped_files_and_rejects_unknown_keys(project: Path, cli: Any) -> None:
    import jsonschema

    result = cli("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert "_BASE_" in schema["properties"] and "paddledet" in schema["properties"]
    assert schema["properties"]["framework"]["enum"] == ["paddledet", "ssd", "ultralytics", "yolox"]
    assert schema["properties"]["dataset"]["enum"] == [
        "mouse_other_voc", "mouse_other_voc_1of3"
    ]  # fmt: skip
    assert "model_config" not in schema["properties"]
    for f in [*(project / "configs/runs").glob("*.yml"), *(project / "configs/bases").glob("*")]:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError, match="'gpu' was unexpected"):
        jsonschema.validate({"gpu": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gpus": 0}, schema)


# Values as a run file may write them: the schema and `detk8s validate` agree on each.
AS_WRITTEN = [
    ("gpus: 2", True), ('gpus: "2"', False), ("gpus: 2.5", False), ("nodes: true", False),
    ("lr: 1e-3", True), ("lr: 1", True), ('lr: "0.01"', False), ("eval: false", True),
    ('eval: "no"', False), ("dataset: mouse_other_voc_1of3", True), ("dataset: coco", False),
    ("framework: mmdet", False), ("gpus: 0", False), ("shm_size: 8Gi", True),
    ("tolerations: [{key: gpu, operator: Exists}]", True), ("tolerations: gpu", False),
    ("labels: {team: vision}", True), ("labels: {team: 1}", False),
]  # fmt: skip


def test_schema_and_validate_agree_on_values_as_written(project: Path, cli: Any) -> None:
    import jsonschema

    from detk8s import yaml_io

    schema = json.loads(cli("schema").out)
    base = "_BASE_: ../bases/yolov3_mobilenet_v1.yml\n"
    for line, valid in AS_WRITTEN:
        dataset = "" if line.startswith("dataset:") else "dataset: mouse_other_voc\n"
        (project / "configs/runs/Q1.yml").write_text(base + dataset + line + "\n")
        data = yaml_io.load(line, yaml_io.StrictLoader)  # as detk8s and YAML 1.2 editors read it
        result = cli("validate", "Q1")
        assert (result.code == 0) == valid, (line, result.err)
        assert jsonschema.Draft202012Validator(schema).is_valid(data) == valid, line


def test_validators_reject_what_the_cluster_would(project: Path) -> None:
    """The schema checks above are not vacuous: each catches a real mistake."""
    import jsonschema
    import kubernetes_validate

    p = Project.discover()
    _, job = render_manifests(pod_job_spec(p.load_run("Y4"), p.settings))
    typo = json.loads(json.dumps(job))
    typo["spec"]["paddleReplicaSpecs"]["Worker"]["replica"] = 2  # pruned by the API server
    with pytest.raises(AssertionError, match=r"\.spec\.paddleReplicaSpecs\.Worker\.replica"):
        validate_job(typo)
    wrong = json.loads(json.dumps(job))
    wrong["spec"]["runPolicy"]["backoffLimit"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        validate_job(wrong)
    bad_pod = json.loads(json.dumps(job))
    container(bad_pod)["securityContext"]["allowPrivilegeEscalaton"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod_templates(bad_pod)


def test_epoch_counted_settings_follow_the_run(project: Path, cli: Any) -> None:
    """YOLOv3's mixup stops at ~93% of training and PicoDet switches assigners after a third,
    whatever the run's epochs (the model configs say 250/270 and 100/300)."""
    y4, l4 = ppdet_config(render(cli, "Y4")[0]), ppdet_config(render(cli, "L4")[0])
    assert y4["TrainReader"] == {"batch_size": 8, "mixup_epoch": 74}
    assert l4["PicoHeadV2"] == {"static_assigner_epoch": 200}
