"""Object storage for run results: `s3://bucket/prefix` (boto3, imported only when used) or
`file:///path` (the embedded default, and the local backend's).

Layout under the root, one prefix per run (the contract `collect` and `submit` read):
    <run>/train.log  <run>/eval.json  <run>/weights/...  <run>/checkpoints/...
    <run>/DONE       written last, after everything it vouches for
    <run>/FAILED     instead of DONE, with the reason
Top-level names that start with `_` are not runs (run names start with a letter):
    _weights/...     pretrained weights pushed by `detk8s weights push`
"""

from __future__ import annotations

from detk8s.storage.base import Storage, StoredObject, open_storage

DONE = "DONE"
FAILED = "FAILED"
EVAL_JSON = "eval.json"
TRAIN_LOG = "train.log"
WEIGHTS_PREFIX = "_weights"

__all__ = [
    "DONE",
    "EVAL_JSON",
    "FAILED",
    "TRAIN_LOG",
    "WEIGHTS_PREFIX",
    "Storage",
    "StoredObject",
    "open_storage",
]
