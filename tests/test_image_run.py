"""The training image runs a job the way its pod would: the rendered ConfigMap files at
/etc/detk8s, the rendered env and command, results into a real S3 server (Ceph RGW); then
`detk8s collect` on this machine reads them back.

Builds (or finds, by its content tag) the Paddle image from the real Dockerfile on the CI base
with CPU paddle, like tests/test_build.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3.servers import S3Endpoint
from test_build import CI_PADDLE_ARGS, REPO, podman, podman_env  # noqa: F401 (fixture)

from detk8s.datasets.synthetic import make_voc_dataset

RUN = "tiny-picodet"


@pytest.mark.image
@pytest.mark.usefixtures("podman_env")
def test_the_image_trains_a_rendered_job_into_s3(ceph_s3: S3Endpoint, tmp_path: Path) -> None:
    detk8s = [sys.executable, "-m", "detk8s"]
    build = subprocess.run(
        [*detk8s, "--project", str(REPO), "build", "paddledet", "--builder", "podman",
         "--quiet", *CI_PADDLE_ARGS], capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (image,) = [w for w in build.stdout.split() if w.startswith("registry.example.com/")]

    client = ceph_s3.client()
    bucket = ceph_s3.new_bucket("image", client)
    data = make_voc_dataset(tmp_path / "synthetic")
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        client.upload_file(str(f), bucket, f"datasets/synthetic_voc/{f.relative_to(data)}")
    project = tmp_path / "proj"
    shutil.copytree(REPO / "examples/tiny", project, ignore=shutil.ignore_patterns(
        "data", "output", "store", "summary.*", "map.png"))  # fmt: skip
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["storage"] = {"uri": f"s3://{bucket}/runs", "endpoint_url": ceph_s3.url,
                      "secret": "detk8s-s3"}  # fmt: skip
    cfg["defaults"]["image"] = image
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    (project / "datasets/synthetic_voc.yml").write_text(
        f"format: voc\nnum_classes: 2\nsource: s3://{bucket}/datasets/synthetic_voc/\n"
    )

    rendered = subprocess.run([*detk8s, "render", RUN], cwd=project, capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    config_map, job = yaml.safe_load_all(rendered)
    config_dir = tmp_path / "etc-detk8s"
    config_dir.mkdir()
    for name, content in config_map["data"].items():
        (config_dir / name).write_text(content)
    container = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # What the kubelet fills in: the Secret's keys and the downward API's replica labels.
    env |= {"AWS_ACCESS_KEY_ID": ceph_s3.access_key, "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key,
            "DETK8S_REPLICA_TYPE": "worker", "DETK8S_REPLICA_INDEX": "0"}  # fmt: skip
    assert container["command"][:2] == ["detk8s", "exec"]  # = the image's entrypoint
    args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    run = podman(
        "run", "--rm", "--network", "host", "--volume", f"{config_dir}:/etc/detk8s:ro",
        *args, image, *container["command"][2:], check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"[detk8s] {RUN} done: mAP(0.50) " in run.stdout

    env_here = {**os.environ, "AWS_ACCESS_KEY_ID": ceph_s3.access_key,
                "AWS_SECRET_ACCESS_KEY": ceph_s3.secret_key}  # fmt: skip
    summary = tmp_path / "summary.json"
    collect = subprocess.run([*detk8s, "collect", RUN, "-o", str(summary)], cwd=project,
                             env=env_here, capture_output=True, text=True)  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    (row,) = json.loads(summary.read_text())
    record: dict[str, Any] = json.loads(
        client.get_object(Bucket=bucket, Key=f"runs/{RUN}/eval.json")["Body"].read()
    )
    assert row["status"] == "done" and row["mAP"] == record["map50"]
    assert record["image"] == image and record["fps"] > 0
