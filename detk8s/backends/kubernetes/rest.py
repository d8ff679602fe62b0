"""The Kubernetes REST API as JSON over one urllib3 pool: what detk8s's hot paths (submit, status,
delete) ask of a cluster. Objects stay plain dicts, as the server sends them; nothing is turned
into the kubernetes client's models and back.

429 and 5xx answers are retried with backoff (honouring Retry-After); creates stay safe to
retry because a repeated create answers 409 and submit compares spec hashes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from detk8s import __version__
from detk8s.backends.kubernetes.kubeconfig import Connection

RETRY_STATUSES = (429, 500, 502, 503, 504)
POOL_SIZE = 32  # concurrent sweeps share one pool
TIMEOUT = urllib3.Timeout(connect=10, read=120)
JSON = "application/json"


class ApiError(Exception):
    """An answer of 400 or more, as the API server gave it."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body

    @property
    def message(self) -> str:
        """The Status object's message, else the HTTP reason."""
        try:
            return str(json.loads(self.body).get("message") or self.reason)
        except (TypeError, ValueError, AttributeError):
            return self.reason or self.body


def retries() -> urllib3.Retry:
    return urllib3.Retry(
        total=6,
        connect=2,
        read=2,
        status=6,
        backoff_factor=0.1,
        backoff_max=5,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every verb: see the module docstring on creates
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class Rest:
    def __init__(self, conn: Connection) -> None:
        self.server = conn.server
        options: dict[str, Any] = {
            "maxsize": POOL_SIZE, "retries": retries(), "timeout": TIMEOUT, "block": False,
        }  # fmt: skip
        if conn.server.startswith("https:"):
            options |= {
                "cert_reqs": "CERT_REQUIRED" if conn.verify else "CERT_NONE",
                "ca_certs": conn.ca_file,
                "cert_file": conn.cert_file,
                "key_file": conn.key_file,
            }
            if conn.server_name:
                options["server_hostname"] = conn.server_name
        self.pool = (
            urllib3.ProxyManager(conn.proxy, **options) if conn.proxy
            else urllib3.PoolManager(**options)
        )  # fmt: skip
        self.headers = {"Accept": JSON, "User-Agent": f"detk8s/{__version__}"}
        if conn.authorization:
            self.headers["Authorization"] = conn.authorization

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """The decoded JSON answer; ApiError for 400 and up."""
        url = self.server + quote(path) + (f"?{urlencode(query)}" if query else "")
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self.pool.request(method, url, body=data, headers=headers)
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", resp.data.decode("utf-8", "replace"))
        return json.loads(resp.data) if resp.data else None
