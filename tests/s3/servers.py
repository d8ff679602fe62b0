"""Session-scoped pytest fixtures that run real S3-compatible servers on loopback.

- ``moto_s3``: moto's server (``moto_server``) in a subprocess; quick, in-memory, GIL-bound.
- ``ceph_s3``: a single-node Ceph cluster (mon + memstore OSD + radosgw) started by
  ``ceph-rgw-start.sh`` with its state in a temp dir; needs Debian's ceph packages
  (``.ci/install-ceph.sh``). Missing binaries FAIL the fixture instead of skipping, so that
  CI cannot go green without the integration tests having run.
- ``s3_endpoint`` / ``s3_bucket``: function-scoped, parametrized over both servers (ids
  ``moto`` and ``ceph``); ``s3_bucket`` is a fresh, uniquely-named bucket, emptied and deleted
  after the test.

tests/conftest.py makes them visible to every test (tests/ is on sys.path, as for ``kube``)::

    from s3.servers import ceph_s3, moto_s3, s3_bucket, s3_endpoint  # noqa: E402, F401

Run as a script (``python servers.py --watchdog RUN_DIR``) this module is the watchdog that
stops the Ceph daemons if pytest dies without running its teardown (SIGKILL, SIGTERM).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

CEPH_INSTALL = "apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw"
CEPH_BINARIES = (
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph",
    "monmaptool",
    "ceph-authtool",
)
START_SCRIPT = Path(__file__).resolve().with_name("ceph-rgw-start.sh")
# (pid file stem, /proc/PID/comm, stop signal), stopped one by one in this order: radosgw and
# the OSD hang in shutdown while waiting for an OSD/mon already gone (radosgw: 120 s). radosgw is
# stateless and spends 2-5 s in a graceful stop for nothing: it is killed outright.
CEPH_DAEMONS: tuple[tuple[str, str, signal.Signals], ...] = (
    ("client.rgw.a", "radosgw", signal.SIGKILL),
    ("osd.0", "ceph-osd", signal.SIGTERM),
    ("mon.a", "ceph-mon", signal.SIGTERM),
)
REGION = "us-east-1"
# resolved here, not in the forked child: dlopen after fork can deadlock in a threaded parent
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str = REGION
    kind: str = "s3"  # "moto" or "ceph": for assertions on a server's known quirks

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint; ``config`` goes to botocore's Config.

        Path-style addressing: buckets as DNS names under 127.0.0.1 cannot resolve.
        """
        import boto3
        from botocore.config import Config

        cfg = Config(s3={"addressing_style": "path"})
        if config:
            cfg = cfg.merge(Config(**config))
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=cfg,
        )

    def new_bucket(self, prefix: str = "t", client: Any = None) -> str:
        """Create a bucket with a unique name (servers are shared by the whole session)."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        (client or self.client()).create_bucket(Bucket=name)
        return name


@dataclass(frozen=True)
class S3Bucket:
    endpoint: S3Endpoint
    name: str
    client: Any


def delete_bucket(client: Any, bucket: str) -> None:
    """Empty a bucket (objects and unfinished multipart uploads) and delete it."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for up in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_http(url: str) -> bool:
    # no proxies: a proxy from the environment must not see loopback requests
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # an S3 error document is still an answer
    except OSError:
        return False
    return True


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- {path} (last {n} lines)\n" + "\n".join(lines[-n:]) + "\n"


def _term_with_parent() -> None:
    """preexec_fn: PR_SET_PDEATHSIG, so the kernel SIGTERMs the child if pytest is killed
    without running its teardown (Linux only, as is the CI)."""
    _PRCTL(1, signal.SIGTERM)


# ---------------------------------------------------------------- moto


