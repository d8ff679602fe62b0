"""S3-compatible storage through botocore and boto3's transfers (AWS, MinIO, Ceph RGW).
Credentials and region come from botocore's own chain (AWS_* env, the pod's Secret, AWS_PROFILE
and ~/.aws), the project's `storage.region` and `endpoint_url` over it; never from files detk8s
renders.

The client is botocore's: boto3 over it costs a third more to import and set up, which every
collect and submit would pay, and is imported only for what it adds, multipart uploads and
downloads. GETs go to a URL the client presigns, on a plain connection pool: botocore's
per-request machinery (events, signing headers, parsing) costs several times the GET itself, and
collect makes one GET per run. Everything else goes through the client."""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlparse

import botocore.session
import urllib3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path

from detk8s.storage.base import (
    DEFAULT_CONNECTION,
    Connection,
    Listing,
    StorageError,
    StoredObject,
)
from detk8s.util import replace_atomically, thread_map

T = TypeVar("T")
_RAISE = object()
# What S3 servers answer for an absent object: GET says NoSuchKey, HEAD has no body to say it.
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
# GETs in flight in get_many (each waits a round trip, little CPU), and connections to keep for
# them; adaptive retries back off on 503 SlowDown.
MAX_POOL = 64
PRESIGNED_SECONDS = 300  # a GET's URL is used at once
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


