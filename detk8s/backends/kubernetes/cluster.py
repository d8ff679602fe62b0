"""The Kubernetes API as detk8s uses it: one client with retries, and failures as one line.

Access comes from a kubeconfig (KUBECONFIG or ~/.kube/config; context from --context or the
project file) or, inside a pod, from the service account. 429 and 5xx answers are retried with
backoff by urllib3 (honouring Retry-After); creates stay safe to retry because a repeated create
answers 409 and submit compares spec hashes.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from detk8s.backends.kubernetes.kinds import (
    KINDS,
    KUEUE_GROUP,
    KUEUE_VERSION,
    RUNTIME_PLURAL,
    TRAINER_GROUP,
    TRAINER_VERSION,
    JobKind,
)
from detk8s.errors import DetkError
from detk8s.yaml_io import read_mapping

T = TypeVar("T")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ClusterError(DetkError):
    pass


@dataclass(frozen=True)
class Target:
    context: str
    namespace: str
    host: str


def _retries() -> urllib3.Retry:
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


class Cluster:
    def __init__(
        self, context: str | None = None, namespace: str | None = None,
        kubeconfig: str | None = None,
    ) -> None:  # fmt: skip
        cfg = client.Configuration()
        # Read KUBECONFIG now: the client reads it once, when first imported.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        for file in kubeconfig.split(os.pathsep):  # read as strictly as our own configs first
            path = Path(file).expanduser()
            if file and os.path.lexists(path):
                read_mapping(path)
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
            contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = (
                next((c for c in contexts if c["name"] == context), current) if context else current
            )
            ctx_name = chosen["name"]
            ctx_namespace = chosen["context"].get("namespace")
        except (ConfigException, FileNotFoundError, TypeError, ValueError, KeyError) as kube_error:
            if context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise ClusterError(f"no usable kubeconfig: {_first_line(kube_error)}") from None
            config.load_incluster_config(client_configuration=cfg)
            ctx_name = "in-cluster"
            ctx_namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
        cfg.retries = _retries()
        cfg.connection_pool_maxsize = 32  # concurrent sweeps share one pool
        self.target = Target(ctx_name, namespace or ctx_namespace or "default", cfg.host)
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

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
        """`fn(...)` with its failures as one-line ClusterErrors (ApiException 404/409 pass)."""
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status in (404, 409):
                raise
            raise ClusterError(self._describe(e)) from None
        except urllib3.exceptions.HTTPError as e:
            reason = getattr(e, "reason", None) or e
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.target.host} "
                f"(context {self.target.context!r}): {_first_line(reason)}"
            ) from None

    def _describe(self, e: ApiException) -> str:
        where = f"context {self.target.context!r}, namespace {self.target.namespace!r}"
        if e.status in (401, 403):
            what = "not authenticated" if e.status == 401 else "forbidden"
            return f"{what} ({e.status}) in {where}: {_api_message(e)}"
        return f"Kubernetes API error {e.status} in {where}: {_api_message(e)}"

    # Jobs (Kubeflow custom resources)

    def get_job(self, kind: JobKind, name: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = self.call(
                self.custom.get_namespaced_custom_object,
                kind.group, kind.version, self.namespace, kind.plural, name,
            )  # fmt: skip
            return job
        except ApiException:  # 404: no such job, or no such API on this cluster
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
        try:
            listed: dict[str, Any] = self.call(
                self.custom.list_namespaced_custom_object,
                KUEUE_GROUP, KUEUE_VERSION, self.namespace, "workloads",
            )  # fmt: skip
        except (ApiException, ClusterError):  # 404: no Kueue; 403: not ours to read
            return []
        return list(listed.get("items") or [])

    def list_jobs(self, label_selector: str) -> list[tuple[JobKind, dict[str, Any]]]:
        out = []
        for kind in KINDS.values():
            try:
                items = self.call(
                    self.custom.list_namespaced_custom_object,
                    kind.group, kind.version, self.namespace, kind.plural,
                    label_selector=label_selector,
                )["items"]  # fmt: skip
            except ApiException:  # 404: this API is not installed (Trainer v2, or v1)
                continue
            out += [(kind, j) for j in items]
        return out

    def has_runtime(self, name: str) -> bool | None:
        """Whether the ClusterTrainingRuntime `name` exists (None: cannot tell, e.g. 403)."""
        try:
            self.call(
                self.custom.get_cluster_custom_object,
                TRAINER_GROUP, TRAINER_VERSION, RUNTIME_PLURAL, name,
            )  # fmt: skip
            return True
        except ApiException:
            return False
        except ClusterError:
            return None


def _api_message(e: ApiException) -> str:
    import json

    try:
        body = json.loads(e.body or "")
        return _first_line(body.get("message") or e.reason)
    except (ValueError, AttributeError):
        return _first_line(e.reason or e.body or "")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
