"""`detk8s build --in-cluster`: a kaniko Job that builds and pushes an image inside the cluster,
for CI machines with no builder. The build context travels in a ConfigMap as a tar.gz of exactly
the files the tag hashes, so the cluster builds what the tag names."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detk8s import yaml_io
from detk8s.credentials import credential_setting
from detk8s.errors import DetkError, UsageError
from detk8s.images.image import ImageBuild
from detk8s.labels import MANAGED_BY_LABEL

if TYPE_CHECKING:
    from detk8s.backends.kubernetes.cluster import Cluster

KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
TEMPLATE = "kaniko-job.yaml.j2"
CONTEXT_DIR = "/workspace"
CONTEXT_FILE = "context.tar.gz"
CONFIGMAP_LIMIT = 1024 * 1024  # what the API server stores in one object, all keys together
IMAGE_LABEL = "detk8s.io/image"
TAG_LABEL = "detk8s.io/image-tag"


class KanikoError(DetkError):
    pass


def job_name(image: ImageBuild) -> str:
    return f"build-{image.name.lower().replace('_', '-')}-{image.tag[:12]}"


def context_tarball(image: ImageBuild) -> bytes:
    """A reproducible tar.gz: sorted names, no owners, mtime 0 (same inputs, same bytes)."""
    with tempfile.TemporaryDirectory(prefix="detk8s-context-") as scratch:
        context = image.context_dir(Path(scratch)).resolve()
        members = {image.dockerfile_in_context: image.dockerfile}
        members |= {rel: context / rel for rel in image.files}
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(members):
                info = tar.gettarinfo(str(members[name]), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(members[name], "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def kaniko_args(image: ImageBuild) -> list[str]:
    for key, value in image.build_args.items():
        if credential_setting(key, value):
            raise UsageError(f"{image.name}: build arg {key} looks like a credential: the Job "
                              "would carry it in plain text; give the build its secrets another "
                              "way (kaniko reads a mounted file)")  # fmt: skip
    args = [
        f"--context=tar://{CONTEXT_DIR}/{CONTEXT_FILE}",
        f"--dockerfile={image.dockerfile_in_context}",
        f"--destination={image.ref}",
        *([f"--target={image.target}"] if image.target else []),
        *(f"--build-arg={k}={v}" for k, v in sorted(image.build_args.items())),
        "--cache=true",  # layers cached in <repository>/cache: unchanged layers are not rebuilt
        "--snapshot-mode=redo",
    ]
    return args


def render_build_job(image: ImageBuild, namespace: str, kaniko_image: str) -> list[dict[str, Any]]:
    """The ConfigMap holding the context, then the kaniko Job."""
    from detk8s.backends.kubernetes.manifests import _environment

    tarball = context_tarball(image)
    if len(tarball) > CONFIGMAP_LIMIT - 4096:
        raise KanikoError(
            f"{image.name}: build context is {len(tarball) // 1024} KiB compressed, more than a "
            "ConfigMap holds (1 MiB); add what the image does not need to .dockerignore"
        )
    labels = {MANAGED_BY_LABEL: "detk8s", IMAGE_LABEL: image.name, TAG_LABEL: image.tag}
    text = (
        _environment()
        .get_template(TEMPLATE)
        .render(
            name=job_name(image),
            namespace=namespace,
            labels=labels,
            context_file=CONTEXT_FILE,
            context_b64=base64.b64encode(tarball).decode(),
            context_dir=CONTEXT_DIR,
            kaniko_image=kaniko_image,
            args=kaniko_args(image),
            registry_secret=image.registry_secret,
        )
    )
    return yaml_io.load_all(text)


def submit_build_job(cluster: Cluster, manifests: list[dict[str, Any]], dry_run: bool) -> str:
    """Creates the ConfigMap and the Job; "created", "exists" (same name = same inputs) or, for
    a server dry run, "validated"."""
    from detk8s.backends.kubernetes.rest import ApiError

    config_map, job = manifests
    ns = cluster.namespace
    for m in manifests:
        m["metadata"]["namespace"] = ns
    query = {"dryRun": "All"} if dry_run else {}
    try:
        cluster.request("POST", cluster.config_maps_path(), query=query, body=config_map)
    except ApiError as e:
        if e.status != 409:
            raise KanikoError(
                f"cannot create configmaps/{config_map['metadata']['name']}: {e.reason}"
            ) from None
    try:
        cluster.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", query=query, body=job)
    except ApiError as e:
        if e.status == 409:
            return "exists"
        raise KanikoError(f"cannot create jobs/{job['metadata']['name']}: {e.reason}") from None
    return "validated" if dry_run else "created"
