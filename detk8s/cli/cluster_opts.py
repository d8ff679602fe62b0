"""The options every command that talks to a cluster shares, and how they pick the cluster."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from detk8s.backends.kubernetes.cluster import Cluster
    from detk8s.project import Project

ContextOpt = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="kubeconfig context (default: the project's, the current one).",
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", metavar="NAME",
                 help="Namespace (default: the run's, the project's, the "
                 "context's, default).", show_default=False),
]  # fmt: skip
KubeconfigOpt = Annotated[
    str | None,
    typer.Option("--kubeconfig", metavar="PATH",
                 help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config).",
                 show_default=False),
]  # fmt: skip


class Backend(str, Enum):
    kubernetes = "kubernetes"
    local = "local"


BackendOpt = Annotated[
    Backend | None,
    typer.Option("--backend", help="kubernetes or local (default: the project's backend)."),
]


def backend_of(proj: Project, backend: Backend | None) -> Backend:
    return backend or Backend(proj.settings.backend)


class DryRun(str, Enum):
    none = "none"
    client = "client"
    server = "server"


def connect(
    proj: Project, context: str | None, namespace: str | None, kubeconfig: str | None = None
) -> Cluster:
    """The cluster as kubectl would pick it: --kubeconfig, --context, -n; then the project's
    context and namespace; then the kubeconfig's current context and its namespace."""
    from detk8s.backends.kubernetes.cluster import Cluster

    settings = proj.settings
    return Cluster(context or settings.context, namespace or settings.namespace, kubeconfig)