@dataclass
class MotoServer:
    proc: subprocess.Popen[bytes]
    endpoint: S3Endpoint
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_moto(log_dir: Path, timeout: float = 30.0) -> MotoServer:
    for mod in ("moto", "flask", "flask_cors"):
        if importlib.util.find_spec(mod) is None:
            raise RuntimeError(f"python module {mod} missing: pip install 'moto[server]'")
    last = ""
    for _ in range(3):  # the free port may be taken before moto binds it: pick another
        port = free_port()
        log = log_dir / f"moto_server.{port}.log"
        with log.open("wb") as out:
            # `python -m moto.server` is `moto_server` of this interpreter's moto; output goes to
            # a file because a pipe nobody reads would block moto once 64 KiB of logs pile up
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_term_with_parent,
            )
        url = f"http://127.0.0.1:{port}"
        server = MotoServer(proc, S3Endpoint(url, "testing", "testing", kind="moto"), log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers_http(url + "/"):
                return server
            time.sleep(0.1)
        server.stop()
        last = _tail(log)
        if proc.returncode not in (None, 0) and "in use" in last:
            continue
        break
    raise RuntimeError(f"moto_server did not answer within {timeout:.0f} s\n{last}")


# ---------------------------------------------------------------- ceph


def _alive(pid: int, comm: str) -> bool:
    """pid runs the program comm; False for a zombie (daemons' parent is init, which reaps them
    a little later) and for a pid since reused by another program."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ..."
    actual, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return actual == comm and state != "Z"


def ceph_pid(run_dir: Path, name: str, comm: str) -> int | None:
    """The live pid in run_dir/NAME.pid, or None."""
    try:
        pid = int((run_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, comm) else None


def stop_ceph(run_dir: Path, grace: float = 5.0) -> None:
    """Stop the daemons by their pid files; SIGKILL one that outlives grace."""
    for name, comm, sig in CEPH_DAEMONS:
        # read the pid once: daemons remove their pid file as soon as they start shutting down
        pid = ceph_pid(run_dir, name, comm)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _alive(pid, comm):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)


def _start_watchdog(run_dir: Path) -> subprocess.Popen[bytes]:
    """A process that stops the daemons once our end of its stdin closes, i.e. when this
    process exits in any way, including SIGKILL. Its own session: Ctrl-C must not kill it."""
    return subprocess.Popen(
        [sys.executable, __file__, "--watchdog", str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


@dataclass
class CephServer:
    state_dir: Path
    endpoint: S3Endpoint
    start_seconds: float
    watchdog: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_ceph(self.state_dir / "run")
        if self.watchdog.stdin:
            self.watchdog.stdin.close()
        self.watchdog.wait(timeout=30)


def start_ceph(state_dir: Path, timeout: float = 300.0) -> CephServer:
    """Start mon + OSD + radosgw with state under state_dir, on free loopback ports."""
    missing = [b for b in CEPH_BINARIES if shutil.which(b) is None]
    if missing:
        raise RuntimeError(
            f"Ceph binaries not found: {', '.join(missing)}. Install them with `{CEPH_INSTALL}`"
            " (as root; .ci/install-ceph.sh does it)."
        )
    rgw_port, mon_port = free_port(), free_port()
    access_key, secret_key = "testkey", "testsecret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEPH_")}
    env.update(
        CEPH_DIR=str(state_dir),
        RGW_PORT=str(rgw_port),
        MON_PORT=str(mon_port),
        S3_ACCESS_KEY=access_key,
        S3_SECRET_KEY=secret_key,
    )
    watchdog = _start_watchdog(state_dir / "run")
    server = CephServer(
        state_dir,
        S3Endpoint(f"http://127.0.0.1:{rgw_port}", access_key, secret_key, kind="ceph"),
        0.0,
        watchdog,
    )
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(START_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=_term_with_parent,  # the script's TERM trap then kills what it started
        )
        if proc.returncode != 0:
            logs = "".join(_tail(p) for p in sorted((state_dir / "log").glob("*.log")))
            raise RuntimeError(
                f"{START_SCRIPT.name} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}\n{logs}"
            )
    except BaseException:  # also KeyboardInterrupt and the timeout: leave no daemons behind
        server.stop()
        raise
    server.start_seconds = time.monotonic() - t0
    return server


# ---------------------------------------------------------------- fixtures

T = TypeVar("T")


def _started(start: Callable[[], T]) -> T:
    """start(), its RuntimeError turned into a failure showing just the message."""
    try:
        return start()
    except RuntimeError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    server = _started(lambda: start_moto(tmp_path_factory.mktemp("moto")))
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ceph_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    # fail, never skip: a skipped integration suite would hide a missing component in CI
    server = _started(lambda: start_ceph(tmp_path_factory.mktemp("ceph")))
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(params=["moto", "ceph"])
def s3_endpoint(request: pytest.FixtureRequest) -> S3Endpoint:
    endpoint: S3Endpoint = request.getfixturevalue(f"{request.param}_s3")
    return endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> Iterator[S3Bucket]:
    client = s3_endpoint.client()
    bucket = S3Bucket(s3_endpoint, s3_endpoint.new_bucket(client=client), client)
    yield bucket
    delete_bucket(client, bucket.name)  # memstore holds the data in RAM (2 GiB cap)


def _watchdog_main(run_dir: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
    stop_ceph(run_dir)


if __name__ == "__main__" and sys.argv[1:2] == ["--watchdog"]:
    _watchdog_main(Path(sys.argv[2]))
