"""S3-compatible storage through boto3 (AWS, MinIO, Ceph RGW). Credentials come from the
environment (or the pod's Secret), never from config files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from detk8s.errors import DetkError
from detk8s.storage.base import Storage, StoredObject
from detk8s.util import replace_atomically

# Wide enough for collect's concurrent GETs; adaptive retries back off on 503 SlowDown.
MAX_POOL = 64


class StorageError(DetkError):
    pass


class S3Storage:
    def __init__(self, uri: str, endpoint_url: str | None = None, region: str | None = None):
        self.uri = uri
        self.endpoint_url, self.region = endpoint_url, region
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(
                retries={"mode": "adaptive", "max_attempts": 8},
                max_pool_connections=MAX_POOL,
                s3={"addressing_style": "path"},  # MinIO and Ceph RGW without wildcard DNS
            ),
        )
        self.endpoint = endpoint or "AWS"

    def sibling(self, uri: str) -> Storage:
        from detk8s.storage.base import open_storage

        return open_storage(uri, self.endpoint_url, self.region)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, e: Exception) -> StorageError:
        detail = e.response["Error"].get("Code", "") if isinstance(e, ClientError) else str(e)
        return StorageError(f"storage {action} s3://{self.bucket}/{self._key(key)}: {detail}")

    def get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))[
                "Body"
            ].read()
            return body
        except ClientError as e:
            if e.response["Error"].get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail("get", key, e) from None
        except BotoCoreError as e:
            raise self._fail("get", key, e) from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as e:
            raise self._fail("put", key, e) from None

    def upload(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise self._fail("upload", key, e) from None

    def download(self, key: str, path: Path) -> bool:
        try:
            replace_atomically(
                path, lambda tmp: self.client.download_file(self.bucket, self._key(key), str(tmp))
            )
        except ClientError as e:
            if e.response["Error"].get("Code") in ("NoSuchKey", "404"):
                return False
            raise self._fail("download", key, e) from None
        except BotoCoreError as e:
            raise self._fail("download", key, e) from None
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response["Error"].get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail("head", key, e) from None
        except BotoCoreError as e:
            raise self._fail("head", key, e) from None

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
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise self._fail("delete", key, e) from None
