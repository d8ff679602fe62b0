"""Benchmark: `detk8s collect` over 1,000 runs with the S3 server behind a real round trip, as a
bucket is: Ceph RGW (Debian's ceph packages: .ci/install-ceph.sh) reached through a TCP relay on
this machine that holds every chunk for half the round trip in each direction (the kernel here
has no `tc netem`, which would do the same to the packets). Compared, each a fresh process and
cold: a serial boto3 loop (list, then GET each eval.json) and `aws s3 cp --recursive` of the same
objects. Goal: >= 10x the serial loop, >= 2x aws s3 cp. Installs awscli into its own venv on
first use.

    .venv/bin/python benchmarks/collect_network.py [--runs 1000] [--rtt-ms 10] [--server moto]

With --server moto (no Ceph needed) the figures are moto's: it serves every request in one
Python process, a few ms of CPU per GET, which no client's concurrency gets past; the goals are
for a server that is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from timing import REPO, installed_env, timed

sys.path.insert(0, str(REPO / "tests"))

from collect_speed import SERIAL, aws_copy, awscli, store_runs
from s3.servers import start_ceph, start_moto


class Relay:
    """127.0.0.1:<port> -> `target`, each chunk delivered `one_way` seconds after it arrived,
    in order, in both directions."""

    def __init__(self, target: tuple[str, int], one_way: float) -> None:
        self.target, self.one_way = target, one_way
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each chunk written by a timer `one_way` after it was read: no task or queue per chunk,
        so the relay's own CPU stays small beside the client's and the server's (2 cores)."""
        due = 0.0
        while True:
            chunk = await reader.read(65536)
            # strictly later than the last: timers due at the same instant may run in any order
            due = max(self.loop.time() + self.one_way, due + 1e-6)
            if not chunk:
                self.loop.call_at(due, _close, writer)
                return
            self.loop.call_at(due, writer.write, chunk)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rtt-ms", type=float, default=10.0)
    parser.add_argument("--server", choices=["moto", "ceph"], default="ceph")
    args = parser.parse_args()
    aws = awscli()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_ceph(Path(tmp) / "ceph") if args.server == "ceph" else start_moto(Path(tmp))
        relay = Relay(("127.0.0.1", int(server.endpoint.url.rsplit(":", 1)[1])), 0.0)
        url = f"http://127.0.0.1:{relay.port}"
        try:
            ep = dataclasses.replace(server.endpoint, url=url)  # through the relay
            client = ep.client(max_pool_connections=32)
            bucket = ep.new_bucket("bench", client)
            store_runs(client, bucket, args.runs)  # before the delay: not timed
            relay.one_way = args.rtt_ms / 2000  # from here on, every round trip takes it
            env = installed_env(
                AWS_ACCESS_KEY_ID=ep.access_key,
                AWS_SECRET_ACCESS_KEY=ep.secret_key,
                AWS_DEFAULT_REGION=ep.region,
                XDG_CACHE_HOME=f"{tmp}/cache",
            )
            t0 = time.perf_counter()
            client.head_bucket(Bucket=bucket)
            rtt = (time.perf_counter() - t0) * 1000

            serial, s_out = timed([sys.executable, "-c", SERIAL, url, bucket], env=env)
            proj = Path(tmp) / "proj"
            (proj / "configs/runs").mkdir(parents=True)
            (proj / "configs/datasets").mkdir()
            (proj / "detk8s.yaml").write_text(
                f"storage: {{uri: 's3://{bucket}/runs', endpoint_url: '{url}'}}\n"
            )
            cmd = [str(REPO / ".venv/bin/detk8s"), "collect", "--no-cache", "-o",
                   f"{tmp}/summary.json"]  # fmt: skip
            cold, out = timed(cmd, cwd=proj, env=env)
            done = sum(1 for r in json.loads(Path(f"{tmp}/summary.json").read_text())
                       if r["status"] == "done")  # fmt: skip
            aws_time, aws_out, copied = aws_copy(aws, url, bucket, Path(tmp), env)
        finally:
            server.stop()
    print(f"collect over {args.runs} runs, {args.server} S3 behind a {args.rtt_ms:g} ms round trip "
          f"(a HEAD takes {rtt:.1f} ms), fresh processes, cold:")  # fmt: skip
    print(f"  serial boto3 loop (list + GET each)   {serial:7.2f} s  {s_out.stdout.strip()} GETs")
    print(f"  aws s3 cp --recursive                 {aws_time:7.2f} s  {copied} eval.json, "
          f"exit {aws_out.returncode}")  # fmt: skip
    print(f"  detk8s collect --no-cache             {cold:7.2f} s  {done} done, "
          f"exit {out.returncode}")  # fmt: skip
    print(f"  detk8s is {serial / cold:.1f}x the serial loop (goal 10x), "
          f"{aws_time / cold:.1f}x aws s3 cp (goal 2x)")  # fmt: skip
    ok = done == args.runs and serial / cold >= 10 and aws_time / cold >= 2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
