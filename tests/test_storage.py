"""The storage backends' shared behaviour, on a directory and on real S3 servers (moto, Ceph):
batched GETs, listings over several pages, failures as one line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from s3.servers import S3Bucket, S3Endpoint, delete_bucket

from detk8s.storage import Connection, StorageError, open_storage

KEYS = ["a/1.json", "a/2.json", "b/x/3.json", "c.json", "d/4.json"]


@pytest.fixture(params=["file", "moto", "ceph"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if request.param == "file":
        yield open_storage(f"file://{tmp_path}/store")
        return
    endpoint: S3Endpoint = request.getfixturevalue(f"{request.param}_s3")
    client = endpoint.client()
    bucket = endpoint.new_bucket(client=client)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    store = open_storage(f"s3://{bucket}/runs", Connection(endpoint.url, endpoint.region))
    store.page_size = 2  # every listing below spans several pages
    yield store
    delete_bucket(client, bucket)


def test_get_many_keeps_order_answers_none_for_absent_and_reports_each(storage: Any) -> None:
    for i, key in enumerate(KEYS):
        storage.put(key, f"body {i}".encode())
    wanted = [KEYS[3], "nothing/here.json", *KEYS[:3], KEYS[4]]
    done: list[int] = []
    bodies = storage.get_many(wanted, done.append)
    assert bodies == [b"body 3", None, b"body 0", b"body 1", b"body 2", b"body 4"]
    assert sum(done) == len(wanted)
    assert storage.get_many([]) == []


def test_listings_span_pages(storage: Any) -> None:
    for i, key in enumerate(KEYS):
        storage.put(key, f"body {i}".encode())
    assert sorted(o.key for o in storage.list()) == KEYS
    assert sorted(o.key for o in storage.list("a/")) == KEYS[:2]
    prefixes, objects = storage.children()
    assert (prefixes, [o.key for o in objects]) == (["a", "b", "d"], ["c.json"])
    assert [o.size for o in storage.list()] == [6] * len(KEYS)


@pytest.mark.parametrize("s3_endpoint", ["ceph"], indirect=True)  # moto checks no signature
def test_a_refused_get_is_one_line_naming_the_object(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_bucket.endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_storage(f"s3://{s3_bucket.name}/runs",
                         Connection(s3_bucket.endpoint.url, s3_bucket.endpoint.region))  # fmt: skip
    with pytest.raises(StorageError) as e:
        store.get_many(["L1/eval.json", "L2/eval.json"])
    assert str(e.value) in (
        f"storage get s3://{s3_bucket.name}/runs/L{i}/eval.json: SignatureDoesNotMatch"
        for i in (1, 2)
    )
    assert "not-the-secret" not in str(e.value)


class CutShort(BaseHTTPRequestHandler):
    """An S3 endpoint whose every GET body ends after 10 of the 100 bytes it announced."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._headers()

    def do_GET(self) -> None:
        self._headers()
        self.wfile.write(b"x" * 10)
        self.close_connection = True


def test_a_download_cut_short_every_time_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-secret")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    store = open_storage("s3://bucket/runs", Connection(url, "us-east-1"))
    try:
        with pytest.raises(StorageError) as e:
            store.download("L1/weights.pdparams", tmp_path / "weights.pdparams")
    finally:
        server.shutdown()
    message = str(e.value)
    assert message.startswith("storage download s3://bucket/runs/L1/weights.pdparams: ")
    assert "\n" not in message and "the-secret" not in message
    assert list(tmp_path.iterdir()) == []
