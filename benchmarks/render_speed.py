"""Benchmark: `detk8s render --all` as a fresh process (bar: at most 0.5 s), and proof that it
imports neither `kubernetes` nor `boto3`.

    .venv/bin/python benchmarks/render_speed.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("kubernetes", "boto3", "botocore")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--bar", type=float, default=0.5, help="seconds")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "detk8s", "render", "--all"]
    # As after `pip install`, which compiles bytecode: without .pyc files every run would first
    # compile detk8s's sources (PYTHONDONTWRITEBYTECODE, set on some machines, prevents it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "detk8s")], check=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)  # warm the caches
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    jobs = out.stdout.count(b"\nkind: PaddleJob")
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]], cwd=REPO, env=env, check=True,
        capture_output=True, text=True,
    ).stderr  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in trace.splitlines() if "|" in line}
    leaked = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    best, median = min(times), statistics.median(times)
    print(f"detk8s render --all ({jobs} jobs), fresh process, {args.runs} runs:")
    print(f"  min {best:.3f} s   median {median:.3f} s   max {max(times):.3f} s   bar {args.bar} s")
    print(f"  modules imported: {len(imported)}; kubernetes/boto3 among them: {leaked or 'none'}")
    ok = median <= args.bar and not leaked and jobs == 8
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
