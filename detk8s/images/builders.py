"""The image builders on this machine: docker (buildx when present) or podman, and running them
with their output streamed and the current step tracked, so a failure can say where it failed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detk8s.credentials import credential_setting
from detk8s.errors import DetkError
from detk8s.images.image import ImageBuild

BUILDERS = ("docker", "podman")
TAIL_LINES = 25
PROBE_TIMEOUT = 10.0
# The step headers of podman/buildah, classic docker and buildx --progress=plain.
STEP = re.compile(
    r"^(?:STEP (?P<a>\d+/\d+): (?P<at>.*)"
    r"|Step (?P<b>\d+/\d+) : (?P<bt>.*)"
    r"|#\d+ \[(?:[\w.-]+ )?(?P<c>\d+/\d+)\] (?P<ct>.*))$"
)


class BuildError(DetkError):
    pass


@dataclass(frozen=True)
class Builder:
    name: str  # docker, buildx or podman
    exe: str  # the command, found on PATH

    def build_cmd(self, image: ImageBuild, context: Path) -> list[str]:
        """The build of `image` from `context` (image.context_dir)."""
        args = [f"--build-arg={k}={v}" for k, v in sorted(image.build_args.items())]
        if image.target:
            args.append(f"--target={image.target}")
        if self.name == "podman":
            # --layers: reuse podman's layer cache between builds (rootful podman's default).
            head = [self.exe, "build", "--layers"]
        elif self.name == "buildx":
            head = [self.exe, "buildx", "build", "--progress=plain", "--load"]
        else:
            head = [self.exe, "build"]
        dockerfile = context / image.dockerfile_in_context
        if image.context is not None and not dockerfile.is_file():  # outside its own context
            dockerfile = image.dockerfile
        return [*head, "-f", str(dockerfile), *args, "-t", image.ref, str(context)]

    def push_cmd(self, ref: str) -> list[str]:
        return [self.exe, "push", ref]

    def exists_locally(self, ref: str) -> bool:
        if self.name == "podman":
            cmd = [self.exe, "image", "exists", ref]
        else:
            cmd = [self.exe, "image", "inspect", "--format", "{{.Id}}", ref]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def detect(choice: str = "auto") -> Builder:
    """`docker` (buildx when its plugin is there) when its daemon answers, else `podman`."""
    if choice not in ("auto", *BUILDERS):
        raise BuildError(f"unknown builder {choice!r} (known: auto, {', '.join(BUILDERS)})")
    return _find(choice)


class NoBuilder(BuildError):
    pass


def _find(choice: str) -> Builder:
    problems = []
    for name in BUILDERS if choice == "auto" else (choice,):
        if shutil.which(name) is None:
            problems.append(f"{name}: not on PATH")
            continue
        if name == "podman":
            return Builder("podman", name)
        probe = _probe([name, "version", "--format", "{{.Server.Version}}"])
        if probe is not None:
            problems.append(f"docker: daemon not reachable ({probe})")
            continue
        buildx = _probe([name, "buildx", "version"]) is None
        return Builder("buildx" if buildx else "docker", name)
    hint = "; install docker or podman, or build in the cluster with --in-cluster"
    raise NoBuilder("no image builder: " + "; ".join(problems) + hint)


def _probe(cmd: list[str]) -> str | None:
    """None when `cmd` succeeds, else its first line of complaint."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"no answer in {PROBE_TIMEOUT:g} s"
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def shown(cmd: Sequence[str]) -> str:
    """A command as a shell line, build args that look like credentials masked."""
    out = []
    for arg in cmd:
        key, sep, value = arg.removeprefix("--build-arg=").partition("=")
        if arg.startswith("--build-arg=") and sep and credential_setting(key, value):
            arg = f"--build-arg={key}=***"
        out.append(shlex.quote(arg))
    return " ".join(out)


@dataclass
class Streamed:
    code: int
    step: str  # the last step header seen, "" if none
    tail: list[str]


def run_streamed(cmd: Sequence[str], echo: Callable[[str], None], steps_only: bool) -> Streamed:
    """Runs `cmd` with stdout and stderr merged, passing each line (or only the step headers) to
    `echo`, and keeps the last lines and the current step for a failure report."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    step = ""
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as e:
        raise BuildError(f"cannot run {cmd[0]}: {e.strerror}") from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            match = STEP.match(line)
            if match:
                number = match["a"] or match["b"] or match["c"]
                step = f"step {number}: {match['at'] or match['bt'] or match['ct']}"
            if match or not steps_only:
                echo(line)
    return Streamed(proc.returncode, step, list(tail))
