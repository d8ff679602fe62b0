"""Benchmark: `detk8s render --all` as a fresh process against the import floor (a fresh process
importing typer, jinja2, yaml and pydantic, which any such CLI pays), measured interleaved in one
run; bar: at most 2x the floor. Also proves that render imports neither the cluster and storage
clients nor a trainer (kubernetes, boto3, torch, paddle).

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
FORBIDDEN = ("kubernetes", "boto3", "botocore", "torch", "paddle", "ppdet", "yolov5")
FLOOR = "import typer, jinja2, yaml, pydantic"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True).stdout
    return time.perf_counter() - t0, out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--bar", type=float, default=2.0, help="x the import floor")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "detk8s", "render", "--all"]
    floor_cmd = [sys.executable, "-c", FLOOR]
    # As after `pip install`, which compiles bytecode: without .pyc files every run would first
    # compile detk8s's sources (PYTHONDONTWRITEBYTECODE, set on some machines, prevents it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "detk8s")], check=True)
    timed(cmd, env), timed(floor_cmd, env)  # warm the caches
    times, floor = [], []
    out = b""
    for _ in range(args.runs):  # interleaved: both see the same machine load
        t, out = timed(cmd, env)
        times.append(t)
        floor.append(timed(floor_cmd, env)[0])
    jobs = out.count(b"\nkind: PaddleJob") + out.count(b"\nkind: PyTorchJob")
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]], cwd=REPO, env=env, check=True,
        capture_output=True, text=True,
    ).stderr  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in trace.splitlines() if "|" in line}
    leaked = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    median, floor_median = statistics.median(times), statistics.median(floor)
    ratio = median / floor_median
    print(f"detk8s render --all ({jobs} jobs), fresh process, {args.runs} runs:")
    print(f"  min {min(times):.3f} s   median {median:.3f} s   max {max(times):.3f} s")
    print(f"import floor ({FLOOR}), fresh process:")
    print(f"  min {min(floor):.3f} s   median {floor_median:.3f} s   max {max(floor):.3f} s")
    print(f"ratio (median): {ratio:.2f}x   bar {args.bar}x")
    print(f"modules imported: {len(imported)}; forbidden among them: {leaked or 'none'}")
    ok = ratio <= args.bar and not leaked and jobs >= 9
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
