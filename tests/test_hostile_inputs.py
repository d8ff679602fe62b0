"""The hostile-input corpus (tests/data/hostile_inputs.yml): broken and hostile files, names and
values Kubernetes would reject, URIs, secrets in the wrong places and outputs that cannot be
written. Each gets its exit code and exactly its lines naming file and key, in under 5 s, with
no traceback, nothing half-written and no secret in any output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "hostile_inputs.yml").read_text()
)


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 60
    assert len({c["id"] for c in CASES}) == len(CASES)


def write(root: Path, rel: str, spec: Any) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, str):
        path.write_text(spec)
    elif "hex" in spec:
        path.write_bytes(bytes.fromhex(spec["hex"].replace(" ", "")))
    elif "repeat" in spec:
        path.write_text(spec.get("prefix", "") + spec["repeat"] * spec["times"])
    elif "symlink" in spec:
        path.symlink_to(spec["symlink"])
    elif spec.get("dir"):
        path.mkdir()


def merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        dst[k] = merge(dst.get(k) or {}, v) if isinstance(v, dict) else v
    return dst


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_input(
    case: dict[str, Any], project: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rel, spec in case.get("files", {}).items():
        write(project, rel, spec)
    if "project_text" in case:
        (project / "detk8s.yaml").write_text(case["project_text"])
    if "project" in case:
        cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
        (project / "detk8s.yaml").write_text(yaml.safe_dump(merge(cfg, case["project"])))
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    runs = [Path(r).stem for r in case.get("files", {}) if r.startswith("configs/runs/")]
    args = case.get("args", ["validate", *runs])

    before = {p for p in project.rglob("*") if p.is_file() and not p.is_symlink()}
    t0 = time.monotonic()
    result = cli(*args)
    elapsed = time.monotonic() - t0

    output = result.out + result.err
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert "Traceback" not in output, output[-2000:]
    assert result.code == case.get("code", 2), output[-2000:]
    if "secret" in case:
        assert case["secret"] not in output
        for path in project.rglob("*"):  # nor in anything the command wrote
            if path.is_file() and not path.is_symlink() and path not in before:
                assert case["secret"].encode() not in path.read_bytes(), path
    for rel in case.get("absent", []):
        assert not (project / rel).exists(), f"{rel} was written"
    if result.code == 0:
        return
    assert result.out == "", "output on failure"
    lines = result.err.strip().splitlines()
    if "errors" in case:
        assert lines == case["errors"]
    for expected in case.get("contains", []):
        assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.parametrize(
    ("shell", "code", "err"),
    [
        ("render L1 > /dev/full", 1, "error: cannot write output: No space left on device\n"),
        ("render --all | head -c 10 > /dev/null; exit ${PIPESTATUS[0]}", 0, ""),
        ("render --all >&-", 1, "error: standard output is closed\n"),
        ("runs | head -n 1 > /dev/null; exit ${PIPESTATUS[0]}", 0, ""),
    ],
    ids=["disk-full", "pipe-closed-early", "stdout-closed", "runs-into-head"],
)
def test_stdout_that_cannot_take_it(project: Path, shell: str, code: int, err: str) -> None:
    """A full disk or a reader gone: one line or none, never a traceback."""
    detk8s = f"{sys.executable} -m detk8s"
    done = subprocess.run(["bash", "-c", f"{detk8s} {shell}"], cwd=project, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (code, err)


def test_files_get_the_mode_the_umask_gives(project: Path) -> None:
    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        out = project / f"out-{umask:o}"
        done = subprocess.run(["bash", "-c", f"umask {umask:03o}; {sys.executable} -m detk8s "
                               f"render L1 L2 -o {out}"], cwd=project, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {mode}


def test_a_project_file_named_outright_is_the_one_used(project: Path, cli: Any) -> None:
    other = yaml.safe_load((project / "detk8s.yaml").read_text())
    other["namespace"] = "elsewhere"
    (project / "other.yaml").write_text(yaml.safe_dump(other))
    r = cli("--project", "other.yaml", "render", "L1")
    assert r.code == 0, r.err
    assert "namespace: elsewhere" in r.out and "namespace: detection" not in r.out
