"""S3-compatible storage through boto3 (AWS, MinIO, Ceph RGW). Credentials and region come from
boto3's own chain (AWS_* env, the pod's Secret, AWS_PROFILE and ~/.aws), the project's
`storage.region` and `endpoint_url` over it; never from files detk8s renders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from detk8s.storage.base import DEFAULT_CONNECTION, Connection, StorageError, StoredObject
from detk8s.util import replace_atomically

T = TypeVar("T")
_RAISE = object()
# What S3 servers answer for an absent object: GET says NoSuchKey, HEAD has no body to say it.
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
# Wide enough for collect's concurrent GETs; adaptive retries back off on 503 SlowDown.
MAX_POOL = 64


class S3Storage:
    def __init__(self, uri: str, connection: Connection = DEFAULT_CONNECTION) -> None:
        self.uri = uri
        self.connection = connection
        endpoint_url, region = connection.endpoint_url, connection.region
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,  # else boto3's own: AWS_REGION, AWS_PROFILE, ~/.aws/config
            config=Config(
                retries={"mode": "adaptive", "max_attempts": 8},
                max_pool_connections=MAX_POOL,
                s3={"addressing_style": "path"},  # MinIO and Ceph RGW without wildcard DNS
            ),
        )
        self.endpoint = endpoint or "AWS"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, e: Exception) -> StorageError:
        detail = e.response["Error"].get("Code", "") if isinstance(e, ClientError) else str(e)
        return StorageError(f"storage {action} s3://{self.bucket}/{self._key(key)}: {detail}")

    def _call(self, action: str, key: str, fn: Callable[[], T], missing: Any = _RAISE) -> T:
        """`fn()`, its failures as one-line StorageErrors; `missing` is the answer for an
        object that does not exist, where that is not a failure."""
        try:
            return fn()
        except ClientError as e:
            if missing is not _RAISE and e.response["Error"].get("Code") in MISSING_CODES:
                return cast(T, missing)
            raise self._fail(action, key, e) from None
        except BotoCoreError as e:
            raise self._fail(action, key, e) from None

    def get(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))[
                "Body"
            ].read()
            return body

        return self._call("get", key, read, missing=None)

    def put(self, key: str, data: bytes) -> None:
        self._call(
            "put", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key),
                                                       Body=data)
        )  # fmt: skip

    def upload(self, key: str, path: Path) -> None:
        self._call(
            "upload", key, lambda: self.client.upload_file(str(path), self.bucket, self._key(key))
        )

    def download(self, key: str, path: Path) -> bool:
        def fetch() -> bool:
            replace_atomically(
                path, lambda tmp: self.client.download_file(self.bucket, self._key(key), str(tmp))
            )
            return True

        return self._call("download", key, fetch, missing=False)

    def exists(self, key: str) -> bool:
        def head() -> bool:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True

        return self._call("head", key, head, missing=False)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        strip = len(self._key(""))
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield StoredObject(obj["Key"][strip:], obj["Size"], obj.get("ETag", ""))
        except (ClientError, BotoCoreError) as e:
            raise self._fail("list", prefix, e) from None

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        )
