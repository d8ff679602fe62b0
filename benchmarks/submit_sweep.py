"""Benchmark: `detk8s submit` of a 100-run sweep, and a re-submit with nothing changed, against
`kubectl apply -f dir/ --validate=false` of the same manifests, each a fresh process, against the
test Kubernetes API emulator over TLS (kubectl sends its token only over TLS): once answering at
once (client overhead shows), once taking a few ms per request as an API server writing to etcd
does (concurrency shows). Storage is a moto S3 server and images are in a fake registry, so
detk8s does what it does on a real cluster (DONE check, image check, runtime of nothing).

    .venv/bin/python benchmarks/submit_sweep.py [--runs 100] [--service-ms 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from kube.emulator import KubeEmulator  # noqa: E402
from registry import FakeRegistry  # noqa: E402
from s3.servers import start_moto  # noqa: E402

NS = "detection"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took, done.stdout


def project(root: Path, runs: int, storage: str, endpoint: str, registry: str) -> None:
    shutil.copytree(REPO / "configs", root / "configs")
    text = (REPO / "detk8s.yaml").read_text().replace("registry.example.com", registry)
    text = text.replace("uri: s3://detk8s/runs", f"uri: {storage}")
    text = text.replace("endpoint_url: null", f"endpoint_url: {endpoint}")
    (root / "detk8s.yaml").write_text(text)
    for i in range(runs):  # a learning-rate sweep around L2
        (root / f"configs/runs/S{i:03d}.yml").write_text(
            f"_BASE_: ../bases/picodet_s_320.yml\ngpus: 2\nlr: {0.16 + i * 1e-4:.4f}\n"
        )


def one_server(root: Path, env: dict[str, str], service: float, kubectl: str | None) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator(tls=True, service_time=service) as emu:
        emu.add_namespace(NS)
        emu.add_namespace("kubectl")
        env = {**env, "KUBECONFIG": str(emu.kubeconfig(Path(tmp) / "kubeconfig", namespace=NS))}
        submit = [str(REPO / ".venv/bin/detk8s"), "submit", "S0*"]
        first, out = timed(submit, root, env)
        assert out.count(": created ") == len(emu.list("paddlejobs", NS)), out[-500:]
        again, out = timed(submit, root, env)
        assert out.count(": unchanged ") == len(emu.list("paddlejobs", NS)), out[-500:]
        label = f"{service * 1000:g} ms/request"
        if kubectl is None:
            return [f"submit, first ({label})  {first:.2f} s  kubectl: not installed",
                    f"submit, again ({label})  {again:.2f} s  kubectl: not installed"]  # fmt: skip
        manifests = Path(tmp) / "manifests"
        timed([str(REPO / ".venv/bin/detk8s"), "render", "S0*", "-o", str(manifests)], root, env)
        for file in manifests.iterdir():  # the same objects, in a namespace of kubectl's own
            file.write_text(file.read_text().replace(f"namespace: {NS}", "namespace: kubectl"))
        apply = [kubectl, "apply", "-f", str(manifests), "--validate=false", "-n", "kubectl"]
        k_first, _ = timed(apply, root, env)
        k_again, _ = timed(apply, root, env)
        assert len(emu.list("paddlejobs", "kubectl")) == len(emu.list("paddlejobs", NS))
        for what, ours, theirs in (("first", first, k_first), ("again", again, k_again)):
            rows.append(f"submit, {what} ({label}): detk8s {ours:.2f} s, kubectl apply "
                        f"{theirs:.2f} s: {theirs / ours:.2f}x kubectl's speed")  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--service-ms", type=float, default=5.0)
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
            # As after `pip install`, which compiles bytecode (PYTHONDONTWRITEBYTECODE, set on
            # some machines, would leave every import to compile its sources on each run).
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x"}
            subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                            *sysconfig.get_paths()["purelib"].split(os.pathsep),
                            str(REPO / "detk8s")], capture_output=True, env=env)  # fmt: skip
            print(f"{args.runs}-run sweep, fresh processes, emulator over TLS:")
            for service in (0.0, args.service_ms / 1000):
                for row in one_server(root, env, service, kubectl):
                    print("  " + row)
        finally:
            moto.stop()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
