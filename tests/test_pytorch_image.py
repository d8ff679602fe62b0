"""The Dockerfile's pytorch target, built as CI can build it here (the CI base, no trainer
checkouts: those come from GitHub, which this machine cannot reach), runs a rendered ultralytics
job as its pod would: the ConfigMap at /etc/detk8s, the rendered env with the Secret's keys and
what the Training Operator adds for a PyTorchJob Master, results into Ceph RGW; then `detk8s
collect` here reads them back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from k8s_schema import replica_specs
from s3.servers import S3Endpoint
from test_build import CI_BASE, podman, podman_env  # noqa: F401 (fixture)
from test_image_run import DETK8S, as_the_kubelet_runs_it, built_image, image_project_with
from test_ultralytics import operator_env

# No trainer checkouts (GitHub is out of reach); torch and yolov5 from PyPI as the image pins.
CI_PYTORCH_ARGS = [
    "--build-arg", f"BASE_IMAGE={CI_BASE}", "--build-arg", "YOLOX_COMMIT=",
    "--build-arg", "MIEMIEDETECTION_COMMIT=", "--build-arg", "PYTORCH_SSD_COMMIT=",
]  # fmt: skip


@pytest.fixture(scope="module")
def pytorch_image(podman_env: dict[str, str]) -> str:  # noqa: F811 (the fixture)
    return built_image("pytorch", CI_PYTORCH_ARGS)


@pytest.mark.image
def test_the_pytorch_image_has_the_trainers_stack(pytorch_image: str) -> None:
    run = ("run", "--rm", "--entrypoint")
    check = ("import torch, torchvision, yolov5, loguru, pycocotools, tabulate, detk8s; "
             "print(torch.__version__, yolov5.__version__)")  # fmt: skip
    assert podman(*run, "python", pytorch_image, "-c", check).stdout.split()[-2:] == [
        "2.14.1+cu130", "7.0.14"
    ]  # fmt: skip
    user = podman(*run, "sh", pytorch_image, "-c", "id -u; ls /opt/trainers 2>&1 | wc -l")
    assert user.stdout.split() == ["10001", "1"]  # no checkouts: `ls` says so in one line
    worker = "/opt/detk8s/detk8s/frameworks/ssd_eval.py"
    assert podman(*run, "ls", pytorch_image, worker).returncode == 0


@pytest.mark.image
def test_the_pytorch_image_trains_a_rendered_job_into_s3(
    pytorch_image: str, ceph_s3: S3Endpoint, tmp_path: Path
) -> None:
    project = image_project_with(pytorch_image, ceph_s3, tmp_path)
    run = "tiny-yolov5"
    files, job = project.render(run)
    assert job["kind"] == "PyTorchJob"
    pod: dict[str, Any] = replica_specs(job)["Master"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == pytorch_image and container["command"][:2] == ["detk8s", "exec"]
    config_dir = tmp_path / "etc-detk8s"
    config_dir.mkdir()
    for name, content in files.items():
        (config_dir / name).write_text(content)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= operator_env(job, "master", 0)
    env |= {"AWS_ACCESS_KEY_ID": ceph_s3.access_key, "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key}
    args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    result = podman(
        "run", "--rm", "--network", "host", "--hostname", f"{job['metadata']['name']}-master-0",
        *as_the_kubelet_runs_it(pod, tmp_path / "pod"),
        "--volume", f"{config_dir}:/etc/detk8s:ro", *args,
        pytorch_image, *container["command"][2:], check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"[detk8s] {run} done: mAP(0.50) " in result.stdout

    here = {**os.environ, "AWS_ACCESS_KEY_ID": ceph_s3.access_key,
            "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key}  # fmt: skip
    summary = tmp_path / "summary.json"
    collect = subprocess.run([*DETK8S, "collect", run, "-o", str(summary)], cwd=project.root,
                             env=here,
                             capture_output=True, text=True)  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    (row,) = json.loads(summary.read_text())
    record = project.eval_record(run)
    assert row["status"] == "done" and row["mAP"] == record["map50"]
    assert record["framework"] == "ultralytics" and record["image"] == pytorch_image
