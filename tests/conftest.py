from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _own_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the user's ~/.cache (collect's ETag cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped project (detk8s.yaml + configs/) to change freely; cwd is its root."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(REPO / "detk8s.yaml", root)
    shutil.copytree(REPO / "configs", root / "configs")
    monkeypatch.chdir(root)
    monkeypatch.delenv("DETK8S_PROJECT", raising=False)
    return root


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Runs `detk8s ARGS` in-process, as `main()` would, and returns exit code, stdout, stderr."""
    from detk8s.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# The Kubernetes API emulator (tests/kube/emulator.py) for every test that asks for `kube_api`.
from kube.emulator import KubeEmulator, kube_api  # noqa: E402, F401

NS = "detection"  # the shipped project's namespace


# Real S3 servers on loopback (tests/s3/servers.py): moto_s3, ceph_s3, s3_endpoint, s3_bucket.
# A container registry on loopback (tests/registry.py).
from registry import FakeRegistry, registry  # noqa: E402, F401
from s3.servers import S3Endpoint, ceph_s3, moto_s3, s3_bucket, s3_endpoint  # noqa: E402, F401


@pytest.fixture
def cluster(
    kube_api: KubeEmulator,  # noqa: F811 (the fixture)
    moto_s3: S3Endpoint,  # noqa: F811 (the fixture)
    registry: str,  # noqa: F811 (the fixture)
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> KubeEmulator:
    """The shipped project pointed at the emulator (namespace `detection`), a bucket of moto's
    S3 server (a pod cannot use this machine's disk; `cluster_store` reads it) and a registry
    that has every image (`FakeRegistry.has_everything = False` to take them away)."""
    import yaml

    FakeRegistry.has_everything = True
    kube_api.add_namespace(NS)
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    bucket = moto_s3.new_bucket("cluster")
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["storage"] = {"uri": f"s3://{bucket}/runs", "endpoint_url": moto_s3.url,
                      "region": moto_s3.region, "secret": "detk8s-s3"}  # fmt: skip
    for image in cfg["images"].values():
        image["repository"] = image["repository"].replace("registry.example.com", registry)
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    return kube_api


@pytest.fixture
def cluster_store(cluster: KubeEmulator, project: Path) -> Any:
    """The storage of the `cluster` project, as its pods would write to it."""
    from detk8s.project import Project

    return Project.discover(project).storage()
