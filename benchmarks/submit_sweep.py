"""Benchmark: `detk8s submit` of a 100-run sweep, as a fresh process, against the test
Kubernetes API emulator on loopback (bar: at most 5 s).

    .venv/bin/python benchmarks/submit_sweep.py [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from kube.emulator import KubeEmulator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--bar", type=float, default=5.0, help="seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as emu:
        root = Path(tmp) / "proj"
        shutil.copytree(REPO / "configs", root / "configs")
        text = (REPO / "detk8s.yaml").read_text().replace("s3://detk8s/runs", f"file://{tmp}/s")
        (root / "detk8s.yaml").write_text(text)
        for i in range(args.runs):  # a learning-rate sweep around L2
            (root / f"configs/runs/S{i:03d}.yml").write_text(
                f"_BASE_: ../bases/picodet_s_320.yml\ngpus: 2\nlr: {0.16 + i * 1e-4:.4f}\n"
            )
        emu.add_namespace("detection")
        env = {**os.environ, "KUBECONFIG": str(emu.kubeconfig(Path(tmp) / "kubeconfig"))}
        cmd = [str(REPO / ".venv/bin/detk8s"), "submit", "S*"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        first = time.perf_counter() - t0
        created = out.stdout.count(": created ")
        t0 = time.perf_counter()
        again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        second = time.perf_counter() - t0
        unchanged = again.stdout.count(": unchanged ")
        jobs = len(emu.list("paddlejobs", "detection"))
    print(f"detk8s submit of a {args.runs}-run sweep against the emulator (fresh process):")
    print(f"  first submit  {first:.2f} s  ({created} created, exit {out.returncode})")
    print(f"  second submit {second:.2f} s  ({unchanged} unchanged, exit {again.returncode})")
    print(f"  jobs in the namespace: {jobs}   bar {args.bar} s")
    ok = first <= args.bar and created == jobs == unchanged == args.runs
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
