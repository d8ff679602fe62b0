"""The Kubernetes API as detk8s uses it: JSON over one connection pool for what it asks often
(rest.py), the kubernetes client for the rest (pods as models, log streams, build jobs), made
only when first needed; failures as one line.

Access comes from a kubeconfig or, inside a pod, the service account (kubeconfig.py).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import urllib3

from detk8s.backends.kubernetes.kinds import (
    KINDS,
    KUEUE_GROUP,
    KUEUE_VERSION,
    RUNTIME_PLURAL,
    TRAINER_GROUP,
    TRAINER_VERSION,
    JobKind,
)
from detk8s.backends.kubernetes.kubeconfig import Connection, KubeconfigError, resolve
from detk8s.backends.kubernetes.rest import POOL_SIZE, ApiError, Rest, retries
from detk8s.errors import DetkError, first_line
from detk8s.util import thread_map

T = TypeVar("T")


class ClusterError(DetkError):
    pass


@dataclass(frozen=True)
class Target:
    context: str
    namespace: str
    host: str


def _client_errors() -> tuple[type[Exception], ...]:
    """The kubernetes client's ApiException, once something has imported the client."""
    module = sys.modules.get("kubernetes.client.exceptions")
    return (module.ApiException,) if module else ()


class Cluster:
    def __init__(
        self, context: str | None = None, namespace: str | None = None,
        kubeconfig: str | None = None,
    ) -> None:  # fmt: skip
        try:
            self.connection: Connection = resolve(context, kubeconfig)
        except KubeconfigError as e:
            raise ClusterError(str(e)) from None
        conn = self.connection
        self.target = Target(conn.context, namespace or conn.namespace or "default", conn.server)
        self.rest = Rest(conn)

    @cached_property
    def api(self) -> Any:
        """The kubernetes client, on the same credentials."""
        from kubernetes import client

        cfg = self.connection.client_configuration or client.Configuration()
        if self.connection.client_configuration is None:
            conn = self.connection
            cfg.host = conn.server
            cfg.ssl_ca_cert = conn.ca_file
            cfg.cert_file, cfg.key_file = conn.cert_file, conn.key_file
            cfg.verify_ssl = conn.verify
            cfg.tls_server_name = conn.server_name
            cfg.proxy = conn.proxy
            if conn.authorization:
                cfg.api_key = {"authorization": conn.authorization}
        cfg.retries = retries()
        cfg.connection_pool_maxsize = POOL_SIZE
        return client.ApiClient(cfg)

    @cached_property
    def core(self) -> Any:
        """The core API as the client's models: pods, events and logs (streamed)."""
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def in_namespace(self, namespace: str | None) -> Cluster:
        """This cluster (the same connection) acting in another namespace."""
        if not namespace or namespace == self.namespace:
            return self
        view = copy.copy(self)
        view.target = dataclasses.replace(self.target, namespace=namespace)
        return view

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(...)` with its failures as one-line ClusterErrors; 404 and 409 pass as ApiError,
        whichever client answered."""
        try:
            return fn(*args, **kwargs)
        except ApiError as e:
            if e.status in (404, 409):
                raise
            raise ClusterError(self.describe(e)) from None
        except _client_errors() as e:
            status: int = e.status  # type: ignore[attr-defined]
            error = ApiError(status, e.reason or "", e.body or "")  # type: ignore[attr-defined]
            if status in (404, 409):
                raise error from None
            raise ClusterError(self.describe(error)) from None
        except urllib3.exceptions.HTTPError as e:
            reason = getattr(e, "reason", None) or e
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.target.host} "
                f"(context {self.target.context!r}): {first_line(reason)}"
            ) from None

    def describe(self, e: ApiError) -> str:
        """One line: what the API server said, and where."""
        where = f"context {self.target.context!r}, namespace {self.target.namespace!r}"
        if e.status in (401, 403):
            what = "not authenticated" if e.status == 401 else "forbidden"
            return f"{what} ({e.status}) in {where}: {first_line(e.message)}"
        return f"Kubernetes API error {e.status} in {where}: {first_line(e.message)}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call (rest.Rest.request) through `call`."""
        return self.call(self.rest.request, method, path, **kwargs)

    def jobs_path(self, kind: JobKind, name: str = "") -> str:
        path = f"/apis/{kind.api_version}/namespaces/{self.namespace}/{kind.plural}"
        return f"{path}/{name}" if name else path

    def config_maps_path(self, name: str = "") -> str:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        return f"{path}/{name}" if name else path

    # Jobs (Kubeflow custom resources)

    def get_job(self, kind: JobKind, name: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = self.request("GET", self.jobs_path(kind, name))
            return job
        except ApiError:  # 404: no such job, or no such API on this cluster
            return None

    def find_job(
        self, name: str, first: JobKind | None = None
    ) -> tuple[JobKind, dict[str, Any]] | None:
        """The job named `name`, of whichever kind (`first` asked first)."""
        kinds = [first] if first else []
        for kind in [*kinds, *(k for k in KINDS.values() if k is not first)]:
            job = self.get_job(kind, name)
            if job is not None:
                return kind, job
        return None

    def kueue_workloads(self) -> list[dict[str, Any]]:
        """Kueue's Workloads in the namespace; none where Kueue is not installed."""
        path = f"/apis/{KUEUE_GROUP}/{KUEUE_VERSION}/namespaces/{self.namespace}/workloads"
        try:
            listed: dict[str, Any] = self.request("GET", path)
        except (ApiError, ClusterError):  # 404: no Kueue; 403: not ours to read
            return []
        return list(listed.get("items") or [])

    def list_jobs(self, label_selector: str) -> list[tuple[JobKind, dict[str, Any]]]:
        """The jobs of every kind with these labels (each kind's API asked at once)."""

        def listed(kind: JobKind) -> list[tuple[JobKind, dict[str, Any]]]:
            query = {"labelSelector": label_selector}
            try:
                items = self.request("GET", self.jobs_path(kind), query=query)["items"]
            except ApiError:  # 404: this API is not installed (Trainer v2, or v1)
                return []
            return [(kind, j) for j in items]

        return [job for jobs in thread_map(listed, KINDS.values(), len(KINDS)) for job in jobs]

    def has_runtime(self, name: str) -> bool | None:
        """Whether the ClusterTrainingRuntime `name` exists (None: cannot tell, e.g. 403)."""
        try:
            self.request("GET", f"/apis/{TRAINER_GROUP}/{TRAINER_VERSION}/{RUNTIME_PLURAL}/{name}")
            return True
        except ApiError:
            return False
        except ClusterError:
            return None