class S3Storage:
    page_size = 1000  # keys per listing request: S3's most

    def __init__(self, uri: str, connection: Connection = DEFAULT_CONNECTION) -> None:
        self.uri = uri
        self.connection = connection
        endpoint_url, region = connection.endpoint_url, connection.region
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        core = botocore.session.get_session()
        # Timestamps stay text: nothing here reads them, and parsing them with dateutil was two
        # thirds of the CPU a listing of a thousand runs took.
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        self.client: Any = core.create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,  # else botocore's own: AWS_REGION, AWS_PROFILE, ~/.aws/config
            config=Config(
                retries={"mode": "adaptive", "max_attempts": 8},
                max_pool_connections=MAX_POOL,
                s3={"addressing_style": "path"},  # MinIO and Ceph RGW without wildcard DNS
            ),
        )
        self.endpoint = endpoint or "AWS"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, e: Exception | str) -> StorageError:
        """One line: the action, the object, and the server's error code (or what went wrong)."""
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
        return self._read(key, self._presign(key))

    def get_many(
        self, keys: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[bytes | None]:
        """Every URL signed first, in one go, then the GETs on MAX_POOL threads: signing in the
        threads, each switching the GIL with 63 others, took twice the CPU."""
        urls = [self._presign(key) for key in keys]

        def read(i: int) -> bytes | None:
            body = self._read(keys[i], urls[i])
            if progress:
                progress(1)
            return body

        return thread_map(read, range(len(keys)), MAX_POOL)

    def _presign(self, key: str) -> str:
        return self._call("get", key, lambda: self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=PRESIGNED_SECONDS,
        ))  # fmt: skip

    def _read(self, key: str, url: str) -> bytes | None:
        try:
            resp = self._fetch(url)
        except urllib3.exceptions.HTTPError as e:
            raise self._fail("get", key, e) from None
        if resp.status == 404:
            return None
        if resp.status >= 300:
            found = _ERROR_CODE.search(resp.data)
            code = found.group(1).decode("ascii", "replace") if found else f"HTTP {resp.status}"
            raise self._fail("get", key, code)
        return resp.data

    def _fetch(self, url: str) -> urllib3.BaseHTTPResponse:
        """GET `url` on the endpoint's own pool (urllib3's PoolManager takes a lock and builds a
        pool key on every request: a quarter of a collect's CPU at 64 threads), else through the
        environment's proxy."""
        origin, proxy = self._route
        if proxy is None and url.startswith(f"{origin}/"):
            return self._pool.urlopen("GET", url[len(origin) :])
        return self._manager.request("GET", url)

    @cached_property
    def _route(self) -> tuple[str, str | None]:
        """The endpoint's origin, and the environment's proxy for it (HTTPS_PROXY, NO_PROXY...),
        as botocore uses it."""
        parsed = urlparse(self.client.meta.endpoint_url)
        proxy = urllib.request.getproxies().get(parsed.scheme)
        if proxy and urllib.request.proxy_bypass(parsed.hostname or ""):
            proxy = None
        return f"{parsed.scheme}://{parsed.netloc}", proxy

    @cached_property
    def _pool(self) -> urllib3.HTTPConnectionPool:
        return urllib3.connection_from_url(self._route[0], **self._pool_options())

    @cached_property
    def _manager(self) -> urllib3.PoolManager:
        proxy = self._route[1]
        if proxy:
            return urllib3.ProxyManager(proxy, **self._pool_options())
        return urllib3.PoolManager(**self._pool_options())

    def _pool_options(self) -> dict[str, Any]:
        """botocore's CA bundle, retries on 5xx, and room for get_many's concurrent GETs."""
        options: dict[str, Any] = {
            "maxsize": MAX_POOL, "block": False,
            "retries": urllib3.Retry(total=5, backoff_factor=0.2, allowed_methods=None,
                                     status_forcelist=(500, 502, 503, 504)),
            "timeout": urllib3.Timeout(connect=10, read=60),
        }  # fmt: skip
        if self.client.meta.endpoint_url.startswith("https:"):
            options["ca_certs"] = os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True)
        return options

    def put(self, key: str, data: bytes) -> None:
        self._call(
            "put", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key),
                                                       Body=data)
        )  # fmt: skip

    def upload(self, key: str, path: Path) -> None:
        def send() -> None:
            with path.open("rb") as f:
                self._transfer("upload", key, lambda t: t.upload(_Stream(f), self.bucket,
                                                                  self._key(key)))  # fmt: skip

        self._call("upload", key, send)

    def download(self, key: str, path: Path) -> bool:
        def fetch(tmp: Path) -> None:
            self._transfer("download", key,
                           lambda t: t.download(self.bucket, self._key(key), str(tmp)))  # fmt: skip

        def save() -> bool:
            replace_atomically(path, fetch)
            return True

        return self._call("download", key, save, missing=False)

    def _transfer(self, action: str, key: str, start: Callable[[Any], Any]) -> None:
        """Through boto3's transfer manager (multipart, parts in parallel, retried reads), as the
        client's upload_fileobj and download_file use it; when it gives up retrying a read cut
        short, that is a one-line StorageError too."""
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        from s3transfer.exceptions import RetriesExceededError

        with create_transfer_manager(self.client, TransferConfig()) as transfers:
            try:
                start(transfers).result()
            except RetriesExceededError as e:
                raise self._fail(action, key, e.last_exception or e) from None

    def exists(self, key: str) -> bool:
        def head() -> bool:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True

        return self._call("head", key, head, missing=False)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        for page in self._pages(prefix):
            yield from self._objects(page)

    def children(self, prefix: str = "") -> Listing:
        here = len(self._key(prefix))
        listing: Listing = ([], [])
        for page in self._pages(prefix, Delimiter="/"):
            listing[0].extend(
                p["Prefix"][here:].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
            listing[1].extend(self._objects(page))
        return listing

    def _pages(self, prefix: str, **options: Any) -> Iterator[dict[str, Any]]:
        """The ListObjectsV2 pages under `prefix`, failures as one-line StorageErrors."""
        # Not boto3's paginator: finding its model scans the directory of every AWS service
        # botocore knows, which took longer than listing a thousand runs.
        params = {"Bucket": self.bucket, "Prefix": self._key(prefix), "MaxKeys": self.page_size,
                  **options}  # fmt: skip
        while True:
            try:
                page = self.client.list_objects_v2(**params)
            except (ClientError, BotoCoreError) as e:
                raise self._fail("list", prefix, e) from None
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _objects(self, page: dict[str, Any]) -> Iterator[StoredObject]:
        """A page's objects, keys relative to the storage root."""
        strip = len(self._key(""))
        for obj in page.get("Contents", []):
            yield StoredObject(obj["Key"][strip:], obj["Size"], obj.get("ETag", ""))

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        )


class _Stream:
    """A file as a plain stream (no seek): boto3 then reads each part into memory before sending
    it. From a path or a seekable file it announces sizes taken when the upload starts, so a file
    that shrinks meanwhile (a trainer rewriting a checkpoint) sends less than it announced and
    waits on the server, a minute per try. Read as a stream, it ends short instead; checkpoint
    sync then sees the file changed and discards the upload."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)
