"""Object storage for run results: `s3://bucket/prefix` (botocore, imported only when used) or
`file:///path` (the embedded default, and the local backend's).

Layout under the root, one prefix per run (the contract `exec` writes and `collect` reads):
    <run>/train.log  <run>/eval.log  <run>/eval.json  <run>/weights/...
    <run>/checkpoints/<name>.json + <name>/<version>/...   (see detk8s.runner.checkpoints)
    <run>/logs/<replica>/NNNNNN.log                         the log while training (runner.logsync)
    <run>/DONE       written last, after everything it vouches for
    <run>/FAILED     instead of DONE, with the reason
Top-level names that start with `_` are not runs (run names start with a letter):
    _weights/...     pretrained weights pushed by `detk8s weights push`
    _index/<run>.json  the run's eval.json again, written after its results and just before
                     its DONE: `collect` and `submit` list these, one key per finished run,
                     instead of every run's checkpoints
"""

from __future__ import annotations

from urllib.parse import urlparse

from detk8s.errors import UsageError
from detk8s.storage.base import (
    DEFAULT_CONNECTION,
    Connection,
    Storage,
    StorageError,
    StoredObject,
)
from detk8s.storage.local import LocalStorage

DONE = "DONE"
FAILED = "FAILED"
EVAL_JSON = "eval.json"
TRAIN_LOG = "train.log"
EVAL_LOG = "eval.log"
WEIGHTS_DIR = "weights"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
WEIGHTS_PREFIX = "_weights"
INDEX_PREFIX = "_index"


def index_key(run: str) -> str:
    return f"{INDEX_PREFIX}/{run}.json"


def open_storage(uri: str, connection: Connection = DEFAULT_CONNECTION) -> Storage:
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        from detk8s.storage.s3 import S3Storage

        return S3Storage(uri, connection)
    if scheme in ("file", ""):
        return LocalStorage(uri, connection)
    raise UsageError(f"storage {uri!r}: use s3://bucket/prefix or file:///path")


__all__ = [
    "CHECKPOINTS_DIR",
    "DONE",
    "EVAL_JSON",
    "EVAL_LOG",
    "FAILED",
    "INDEX_PREFIX",
    "LOGS_DIR",
    "TRAIN_LOG",
    "WEIGHTS_DIR",
    "WEIGHTS_PREFIX",
    "Connection",
    "LocalStorage",
    "Storage",
    "StorageError",
    "StoredObject",
    "index_key",
    "open_storage",
]
