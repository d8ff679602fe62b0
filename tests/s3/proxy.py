"""A recording HTTP proxy in front of an S3 server: forwards every request unchanged and keeps
the order of (method, path). Tests read it to check the order in which objects were written,
across processes."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

HOP_BY_HOP = {"connection", "keep-alive", "expect", "transfer-encoding", "proxy-connection"}


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        target = urlparse(upstream)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore's PUTs

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy.log.append((self.command, unquote(urlparse(self.path).path)))
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=120)
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)  # fmt: skip
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        conn.putheader(name, value)  # Host too: SigV4 signed it
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler

    def writes(self, prefix: str) -> list[str]:
        """Keys under `prefix` (bucket-relative path) written, in order, one entry per write."""
        with self._lock:
            log = list(self.log)
        out = []
        for method, path in log:
            if method in ("PUT", "POST") and path.lstrip("/").startswith(prefix):
                key = path.lstrip("/")
                if not out or out[-1] != key:  # multipart: one entry per object
                    out.append(key)
        return out


@contextmanager
def recording_proxy(upstream: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
