"""Where a dataset lives (`source:` of a dataset config), parsed in one place.

s3://bucket/path/        object storage: `detk8s exec` syncs it into the pod
pvc://claim/sub/path     a PersistentVolumeClaim, mounted read-only
file:///abs or file://rel  this machine's disk (local runs)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from detk8s.kube_values import dns_subdomain

SCHEMES = ("s3://", "pvc://", "file://")


@dataclass(frozen=True)
class DataSource:
    kind: Literal["s3", "pvc", "file"]
    uri: str
    claim: str | None = None  # pvc: the claim
    sub_path: str | None = None  # pvc: the directory inside it
    path: str | None = None  # file: the directory

    @property
    def synced(self) -> bool:
        """Copied into the pod by `detk8s exec`, rather than mounted or already there."""
        return self.kind == "s3"


def parse_source(uri: str) -> DataSource:
    """The source `uri` names, or ValueError saying what is wrong."""
    if uri.startswith("s3://"):
        if not uri.removeprefix("s3://").split("/")[0]:
            raise ValueError("s3:// needs a bucket: s3://BUCKET/path/")
        return DataSource("s3", uri)
    if uri.startswith("pvc://"):
        claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
        if not claim:
            raise ValueError("pvc:// needs a claim: pvc://CLAIM[/sub/path]")
        dns_subdomain(claim)
        if ".." in sub_path.split("/"):
            raise ValueError(f"{uri}: the sub path leaves the claim ('..')")
        return DataSource("pvc", uri, claim=claim, sub_path=sub_path.strip("/") or None)
    if uri.startswith("file://"):
        return DataSource("file", uri, path=uri.removeprefix("file://").rstrip("/") or "/")
    raise ValueError("must start with s3://, pvc:// or file://")
