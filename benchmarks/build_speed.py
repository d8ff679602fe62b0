"""Benchmark: `detk8s build` when nothing changed, as a fresh process (bar: at most 1 s before it
reports the existing tag). Builds the Paddle image for CI once if it is not there yet (podman,
CPU paddle on localhost/ci-base:bookworm, as tests/test_build.py does; minutes when cold).

    . /var/tmp/detk8s-podman/env.sh && .venv/bin/python benchmarks/build_speed.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CI_ARGS = [
    *("--build-arg", "BASE_IMAGE=localhost/ci-base:bookworm"),
    *("--build-arg", "PADDLE=paddlepaddle==2.6.2"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--bar", type=float, default=1.0, help="seconds")
    args = parser.parse_args()
    # The builder chosen automatically, as a user runs it (here: no docker daemon, so podman).
    cmd = [sys.executable, "-m", "detk8s", "build", "paddle", *CI_ARGS]
    subprocess.run([*cmd, "--quiet"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"detk8s build, nothing changed, fresh process, {args.runs} runs: {out.stdout.strip()}")
    spread = f"min {min(times):.3f} s   median {median:.3f} s   max {max(times):.3f} s"
    print(f"  {spread}   bar {args.bar} s")
    ok = median <= args.bar and "exists locally" in out.stdout
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
