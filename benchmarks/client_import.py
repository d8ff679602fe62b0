"""Benchmark: what importing the kubernetes client costs, for each given interpreter (one venv
per client version), against that interpreter's floor (`import yaml, urllib3`, which the client
imports anyway); fresh processes, interleaved, medians. Used to decide the `kube` extra's pin.

    python -m venv /tmp/k35 && /tmp/k35/bin/pip install kubernetes==35.0.0   (and 36, 37)
    .venv/bin/python benchmarks/client_import.py /tmp/k35/bin/python /tmp/k36/bin/python ...
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

CLIENT = (
    "from kubernetes import client, config; from kubernetes.client.exceptions import ApiException"
)
FLOOR = "import yaml, urllib3"
VERSION = "import kubernetes; print(kubernetes.__version__)"


def timed(python: str, code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pythons", nargs="+", help="interpreters, each with a kubernetes client")
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {
        p: {"client": [], "floor": []} for p in args.pythons
    }
    for python in args.pythons:  # compile bytecode once, as pip does at install
        timed(python, CLIENT)
    for _ in range(args.runs):
        for python in args.pythons:
            times[python]["client"].append(timed(python, CLIENT))
            times[python]["floor"].append(timed(python, FLOOR))
    print(f"{'kubernetes':<12} {'import (s)':>10} {'floor (s)':>10} {'client alone (s)':>17}")
    for python in args.pythons:
        version = subprocess.run([python, "-c", VERSION], check=True, capture_output=True,
                                 text=True).stdout.strip()  # fmt: skip
        client = statistics.median(times[python]["client"])
        floor = statistics.median(times[python]["floor"])
        print(f"{version:<12} {client:>10.3f} {floor:>10.3f} {client - floor:>17.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
