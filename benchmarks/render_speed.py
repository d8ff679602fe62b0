"""Benchmark: `detk8s render` and `detk8s validate` of the 8 runs of the shipped matrix (L1-L4,
Y1-Y4), as fresh processes, against the import floor (a fresh process importing typer, jinja2,
yaml and pydantic, which any such CLI pays), interleaved in one run; bar: at most 2x the floor.
Then the same with 100 more runs: the cost of each extra run. Also proves that neither command
imports the cluster and storage clients nor a trainer (kubernetes, boto3, torch, paddle).

    .venv/bin/python benchmarks/render_speed.py [--runs 15] [--extra 100]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import REPO, checked, installed_env

FORBIDDEN = ("kubernetes", "boto3", "botocore", "torch", "paddle", "ppdet", "yolov5")
FLOOR = "import typer, jinja2, yaml, pydantic"
MATRIX = ["L1", "L2", "L3", "L4", "Y1", "Y2", "Y3", "Y4"]


def project(root: Path, extra: int) -> None:
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copy(REPO / "detk8s.yaml", root)
    for i in range(extra):  # a sweep of epochs around L2
        (root / f"configs/runs/S{i:03d}.yml").write_text(
            f"_BASE_: ../bases/picodet_s_320.yml\ngpus: 2\nlr: 0.16\nepochs: {300 + i}\n"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--extra", type=int, default=100)
    parser.add_argument("--bar", type=float, default=2.0, help="x the import floor")
    args = parser.parse_args()
    detk8s = [sys.executable, "-m", "detk8s"]
    commands = {"render": [*detk8s, "render", *MATRIX], "validate": [*detk8s, "validate", *MATRIX]}
    more = [f"S{i:03d}" for i in range(args.extra)]
    env = installed_env()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project(root, args.extra)
        floor_cmd = [sys.executable, "-c", FLOOR]
        times: dict[str, list[float]] = {"floor": []}
        for name, cmd in commands.items():
            checked(cmd, cwd=root, env=env)  # warm the caches
            times[name], times[f"{name} +{args.extra}"] = [], []
        for _ in range(args.runs):  # interleaved: all see the same machine load
            times["floor"].append(checked(floor_cmd, cwd=root, env=env)[0])
            for name, cmd in commands.items():
                times[name].append(checked(cmd, cwd=root, env=env)[0])
                times[f"{name} +{args.extra}"].append(checked([*cmd, *more], cwd=root, env=env)[0])
        floor = statistics.median(times["floor"])
        print(f"fresh processes, medians of {args.runs}; import floor ({FLOOR}) {floor:.3f} s:")
        for name, cmd in commands.items():
            base = statistics.median(times[name])
            big = statistics.median(times[f"{name} +{args.extra}"])
            per_run = (big - base) / args.extra * 1000
            traced = [sys.executable, "-X", "importtime", *cmd[1:]]
            trace = subprocess.run(traced, cwd=root, env=env, check=True, capture_output=True,
                                   text=True).stderr  # fmt: skip
            imported = {line.split("|")[-1].strip() for line in trace.splitlines() if "|" in line}
            leaked = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
            print(f"  {name} of 8 runs {base:.3f} s = {base / floor:.2f}x the floor "
                  f"(bar {args.bar}x); +{args.extra} runs {big:.3f} s: {per_run:.1f} ms per "
                  f"extra run; forbidden imports: {leaked or 'none'}")  # fmt: skip
            ok &= base / floor <= args.bar and not leaked
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
