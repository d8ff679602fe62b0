"""Where a run's pretrained weights come from (`pretrain_weights`).

https://host/path/w.pdparams   the framework downloads it at start (needs egress)
s3://bucket/key/w.pdparams     `detk8s exec` fetches it before training (no egress needed)
/abs/path/w.pdparams           already in the image or on a mounted volume
pretrained/w.pdparams          relative: a file inside the run's dataset directory
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlparse

WeightsKind = Literal["url", "s3", "path", "dataset"]


@dataclass(frozen=True)
class WeightsSource:
    kind: WeightsKind
    value: str  # the URL, the s3:// URI, the absolute path, or the path inside the dataset

    @property
    def file_name(self) -> str:
        return PurePosixPath(urlparse(self.value).path).name


def redact(url: str) -> str:
    """`url` with any user:password@ replaced, for messages."""
    parsed = urlparse(url)
    if not (parsed.username or parsed.password):
        return url
    return parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()


def parse_weights_source(value: str) -> WeightsSource:
    """The source `value` names, or ValueError saying what is wrong with it."""
    if not value.strip():
        raise ValueError("is empty: give a URL, an s3:// URI or a path, or null for none")
    parsed = urlparse(value)
    if "://" in value:
        if parsed.username or parsed.password:
            raise ValueError("has credentials in the URL: keep them in a Secret")
        name = PurePosixPath(parsed.path).name
        name = "" if name in (".", "..") else name
        if parsed.scheme in ("http", "https") and parsed.netloc and name:
            return WeightsSource("url", value)
        if parsed.scheme == "s3" and parsed.netloc and name and not value.endswith("/"):
            return WeightsSource("s3", value)
        if parsed.scheme == "file" and parsed.path.startswith("/") and name:
            return WeightsSource("path", parsed.path)
        raise ValueError(
            f"{value!r} is not a weights file: use https://host/path/file, "
            "s3://bucket/path/file, an absolute path, or a path inside the dataset"
        )
    path = PurePosixPath(value)
    if path.is_absolute():
        return WeightsSource("path", value)
    if ".." in path.parts:
        raise ValueError(f"{value!r} leaves the dataset directory ('..')")
    return WeightsSource("dataset", path.as_posix())


def download(url: str, dest: Path, timeout: float = 60.0) -> int:
    """Stream an http(s) URL into `dest` (atomically); its size in bytes."""
    import shutil
    import urllib.error
    import urllib.request

    from detk8s.errors import DetkError
    from detk8s.util import replace_atomically

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
        except urllib.error.HTTPError as e:
            raise DetkError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise DetkError(f"cannot download {url}: {reason}") from None

    replace_atomically(dest, fetch)
    return dest.stat().st_size
