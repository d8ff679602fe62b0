"""examples/tiny as the integration tests use it: a fresh copy whose results go to a bucket of a
real S3 server, and the commands run in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def copy_tiny_project(dest: Path, storage: dict[str, Any], **settings: Any) -> Path:
    """examples/tiny without its outputs, its storage (and any other settings) replaced."""
    shutil.copytree(REPO / "examples/tiny", dest, ignore=shutil.ignore_patterns(
        "data", "output", "store", "summary.*", "map.png"))  # fmt: skip
    cfg = yaml.safe_load((dest / "detk8s.yaml").read_text())
    cfg.update(storage=storage, **settings)
    (dest / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@dataclass
class TinyProject:
    root: Path
    env: dict[str, str]
    client: Any
    bucket: str  # results under runs/
    python: str = sys.executable  # the interpreter `detk8s exec` runs in
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def exec(self, run: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "detk8s", "exec", run, *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=900, **kwargs,
        )  # fmt: skip

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "detk8s", *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"runs/{prefix}"
        )
        return [o["Key"].removeprefix("runs/") for p in pages for o in p.get("Contents", [])]

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=f"runs/{key}")["Body"].read()
        return body
