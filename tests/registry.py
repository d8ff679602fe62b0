"""A container registry as much as `detk8s` asks of one: Registry API v2 HEADs on manifests,
behind a bearer token (the dance real registries do)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest


class FakeRegistry(BaseHTTPRequestHandler):
    """Registry API v2, as much as a HEAD on a manifest needs, behind a bearer token."""

    manifests: ClassVar[set[str]] = set()
    has_everything: ClassVar[bool] = False  # answer every manifest: every image is pushed
    token = "fake-token"
    seen: ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        self.seen.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            host = self.headers["Host"]
            self.send_header(
                "WWW-Authenticate", f'Bearer realm="http://{host}/token",service="fake"'
            )
        else:
            found = self.has_everything or self.path in self.manifests
            self.send_response(200 if found else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps({"token": self.token}).encode()
        self.send_response(200 if self.path.startswith("/token?") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeRegistry.manifests, FakeRegistry.seen, FakeRegistry.has_everything = set(), [], False
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
