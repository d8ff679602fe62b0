"""detk8s installed like any other tool: `pip install .` (not editable) into a fresh venv, and a
project directory elsewhere. It renders and plans builds as the checkout does, with the same
image tags, and makes the same wheel for the image from its installed files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKOUT = [sys.executable, "-m", "detk8s"]
MAKE_WHEEL = "import sys, pathlib; from detk8s.images.wheel import write_wheel; " \
             "print(write_wheel(pathlib.Path(sys.argv[1])))"  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin dir of a fresh venv holding detk8s from `pip install <checkout>`."""
    root = tmp_path_factory.mktemp("installed")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    done = subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """The repo's project (detk8s.yaml, runs, bases, datasets) copied away from the checkout."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "detk8s.yaml", project)
    for part in ("runs", "bases", "datasets"):
        shutil.copytree(REPO / "configs" / part, project / "configs" / part)
    return project


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def image_lines(rendered: str) -> list[str]:
    """The containers' images (the ConfigMap's copy of the run says `image: auto`)."""
    lines = (line.strip().removeprefix("- ") for line in rendered.splitlines())
    return [line for line in lines if line.startswith("image: ") and "/" in line]


def test_the_installed_detk8s_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = run([str(installed / "python"), "-c", "import detk8s; print(detk8s.__file__)"],
                tmp_path)  # fmt: skip
    assert where.returncode == 0 and "site-packages" in where.stdout, where.stderr


def test_installed_renders_and_tags_as_the_checkout(installed: Path, elsewhere: Path) -> None:
    ours = run([str(installed / "detk8s"), "render", "L1"], elsewhere)
    assert ours.returncode == 0, ours.stderr
    checkout = run([*CHECKOUT, "--project", str(REPO), "render", "L1"], REPO)
    assert checkout.returncode == 0, checkout.stderr
    assert image_lines(ours.stdout) == image_lines(checkout.stdout)
    assert image_lines(ours.stdout)[0].startswith("image: registry.example.com/detk8s/paddle:")

    plan = run([str(installed / "detk8s"), "build", "--all", "--dry-run"], elsewhere)
    assert plan.returncode == 0, plan.stderr
    same = run([*CHECKOUT, "--project", str(REPO), "build", "--all", "--dry-run"], REPO)
    tags = [line for line in plan.stdout.splitlines() if not line.startswith(" ")]
    assert tags == [line for line in same.stdout.splitlines() if not line.startswith(" ")]
    assert "--target=paddle" in plan.stdout and "--target=pytorch" in plan.stdout


def test_installed_makes_the_checkouts_wheel(installed: Path, tmp_path: Path) -> None:
    ours = run([str(installed / "python"), "-c", MAKE_WHEEL, str(tmp_path / "a")], tmp_path)
    assert ours.returncode == 0, ours.stderr
    checkout = run([sys.executable, "-c", MAKE_WHEEL, str(tmp_path / "b")], REPO)
    assert checkout.returncode == 0, checkout.stderr
    a, b = Path(ours.stdout.strip()), Path(checkout.stdout.strip())
    assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_a_project_config_changes_the_installed_tag(installed: Path, elsewhere: Path) -> None:
    before = image_lines(run([str(installed / "detk8s"), "render", "L1"], elsewhere).stdout)
    ours = elsewhere / "configs/paddledet/picodet_s_320_voc.yml"
    ours.parent.mkdir(parents=True)
    ours.write_text((REPO / "configs/paddledet/picodet_s_320_voc.yml").read_text() + "# ours\n")
    after = run([str(installed / "detk8s"), "render", "L1"], elsewhere)
    assert after.returncode == 0, after.stderr
    assert image_lines(after.stdout) != before
