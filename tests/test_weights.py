"""`detk8s weights push`: an upstream weights file (served over HTTP on loopback) into the
project's S3 storage (moto's server), and the value a run then uses."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3.servers import S3Endpoint


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the CLI's stderr is under test
        pass


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, directory) of a static HTTP server on loopback."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def s3_project(project: Path, moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Any:
    client = moto_s3.client()
    bucket = moto_s3.new_bucket("weights", client)
    cfg = yaml.safe_load((project / "detk8s.yaml").read_text())
    cfg["storage"] = {"uri": f"s3://{bucket}/runs", "endpoint_url": moto_s3.url}
    (project / "detk8s.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
    return client, bucket


def test_push_from_a_url_prints_the_value_to_use(
    s3_project: Any, http_files: tuple[str, Path], cli: Any, project: Path
) -> None:
    client, bucket = s3_project
    base, www = http_files
    payload = bytes(range(256)) * 4096  # 1 MiB
    (www / "PPLCNet_x0_75_pretrained.pdparams").write_bytes(payload)
    result = cli("weights", "push", f"{base}/PPLCNet_x0_75_pretrained.pdparams")
    assert result.code == 0, result.err
    uri = f"s3://{bucket}/runs/_weights/PPLCNet_x0_75_pretrained.pdparams"
    assert result.out == f"{uri}\n"
    body = client.get_object(Bucket=bucket, Key="runs/_weights/PPLCNet_x0_75_pretrained.pdparams")
    assert body["Body"].read() == payload
    # The printed value is what a run's pretrain_weights takes.
    (project / "configs/runs/W1.yml").write_text(f"_BASE_: L1.yml\npretrain_weights: {uri}\n")
    assert cli("validate", "W1").code == 0


def test_push_errors_are_one_line(
    s3_project: Any, http_files: tuple[str, Path], cli: Any, tmp_path: Path
) -> None:
    base, _ = http_files
    missing = cli("weights", "push", f"{base}/nope.pdparams")
    assert (missing.code, missing.err) == (
        1, f"downloading {base}/nope.pdparams\nerror: cannot download {base}/nope.pdparams: "
        "HTTP 404 File not found\n",
    )  # fmt: skip
    assert cli("weights", "push", str(tmp_path / "none.pdparams")).err == (
        f"error: {tmp_path / 'none.pdparams'}: no such file\n"
    )
    secret = cli("weights", "push", "https://user:hunter2@example.com/w.pdparams")
    assert secret.code == 2 and "hunter2" not in secret.err
