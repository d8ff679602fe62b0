"""What the benchmarks share: every command a fresh process, timed the same way, in an
environment as after `pip install`."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def installed_env(**extra: str) -> dict[str, str]:
    """This environment with bytecode compiled, as `pip install` leaves it: without .pyc files
    every process measured would first compile its sources (PYTHONDONTWRITEBYTECODE, set on some
    machines, prevents writing them), and `extra` variables over it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | extra
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                    *sysconfig.get_paths()["purelib"].split(os.pathsep), str(REPO / "detk8s")],
                   capture_output=True, env=env)  # fmt: skip
    return env


def timed(cmd: list[str], **kwargs: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Seconds `cmd` took, and how it ended."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - t0, out


def checked(cmd: list[str], **kwargs: object) -> tuple[float, str]:
    """Seconds `cmd` took and its stdout; the benchmark stops if it failed."""
    took, out = timed(cmd, **kwargs)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return took, out.stdout
