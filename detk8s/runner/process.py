"""Running a framework command the way a pod needs it: output teed to stdout (kubectl logs) and
a log file, in its own process group, with SIGTERM passed on so the framework can stop cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from detk8s import podenv

# How long the framework gets to stop after SIGTERM before it is killed. Frameworks do not
# always stop: paddle blocks SIGTERM in its main thread at times, and its handler can deadlock.
# The pod's terminationGracePeriodSeconds leaves room for this plus the checkpoint upload.
TERM_GRACE = float(os.environ.get(podenv.TERM_GRACE, "20"))


class Terminated:
    """Set when SIGTERM (or SIGINT) arrived: the pod is being stopped or preempted."""

    def __init__(self, grace: float = TERM_GRACE) -> None:
        self.event = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.grace = grace

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.event.is_set()
        self.event.set()
        child = self.child
        if child is not None and child.poll() is None:
            # launch and its workers share the child's process group
            _signal_group(child, signal.SIGTERM)
            if first:
                timer = threading.Timer(self.grace, _signal_group, (child, signal.SIGKILL))
                timer.daemon = True
                timer.start()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)


def run_teed(
    argv: list[str],
    log: Path,
    terminated: Terminated,
    tee: bool = True,
    out: TextIO | None = None,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> int:
    """Run `argv`, appending its output to `log` (and writing it to stdout when `tee`), with
    this process's env plus `env`, less `unset`."""
    if terminated.is_set:
        return 128 + signal.SIGTERM
    out = out or sys.stdout
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    for name in unset:
        child_env.pop(name, None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env, cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
        terminated.child = child
        assert child.stdout is not None
        for line in iter(child.stdout.readline, b""):
            sink.write(line)
            sink.flush()
            if tee:
                out.write(line.decode("utf-8", "replace"))
                out.flush()
        code = child.wait()
        terminated.child = None
    return code
