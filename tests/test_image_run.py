"""The training image runs jobs the way their pods would: the rendered ConfigMap files at
/etc/detk8s, the rendered env and command, results into a real S3 server (Ceph RGW); then
`detk8s collect` on this machine reads them back.

Builds (or finds, by its content tag) the Paddle image from the real Dockerfile on the CI base
with CPU paddle, like tests/test_build.py. The test plays the kubelet and the Training Operator:
it fills in the env they inject (Secret keys, downward API labels, PADDLE_*) and starts one
container per replica.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3.servers import S3Endpoint
from test_build import CI_PADDLE_ARGS, REPO, podman, podman_env  # noqa: F401 (fixture)
from tiny import copy_tiny_project

from detk8s.datasets.synthetic import make_voc_dataset

DETK8S = [sys.executable, "-m", "detk8s"]


def built_image(name: str, args: list[str]) -> str:
    """The repo's image `name` built (or found, by its tag) as CI builds it."""
    build = subprocess.run(
        [*DETK8S, "--project", str(REPO), "build", name, "--builder", "podman", "--quiet", *args],
        capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (image,) = [w for w in build.stdout.split() if w.startswith("registry.example.com/")]
    return image


@pytest.fixture(scope="module")
def paddle_image(podman_env: dict[str, str]) -> str:  # noqa: F811 (the fixture)
    return built_image("paddle", CI_PADDLE_ARGS)


@dataclass
class ImageProject:
    root: Path
    image: str
    ceph: S3Endpoint
    client: Any
    bucket: str

    def render(self, run: str) -> tuple[dict[str, str], dict[str, Any]]:
        """The ConfigMap's files and the PaddleJob of `run`."""
        rendered = subprocess.run([*DETK8S, "render", run], cwd=self.root, capture_output=True,
                                  text=True, check=True).stdout  # fmt: skip
        config_map, job = yaml.safe_load_all(rendered)
        return config_map["data"], job

    def stored(self, run: str) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"runs/{run}/")
        return [o["Key"].removeprefix(f"runs/{run}/") for o in listed.get("Contents", [])]

    def eval_record(self, run: str) -> dict[str, Any]:
        body = self.client.get_object(Bucket=self.bucket, Key=f"runs/{run}/eval.json")["Body"]
        record: dict[str, Any] = json.loads(body.read())
        return record


def image_project_with(image: str, ceph: S3Endpoint, tmp_path: Path) -> ImageProject:
    """examples/tiny whose jobs run `image`, with the synthetic dataset and the results in a
    new bucket of the Ceph server."""
    client = ceph.client()
    bucket = ceph.new_bucket("image", client)
    data = make_voc_dataset(tmp_path / "synthetic")
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        client.upload_file(str(f), bucket, f"datasets/synthetic_voc/{f.relative_to(data)}")
    storage = {"uri": f"s3://{bucket}/runs", "endpoint_url": ceph.url, "secret": "detk8s-s3"}
    root = copy_tiny_project(tmp_path / "proj", storage)
    cfg = yaml.safe_load((root / "detk8s.yaml").read_text())
    cfg["defaults"]["image"] = image
    (root / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    (root / "datasets/synthetic_voc.yml").write_text(
        f"format: voc\nnum_classes: 2\nsource: s3://{bucket}/datasets/synthetic_voc/\n"
    )
    return ImageProject(root, image, ceph, client, bucket)


@pytest.fixture
def image_project(paddle_image: str, ceph_s3: S3Endpoint, tmp_path: Path) -> ImageProject:
    return image_project_with(paddle_image, ceph_s3, tmp_path)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["paddleReplicaSpecs"]["Worker"]
    return spec


def pod_env(job: dict[str, Any], index: int, project: ImageProject) -> dict[str, str]:
    """The container's env as the kubelet sees it: the rendered values, the Secret's keys, the
    downward API's replica labels, and what the Training Operator v1.9 appends for a Worker-only
    PaddleJob (pkg/controller.v1/paddlepaddle/envvar.go)."""
    container = worker(job)["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"AWS_ACCESS_KEY_ID": project.ceph.access_key,
            "AWS_SECRET_ACCESS_KEY": project.ceph.secret_key,
            "DETK8S_REPLICA_TYPE": "worker", "DETK8S_REPLICA_INDEX": str(index)}  # fmt: skip
    name = job["metadata"]["name"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "master"]
    env |= {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": name,
            "PADDLE_NNODES": str(worker(job)["replicas"])}  # fmt: skip
    if index == 0:  # PADDLE_MASTER="$(POD_IP_DUMMY):port", expanded by the kubelet
        env |= {"POD_IP_DUMMY": "127.0.0.1", "PADDLE_MASTER": f"127.0.0.1:{port}"}
    else:
        env["PADDLE_MASTER"] = f"{name}-worker-0:{port}"
    return env


def as_the_kubelet_runs_it(pod: dict[str, Any], scratch: Path) -> list[str]:
    """`podman run` options for what the pod spec asks of the kubelet: its user and group,
    read-only root, dropped capabilities, no privilege escalation, and its emptyDir volumes: a
    directory each under `scratch`, group-owned by fsGroup as the kubelet makes them, and
    /dev/shm in memory."""
    (container,) = pod["containers"]
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    group = pod["securityContext"]["fsGroup"]
    args = ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--group-add", str(group)]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # no tmpfs the pod would not have
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    empty_dirs = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    for mount in container["volumeMounts"]:
        volume = empty_dirs.get(mount["name"])
        if volume is None:
            continue
        if volume.get("medium") == "Memory":
            size = volume.get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
            args += ["--shm-size", size]
            continue
        directory = scratch / f"{pod['containers'][0]['name']}-{mount['name']}"
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, 0, group)
        directory.chmod(0o2775)
        args += ["--volume", f"{directory}:{mount['mountPath']}"]
    return args


