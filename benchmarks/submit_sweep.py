"""Benchmark: `detk8s submit` of a 100-run sweep, and a re-submit with nothing changed, against
`kubectl apply -f dir/ --validate=false` of the same manifests, each a fresh process, against the
test Kubernetes API emulator over TLS (kubectl sends its token only over TLS): once answering at
once (client overhead shows), once taking a few ms per request as an API server writing to etcd
does (concurrency shows). Storage is a moto S3 server and images are in a fake registry, so
detk8s does what it does on a real cluster (DONE check, image check, runtime of nothing).

    .venv/bin/python benchmarks/submit_sweep.py [--runs 100] [--service-ms 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from timing import REPO, checked, installed_env

sys.path.insert(0, str(REPO / "tests"))

from kube.emulator import KubeEmulator
from registry import FakeRegistry
from s3.servers import start_moto

NS = "detection"


def project(root: Path, runs: int, storage: str, endpoint: str, registry: str) -> None:
    shutil.copytree(REPO / "configs", root / "configs")
    text = (REPO / "detk8s.yaml").read_text().replace("registry.example.com", registry)
    text = text.replace("uri: s3://detk8s/runs", f"uri: {storage}")
    text = text.replace("endpoint_url: null", f"endpoint_url: {endpoint}")
    (root / "detk8s.yaml").write_text(text)
    for i in range(runs):  # a sweep of epochs around L2
        (root / f"configs/runs/S{i:03d}.yml").write_text(
            f"_BASE_: ../bases/picodet_s_320.yml\ngpus: 2\nlr: 0.16\nepochs: {300 + i}\n"
        )


def one_server(
    root: Path, env: dict[str, str], service: float, kubectl: str | None, rounds: int
) -> list[tuple[str, bool]]:
    """Each round in fresh namespaces (detk8s's, kubectl's), first and again, interleaved;
    medians over the rounds."""
    times: dict[str, list[float]] = {k: [] for k in ("first", "again", "k_first", "k_again")}
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator(tls=True, service_time=service) as emu:
        env = {**env, "KUBECONFIG": str(emu.kubeconfig(Path(tmp) / "kubeconfig", namespace=NS))}
        detk8s = str(REPO / ".venv/bin/detk8s")
        manifests = Path(tmp) / "manifests"
        checked([detk8s, "render", "S0*", "-o", str(manifests)], cwd=root, env=env)
        for r in range(rounds):
            ours, theirs = f"{NS}-{r}", f"kubectl-{r}"
            emu.add_namespace(ours)
            emu.add_namespace(theirs)
            submit = [detk8s, "submit", "S0*", "-n", ours]
            took, out = checked(submit, cwd=root, env=env)
            times["first"].append(took)
            assert out.count(": created ") == len(emu.list("paddlejobs", ours)), out[-500:]
            if kubectl is not None:  # the same objects, in a namespace of kubectl's own
                apply = [kubectl, "apply", "-f", str(manifests), "--validate=false", "-n", theirs]
                for file in manifests.iterdir():
                    text = re.sub(r"namespace: \S+", f"namespace: {theirs}", file.read_text())
                    file.write_text(text)
                times["k_first"].append(checked(apply, cwd=root, env=env)[0])
            took, out = checked(submit, cwd=root, env=env)
            times["again"].append(took)
            assert out.count(": unchanged ") == len(emu.list("paddlejobs", ours)), out[-500:]
            if kubectl is not None:
                times["k_again"].append(checked(apply, cwd=root, env=env)[0])
                assert len(emu.list("paddlejobs", theirs)) == len(emu.list("paddlejobs", ours))
    label = f"{service * 1000:g} ms/request"
    rows = []
    for what in ("first", "again"):
        ours_s = statistics.median(times[what])
        if kubectl is None:
            rows.append((f"submit, {what} ({label}): detk8s {ours_s:.2f} s, kubectl: not "
                         "installed", False))  # fmt: skip
            continue
        theirs_s = statistics.median(times[f"k_{what}"])
        rows.append((f"submit, {what} ({label}): detk8s {ours_s:.2f} s, kubectl apply "
                     f"{theirs_s:.2f} s: {theirs_s / ours_s:.2f}x kubectl's speed (bar 1x)",
                     ours_s < theirs_s))  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--service-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many")
    args = parser.parse_args()
    kubectl = shutil.which("kubectl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeRegistry.has_everything = True
    with tempfile.TemporaryDirectory() as tmp:
        moto = start_moto(Path(tmp))
        try:
            bucket = moto.endpoint.new_bucket("bench")
            root = Path(tmp) / "proj"
            registry = f"127.0.0.1:{server.server_address[1]}"
            project(root, args.runs, f"s3://{bucket}/runs", moto.endpoint.url, registry)
            env = installed_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="x")
            print(f"{args.runs}-run sweep, fresh processes, emulator over TLS, medians of "
                  f"{args.rounds}:")  # fmt: skip
            ok = True
            for service in (0.0, args.service_ms / 1000):
                for row, won in one_server(root, env, service, kubectl, args.rounds):
                    print("  " + row)
                    ok &= won
        finally:
            moto.stop()
            server.shutdown()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
