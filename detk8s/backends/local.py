"""The local backend: seed 000's `nohup python tools/train.py ... &`, done properly.

`detk8s exec RUN` runs detached on this machine (its own session: closing the terminal does not
stop it), logging to <local_dir>/<RUN>/train.log with its pid in <local_dir>/<RUN>/pid, and
stores results in the project's storage exactly as a pod does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detk8s.frameworks import get_adapter
from detk8s.jobspec import build_job_spec
from detk8s.layout import Layout, local_layout
from detk8s.project import Project
from detk8s.spec import JobSpec
from detk8s.storage import DONE, FAILED, TRAIN_LOG

PID_FILE = "pid"


def local_job(project: Project, run: str) -> tuple[JobSpec, Layout]:
    """The run's JobSpec with this machine's paths, its files written where the pod would have
    its ConfigMap: what `submit --backend local` and `detk8s exec RUN` run."""
    loaded = project.load_run(run)
    family = get_adapter(loaded.config.framework).family
    python = project.settings.local_python.get(family)
    layout = local_layout(project.local_dir, run, str(project.root / python) if python else None)
    storage = project.local_path(project.settings.storage.uri)
    spec = build_job_spec(loaded, project.settings, layout, storage_uri=storage)
    config_dir = Path(layout.config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in spec.files.items():
        (config_dir / name).write_text(content, encoding="utf-8")
    return spec, layout


@dataclass(frozen=True)
class LocalRun:
    run: str
    state: str  # Running, Succeeded, Failed, Stopped, Pending (never started)
    pid: int | None
    log: Path


class LocalBackend:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.workdir = project.local_dir

    def run_dir(self, run: str) -> Path:
        return self.workdir / run

    def pid(self, run: str) -> int | None:
        """The pid of the run's live exec process, if any."""
        try:
            pid = int((self.run_dir(run) / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A reaped-late zombie still answers kill(0); it is not running.
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return None
        return pid

    def start(self, run: str, force: bool = False) -> subprocess.Popen[bytes]:
        """The job's command with the job's env, as a pod would run it, detached."""
        spec, _ = local_job(self.project, run)
        run_dir = self.run_dir(run)
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = [*spec.command, "--no-tee", *(["--force"] if force else [])]
        with (run_dir / TRAIN_LOG).open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.project.root,
                env={**os.environ, **spec.env},  # credentials: from this machine's env
                start_new_session=True,  # survives the terminal; killpg stops the whole run
            )
        (run_dir / PID_FILE).write_text(f"{proc.pid}\n")
        return proc

    def state(self, run: str) -> LocalRun:
        pid = self.pid(run)
        log = self.run_dir(run) / TRAIN_LOG
        if pid is not None:
            return LocalRun(run, "Running", pid, log)
        storage = self.project.storage()
        if storage.exists(f"{run}/{DONE}"):
            return LocalRun(run, "Succeeded", None, log)
        if storage.exists(f"{run}/{FAILED}"):
            return LocalRun(run, "Failed", None, log)
        return LocalRun(run, "Stopped" if log.exists() else "Pending", None, log)

    def stop(self, run: str, grace: float = 30.0) -> bool:
        """SIGTERM the run's process group (the runner stores its newest checkpoint), then
        SIGKILL after `grace` seconds. False when it was not running."""
        pid = self.pid(run)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.pid(run) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid(run) is not None:
            os.killpg(pid, signal.SIGKILL)
        (self.run_dir(run) / PID_FILE).unlink(missing_ok=True)
        return True


def follow_file(
    path: Path, alive: Callable[[], bool], out: Callable[[str], None], poll: float = 0.2
) -> None:
    """Print `path` and what is appended to it while `alive()`, like `tail -f`."""
    offset = 0
    pending = ""
    while True:
        running = alive()
        if path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                out(line)
        if not running:
            if pending:
                out(pending)
            return
        time.sleep(poll)