def container_run(
    project: ImageProject, files: dict[str, str], job: dict[str, Any], index: int,
    command: list[str], host_aliases: dict[str, str] | None = None,
) -> list[str]:  # fmt: skip
    """`podman run` of replica `index`: host network (the pods' network), its own disk, and its
    pod name resolving to its IP, as the kubelet writes it into a pod's /etc/hosts (gloo looks
    its own host name up)."""
    config_dir = project.root.parent / f"etc-detk8s-{job['metadata']['name']}"
    if not config_dir.is_dir():
        config_dir.mkdir()
        for name, content in files.items():
            (config_dir / name).write_text(content)
    container = worker(job)["template"]["spec"]["containers"][0]
    assert container["image"] == project.image
    assert container["command"][:2] == ["detk8s", "exec"]  # = the image's entrypoint
    env = pod_env(job, index, project)
    args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    hostname = f"{job['metadata']['name']}-worker-{index}"  # the operator's pod name
    hosts = {hostname: "127.0.0.1", **(host_aliases or {})}
    aliases = [f"--add-host={h}:{ip}" for h, ip in hosts.items()]
    pod = worker(job)["template"]["spec"]
    return [
        "run", "--rm", "--network", "host", "--hostname", hostname, *aliases,
        *as_the_kubelet_runs_it(pod, config_dir.parent / f"pod-{hostname}"),
        "--volume", f"{config_dir}:/etc/detk8s:ro", *args,
        project.image, *command[2:],
    ]  # fmt: skip


@pytest.mark.image
def test_the_image_trains_a_rendered_job_into_s3(image_project: ImageProject) -> None:
    run = "tiny-picodet"
    files, job = image_project.render(run)
    container = worker(job)["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    argv = container_run(image_project, files, job, 0, container["command"])
    # A one-node job: the operator's PADDLE_* env is there too, and the plain worker ignores it.
    result = podman(*argv, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"[detk8s] {run} done: mAP(0.50) " in result.stdout

    env_here = {**os.environ, "AWS_ACCESS_KEY_ID": image_project.ceph.access_key,
                "AWS_SECRET_ACCESS_KEY": image_project.ceph.secret_key}  # fmt: skip
    summary = image_project.root.parent / "summary.json"
    collect = subprocess.run([*DETK8S, "collect", run, "-o", str(summary)],
                             cwd=image_project.root, env=env_here, capture_output=True,
                             text=True)  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    (row,) = json.loads(summary.read_text())
    record = image_project.eval_record(run)
    assert row["status"] == "done" and row["mAP"] == record["map50"]
    assert record["image"] == env["DETK8S_IMAGE"] == image_project.image and record["fps"] > 0


@pytest.mark.image
def test_two_nodes_rendezvous_and_only_rank0_stores(image_project: ImageProject) -> None:
    """A 2-node run: two containers, each running the rendered command with exactly the env the
    operator injects, meet at rank 0's PADDLE_MASTER (rank 1 reaches it by the pod name of
    worker-0) and train with world size 2 over gloo on CPU. In a container without GPUs the
    adapter leaves out `--gpus` (paddle's CPU launcher refuses it) and paddle runs one CPU
    process per node."""
    run = "tiny-2n"
    (image_project.root / "runs" / f"{run}.yml").write_text(
        "_BASE_: tiny-picodet.yml\nnodes: 2\nlr: 0.01\n"  # linear scaling: twice the batch
    )
    files, job = image_project.render(run)
    assert worker(job)["replicas"] == 2
    command = worker(job)["template"]["spec"]["containers"][0]["command"]

    replicas = []
    for index in (0, 1):
        aliases = {f"{run}-worker-0": "127.0.0.1"} if index else {}
        argv = container_run(image_project, files, job, index, command, aliases)
        log = (image_project.root.parent / f"replica-{index}.log").open("w")
        replicas.append((subprocess.Popen(["timeout", "600", "podman", *argv], stdout=log,
                                          stderr=subprocess.STDOUT), log))  # fmt: skip
    outs = []
    for proc, log in replicas:
        proc.wait(timeout=700)
        log.close()
        outs.append(Path(log.name).read_text())
    for (proc, _), out in zip(replicas, outs, strict=True):
        assert proc.returncode == 0, out[-4000:]
        assert "replicas 2[2:2]" in out, out[-4000:]  # paddle's launcher saw both nodes
    launch = ("[detk8s] running: python -m paddle.distributed.launch --master 127.0.0.1:36543 "
              "--nnodes 2 --rank 0 --job_id tiny-2n --log_dir /output/tiny-2n/log ")  # fmt: skip
    assert launch in outs[0]
    assert launch.replace("127.0.0.1:", "tiny-2n-worker-0:").replace("rank 0", "rank 1") in outs[1]
    # 8 images, batch 2 per replica, 2 replicas: 2 iterations per epoch (alone it would be 4).
    assert "Epoch: [0] [0/2]" in outs[0] and "Epoch: [0] [0/4]" not in outs[0]
    assert f"[detk8s] {run} done: mAP(0.50) " in outs[0]
    assert "done: mAP" not in outs[1] and "checkpoint" not in outs[1]
    stored = image_project.stored(run)
    assert {"DONE", "eval.json", "train.log", "checkpoints/model_final.json"} <= set(stored)
    record = image_project.eval_record(run)
    assert (record["nodes"], record["gpus"], record["weights"]) == (2, 1, "best_model")
