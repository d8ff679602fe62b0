"""`detk8s build`: content tags, real podman builds, the registry check, the in-cluster Job.

Builds are real (podman, set up by .ci/podman-setup.sh); no test skips for want of podman: a
machine without it fails them with a message saying how to set it up.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schema import validate_core
from kube.emulator import KubeEmulator, ResourceSpec
from registry import FakeRegistry

from detk8s.config.schema import ImageConfig
from detk8s.images.context import DockerIgnore, copy_sources
from detk8s.images.image import image_build
from detk8s.images.staged import WHEEL, staged_files

REPO = Path(__file__).resolve().parent.parent
PODMAN_ROOT = Path(os.environ.get("PODMAN_ROOT", "/var/tmp/detk8s-podman"))
BASE = "localhost/debian-base:bookworm"  # from .ci/podman-setup.sh; no registry needed
CI_BASE = "localhost/ci-base:bookworm"
CI_PADDLE_ARGS = [
    "--build-arg",
    f"BASE_IMAGE={CI_BASE}",
    "--build-arg",
    "PADDLE=paddlepaddle==2.6.2",
]

TINY_DOCKERFILE = f"""\
ARG BASE_IMAGE={BASE}
FROM ${{BASE_IMAGE}}
COPY app /app
COPY top.txt /top.txt
CMD ["cat", "/app/hello.txt"]
"""


def tiny_context(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "hello.txt").write_text("hello\n")
    (root / "app" / "cache.pyc").write_bytes(b"junk")
    (root / "top.txt").write_text("top\n")
    (root / "notes.md").write_text("not copied by the Dockerfile\n")
    (root / "Dockerfile").write_text(TINY_DOCKERFILE)
    (root / ".dockerignore").write_text("**/*.pyc\n")
    return root


def tag(ctx: Path, **args: str) -> str:
    config = ImageConfig(repository="r/t", dockerfile="Dockerfile", context=ctx.name)
    return image_build("t", config, ctx.parent, args).tag


# -- the tag ---------------------------------------------------------------------------------


def test_same_inputs_same_tag_anywhere(tmp_path: Path) -> None:
    a = tiny_context(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    os.utime(b / "top.txt", (0, 0))  # mtimes are not inputs
    assert tag(a) == tag(a) == tag(b)
    assert len(tag(a)) == 16 and int(tag(a), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        lambda c: (c / "app" / "hello.txt").write_text("changed\n"),
        lambda c: (c / "app" / "new.txt").write_text("new\n"),
        lambda c: (c / "app" / "hello.txt").unlink(),
        lambda c: (c / "top.txt").chmod(0o755),
        lambda c: (c / "Dockerfile").write_text(TINY_DOCKERFILE + "ENV X=1\n"),
    ],
    ids=["content", "added", "removed", "mode", "dockerfile"],
)
def test_any_input_change_new_tag(tmp_path: Path, change: Any) -> None:
    ctx = tiny_context(tmp_path)
    before = tag(ctx)
    change(ctx)
    assert tag(ctx) != before


def test_build_args_are_inputs(tmp_path: Path) -> None:
    ctx = tiny_context(tmp_path)
    assert tag(ctx, PADDLE="a") != tag(ctx, PADDLE="b") != tag(ctx)
    assert tag(ctx, A="1", B="2") == tag(ctx, B="2", A="1")


def test_ignored_and_uncopied_files_do_not_change_the_tag(tmp_path: Path) -> None:
    ctx = tiny_context(tmp_path)
    before = tag(ctx)
    (ctx / "app" / "cache.pyc").write_bytes(b"other junk")  # .dockerignored
    (ctx / "app" / "more.pyc").write_bytes(b"more")
    (ctx / "notes.md").write_text("edited\n")  # in the context, not copied
    (ctx / "unrelated").mkdir()
    (ctx / "unrelated" / "x").write_text("x")
    assert tag(ctx) == before
    (ctx / ".dockerignore").write_text("**/*.pyc\napp/hello.txt\n")
    assert tag(ctx) != before  # ignoring a copied file changes what goes in


def test_dockerignore_follows_docker_not_gitignore() -> None:
    ign = DockerIgnore(["# comment", "tests", "/out/", "**/__pycache__", "*.md", "!README.md"])
    assert ign.excluded("tests/test_x.py")  # a matched dir excludes everything in it
    assert not ign.excluded("pkg/tests/x.py")  # anchored at the root, unlike gitignore
    assert ign.excluded("out/a") and ign.excluded("a/b/__pycache__/m.pyc")
    assert ign.excluded("NOTES.md") and not ign.excluded("README.md")
    assert not ign.excluded("docs/NOTES.md")  # `*` stays within one segment
    assert ign.prunes("tests") and not ign.prunes("pkg")


def test_copy_sources_from_the_dockerfile() -> None:
    text = (
        "FROM x AS a\n# COPY nope /\nCOPY --chown=1:1 a b \\\n  /dst/\n"
        'ADD ["c d", "/e"]\nCOPY --from=a /x /y\nADD https://example.com/f /f\nRUN echo\n'
    )
    assert copy_sources(text) == ["a", "b", "c d"]
    assert copy_sources("FROM x\nCOPY $SRC /x\n") is None  # cannot tell: the whole context
    assert copy_sources("FROM x\nRUN --mount=type=bind,target=/s make\n") is None
    assert copy_sources("FROM x\nRUN --mount=type=cache,target=/c make\n") == []


def test_detk8s_images_are_built_from_a_staged_context(project: Path) -> None:
    files = staged_files(project)
    assert {"Dockerfile", "requirements/requirements-paddle.txt", WHEEL} <= set(files)
    assert "configs/paddledet/picodet_s_320_voc.yml" in files
    assert b"boto3" in files["requirements/detk8s.txt"]  # type: ignore[operator]
    assert not [f for f in files if f.startswith(("tests/", "detk8s/", ".git"))]
    # everything the Dockerfile copies is staged
    text = (REPO / "Dockerfile").read_text()
    for src in copy_sources(text) or []:
        assert any(f == src.rstrip("/") or f.startswith(src) for f in files), src


def test_the_project_configs_go_in_over_detk8s_own(project: Path) -> None:
    from detk8s.config.schema import ImageConfig as Cfg

    def paddle_tag() -> str:
        return image_build("paddle", Cfg(repository="r/p", target="paddle"), project).tag

    before = paddle_tag()
    ours = project / "configs/paddledet/picodet_s_320_voc.yml"
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_text("# the project's own\n")
    assert staged_files(project)["configs/paddledet/picodet_s_320_voc.yml"] == ours
    assert paddle_tag() != before
    pytorch = image_build("pytorch", Cfg(repository="r/p", target="pytorch"), project).tag
    assert pytorch != paddle_tag()  # the target is an input


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "error", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the project's images, render and CLI -----------------------------------------------------


def project_image(project: Path, name: str, **config: Any) -> None:
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["images"] = {name: config}
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))


def test_render_names_the_content_tag(project: Path, cli: Any) -> None:
    config = ImageConfig(repository="registry.example.com/detk8s/paddle", target="paddle")
    expected = image_build("paddle", config, project).ref
    out = cli("render", "Y4").out
    assert f"image: {expected}\n" in out
    dry = cli("build", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines()[0] == f"paddle: {expected}"


def test_a_run_naming_the_repository_gets_the_tag_too(project: Path, cli: Any) -> None:
    (project / "configs/runs/Y4.yml").write_text(
        (project / "configs/runs/Y4.yml").read_text()
        + "image: registry.example.com/detk8s/paddle\n"
    )
    auto = cli("render", "Y3").out.split("image: registry.example.com/detk8s/paddle:")[1][:16]
    named = cli("render", "Y4").out.split("image: registry.example.com/detk8s/paddle:")[1][:16]
    assert auto == named
    (project / "configs/runs/Y4.yml").write_text("_BASE_: ../bases/yolov3_mobilenet_v1.yml\n"
                                                 "dataset: mouse_other_voc\ngpus: 1\n"
                                                 "batch_size: 8\nlr: 0.00125\nepochs: 80\n"
                                                 "image: my.registry/custom:v1\n")  # fmt: skip
    assert "image: my.registry/custom:v1\n" in cli("render", "Y4").out


def test_build_errors_are_one_line(project: Path, cli: Any) -> None:
    r = cli("build", "nope")
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "no image 'nope'" in r.err
    r = cli("build", "paddle", "--build-arg", "NOEQUALS")
    assert r.code == 2 and "expected KEY=VALUE" in r.err
    r = cli("build", "--builder", "nerdctl", "--dry-run")
    assert r.code == 1 and "unknown builder 'nerdctl'" in r.err
    project_image(project, "paddle", repository="r/p", context=".", dockerfile="Missing")
    r = cli("build")
    assert r.code == 2 and "Missing" in r.err and "Traceback" not in r.err


def test_no_builder_is_one_line(project: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(project))  # neither docker nor podman
    r = cli("build")
    assert r.code == 1
    assert r.err.startswith("error: no image builder: docker: not on PATH; podman: not on PATH")


def test_secret_build_args_are_masked(project: Path, cli: Any) -> None:
    r = cli("build", "--dry-run", "--build-arg", "PIP_TOKEN=hunter2", "--build-arg", "A=b")
    assert r.code == 0, r.err
    assert "hunter2" not in r.out and "--build-arg=PIP_TOKEN=***" in r.out
    assert "--build-arg=A=b" in r.out


# -- real builds with podman -----------------------------------------------------------------


@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    """podman configured as .ci/podman-setup.sh left it; fails (never skips) without it."""
    env_file = PODMAN_ROOT / "env.sh"
    if not os.environ.get("CONTAINERS_STORAGE_CONF") and env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value.strip('"')
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run `bash .ci/podman-setup.sh` (CI does, in .ci/run)")
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        pytest.fail(f"{BASE} is missing: run `bash .ci/podman-setup.sh` first")
    return dict(os.environ)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def tiny_project(project: Path, podman_env: dict[str, str]) -> Iterator[tuple[Path, str]]:
    """The project with one tiny image whose context is the project; its images removed after."""
    tiny_context(project / "img")
    repo = f"localhost/detk8s-test-{uuid.uuid4().hex[:8]}"
    project_image(project, "paddle", repository=repo, context="img", dockerfile="Dockerfile")
    yield project, repo
    tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout
    for ref in tags.split():
        podman("rmi", "-f", ref, check=False)
    podman("image", "prune", "-f", check=False)


def test_build_then_skip_when_present(tiny_project: tuple[Path, str], cli: Any) -> None:
    project, repo = tiny_project
    first = cli("build", "--builder", "podman")
    assert first.code == 0, first.err
    ref = first.out.strip().removeprefix("paddle: built ")
    assert ref.startswith(f"{repo}:") and "STEP 2/4: COPY app /app" in first.err
    assert podman("run", "--rm", ref).stdout == "hello\n"
    assert f"image: {ref}\n" in cli("render", "Y4").out  # what the job names is what was built

    again = cli("build", "--builder", "podman")
    assert again.code == 0 and again.out == f"paddle: {ref} exists locally: nothing to build\n"
    assert "STEP" not in again.err

    (project / "img" / "notes.md").write_text("ignored: not copied\n")
    assert "exists locally" in cli("build", "--builder", "podman").out
    (project / "img" / "app" / "hello.txt").write_text("hello again\n")
    changed = cli("build", "--builder", "podman", "-q")
    assert changed.code == 0, changed.err
    new_ref = changed.out.strip().removeprefix("paddle: built ")
    assert new_ref != ref and podman("run", "--rm", new_ref).stdout == "hello again\n"
    assert "Using cache" not in changed.err and "STEP 1/4" in changed.err  # -q: steps only


def test_failed_build_ends_with_the_builders_last_lines(
    tiny_project: tuple[Path, str], cli: Any
) -> None:
    project, _ = tiny_project
    dockerfile = project / "img" / "Dockerfile"
    dockerfile.write_text(TINY_DOCKERFILE + "RUN echo about to fail && exit 7\n")
    r = cli("build", "--builder", "podman", "--quiet")
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert lines[-1].startswith("error: paddle: podman build failed at step 5/5: RUN echo")
    assert lines[-1].endswith("(exit code 7)") or "exit code" in lines[-1]
    assert any(line == "about to fail" for line in lines[:-1])
    assert "Traceback" not in r.err


# -- the registry check -------------------------------------------------------------------------


def test_manifest_exists_against_a_v2_registry(registry: str) -> None:
    from detk8s.images.registry import ImageRef, manifest_exists

    FakeRegistry.manifests.add("/v2/team/img/manifests/abc")
    assert manifest_exists(f"{registry}/team/img:abc").exists is True
    assert manifest_exists(f"{registry}/team/img:other").exists is False
    gone = manifest_exists("127.0.0.1:9/team/img:abc", timeout=2)
    assert gone.exists is None and "cannot reach registry 127.0.0.1:9" in gone.detail
    assert ImageRef.parse("ubuntu:22.04") == ImageRef("docker.io", "library/ubuntu", "22.04")
    assert ImageRef.parse("localhost:5000/a/b") == ImageRef("localhost:5000", "a/b", "latest")


def test_build_skips_what_the_registry_has(
    project: Path, cli: Any, registry: str, podman_env: dict[str, str]
) -> None:
    tiny_context(project / "img")
    repo = f"{registry}/detk8s/tiny"
    project_image(project, "paddle", repository=repo, context="img", dockerfile="Dockerfile")
    ref = cli("build", "--dry-run").out.splitlines()[0].removeprefix("paddle: ")
    FakeRegistry.manifests.add(f"/v2/detk8s/tiny/manifests/{ref.rsplit(':', 1)[1]}")
    for args in (["build", "--builder", "podman"], ["build", "--builder", "podman", "--push"]):
        r = cli(*args)
        assert r.code == 0, r.err
        assert r.out == f"paddle: {ref} exists in the registry: nothing to build or push\n"
    assert podman("image", "exists", ref, check=False).returncode == 1  # nothing was built
    assert FakeRegistry.seen.count(f"/v2/detk8s/tiny/manifests/{ref.rsplit(':', 1)[1]}") >= 2


# -- in-cluster builds (kaniko) -----------------------------------------------------------------


def test_in_cluster_job_validates_and_carries_the_hashed_context(project: Path, cli: Any) -> None:
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["images"]["paddle"] = {
        "repository": "registry.example.com/detk8s/paddle",
        "registry_secret": "regcred",
        "build_args": {"PADDLE": "paddlepaddle-gpu==2.6.2"},
    }
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("build", "paddle", "--in-cluster")
    assert r.code == 0, r.err
    config_map, job = yaml.safe_load_all(r.out)
    for manifest in (config_map, job):
        validate_core(manifest)
    ref = cli("build", "paddle", "--dry-run").out.splitlines()[0].removeprefix("paddle: ")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert f"--destination={ref}" in container["args"]
    assert "--build-arg=PADDLE=paddlepaddle-gpu==2.6.2" in container["args"]
    assert job["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"] == "regcred"
    tarball = base64.b64decode(config_map["binaryData"]["context.tar.gz"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tarball))) as tar:
        names = tar.getnames()
    assert names == list(staged_files(project))


def test_in_cluster_submit_creates_the_job_once(
    kube_api: KubeEmulator, project: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube_api.call(kube_api.api.declare, ResourceSpec("batch", "v1", "jobs", "Job"))
    kube_api.add_namespace("detection")
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig")))
    r = cli("build", "paddle", "--in-cluster", "--submit")
    assert r.code == 0, r.err
    assert r.out.startswith("paddle: created jobs/build-paddle-")
    (job,) = kube_api.list("jobs", "detection")
    assert job["metadata"]["labels"]["detk8s.io/image"] == "paddle"
    assert len(kube_api.list("configmaps", "detection")) == 1
    again = cli("build", "paddle", "--in-cluster", "--submit")
    assert again.code == 0 and again.out.startswith("paddle: exists jobs/build-paddle-")
    assert len(kube_api.list("jobs", "detection")) == 1


# -- the real Paddle image ------------------------------------------------------------------------


@pytest.mark.image
def test_paddle_image_builds_from_the_real_dockerfile(
    podman_env: dict[str, str], tmp_path: Path
) -> None:
    """The Dockerfile on the CI base with CPU paddle, through `detk8s build` as CI runs it."""
    if subprocess.run(["podman", "image", "exists", CI_BASE]).returncode != 0:
        pytest.fail(f"{CI_BASE} is missing: run `bash .ci/podman-setup.sh` first")
    detk8s = [sys.executable, "-m", "detk8s", "--project", str(REPO)]
    args = ["build", "paddle", "--builder", "podman", "--quiet", *CI_PADDLE_ARGS]
    done = subprocess.run([*detk8s, *args], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    (ref,) = [w for w in done.stdout.split() if w.startswith("registry.example.com/")]
    run = ("run", "--rm", "--entrypoint")
    try:
        assert "exec" in podman(*run, "detk8s", ref, "--help").stdout
        check = "import paddle, ppdet, boto3, detk8s; print(paddle.__version__)"
        # ppdet prints numba warnings on import: the version is the last line.
        assert podman(*run, "python", ref, "-c", check).stdout.split()[-1] == "2.6.2"
        user = podman(*run, "sh", ref, "-c", "id -u; touch /output/x /data/x && echo ok")
        assert user.stdout.split() == ["10001", "ok"]
        worker = "/opt/detk8s/detk8s/frameworks/paddledet_worker.py"
        ls = podman(*run, "ls", ref, worker, "/opt/detk8s/configs/paddledet")
        assert "picodet_s_320_voc.yml" in ls.stdout
    finally:  # older CI builds of this image: their own top layers only, the rest is shared
        repo = ref.rsplit(":", 1)[0]
        tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout
        for old in set(tags.split()) - {ref}:
            podman("rmi", old, check=False)
        podman("image", "prune", "-f", check=False)
