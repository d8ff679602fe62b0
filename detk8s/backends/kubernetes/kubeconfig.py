"""Where the Kubernetes API is and how to prove who we are, as kubectl reads it: the kubeconfig
files in KUBECONFIG (or --kubeconfig, or ~/.kube/config) merged, first one wins; a context from
--context or current-context; else, inside a pod, the service account.

Static credentials (token, token file, client certificate, basic auth) are read here, which
spares every command the kubernetes package's import (its models are most of a submit's start).
Users with an `exec` plugin or an `auth-provider` are handed to the kubernetes client's own
loader, which runs and refreshes them.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detk8s.errors import DetkError, first_line
from detk8s.yaml_io import read_mapping

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DELEGATED_AUTH = ("exec", "auth-provider")  # the kubernetes client runs these


class KubeconfigError(DetkError):
    pass


@dataclass(frozen=True)
class Connection:
    context: str
    namespace: str | None  # the context's, if it names one
    server: str
    authorization: str | None = field(default=None, repr=False)  # the header's value
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None  # tls-server-name: the name the certificate is checked for
    proxy: str | None = None
    # The kubernetes client's Configuration, when it loaded the credentials (exec plugins).
    client_configuration: Any = field(default=None, repr=False, compare=False)


def resolve(context: str | None = None, kubeconfig: str | None = None) -> Connection:
    """The connection kubectl would use; KubeconfigError (one line) when there is none."""
    files = _files(kubeconfig)
    if not files and not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    if not files:
        listed = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        raise KubeconfigError(f"no usable kubeconfig: no file at {listed} (KUBECONFIG, "
                              "--kubeconfig), and not in a pod")  # fmt: skip
    merged = _merge(files)
    name = context or merged["current-context"]
    if not name:
        where = ", ".join(str(f) for f in files) or (kubeconfig or DEFAULT_KUBECONFIG)
        raise KubeconfigError(f"no usable kubeconfig: no current context in {where}")
    ctx = _entry(merged, "contexts", name, "context")
    cluster = _entry(merged, "clusters", ctx.get("cluster"), "cluster")
    user = _entry(merged, "users", ctx.get("user"), "user") if ctx.get("user") else {}
    if any(user.get(key) for key in DELEGATED_AUTH):
        return _from_client(name, ctx, kubeconfig)
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigError(f"no usable kubeconfig: cluster {ctx['cluster']!r} has no server")
    try:
        return _static(name, ctx, cluster, user, merged["origins"], server)
    except (OSError, ValueError, TypeError) as e:  # a token file, a certificate's base64
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
        raise KubeconfigError(f"no usable kubeconfig: context {name!r}: {reason}{where}") from None


def _static(
    name: str, ctx: dict[str, Any], cluster: dict[str, Any], user: dict[str, Any],
    origins: dict[tuple[str, str], Path], server: str,
) -> Connection:  # fmt: skip
    user_dir = origins.get(("users", str(ctx.get("user"))))
    return Connection(
        context=name,
        namespace=ctx.get("namespace") or None,
        server=server.rstrip("/"),
        authorization=_authorization(user, user_dir),
        ca_file=_file(cluster, "certificate-authority", origins.get(("clusters", ctx["cluster"]))),
        cert_file=_file(user, "client-certificate", user_dir),
        key_file=_file(user, "client-key", user_dir),
        verify=not cluster.get("insecure-skip-tls-verify", False),
        server_name=cluster.get("tls-server-name") or None,
        proxy=cluster.get("proxy-url") or None,
    )


def in_cluster() -> Connection:
    """The pod's service account: its token, the cluster's CA and the API's service address."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    try:
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
    except OSError as e:
        raise KubeconfigError(f"no usable service account in this pod: {e}") from None
    return Connection(
        context="in-cluster",
        namespace=namespace,
        server=f"https://{f'[{host}]' if ':' in host else host}:{port}",
        authorization=f"Bearer {token}",
        ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
    )


def _files(kubeconfig: str | None) -> list[Path]:
    """The files to read: an explicit --kubeconfig must exist; KUBECONFIG's missing entries
    are skipped, as kubectl skips them."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.exists():
            raise KubeconfigError(f"no usable kubeconfig: {kubeconfig}: no such file")
        return [path]
    listed = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    paths = [Path(f).expanduser() for f in listed.split(os.pathsep) if f]
    return [p for p in paths if os.path.lexists(p)]


def _merge(files: list[Path]) -> dict[str, Any]:
    """Clusters, users and contexts by name, and current-context: the first file to set one
    wins. `origins` remembers each entry's file, against which its relative paths resolve."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": ""}
    origins: dict[tuple[str, str], Path] = {}
    for path in files:
        config = read_mapping(path)  # strictly, as our own configs
        merged["current-context"] = merged["current-context"] or config.get("current-context")
        for section in ("clusters", "users", "contexts"):
            for item in config.get(section) or []:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise KubeconfigError(f"{path}: {section}: an entry without a name")
                if item["name"] not in merged[section]:
                    merged[section][item["name"]] = item
                    origins[(section, item["name"])] = path.parent
    merged["origins"] = origins
    return merged


def _entry(merged: dict[str, Any], section: str, name: Any, key: str) -> dict[str, Any]:
    item = merged[section].get(name)
    if item is None:
        raise KubeconfigError(f"no usable kubeconfig: no {key} named {name!r}")
    value = item.get(key)
    if not isinstance(value, dict):
        raise KubeconfigError(f"no usable kubeconfig: {key} {name!r} is not a mapping")
    return value


def _authorization(user: dict[str, Any], base: Path | None) -> str | None:
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _relative(user["tokenFile"], base).read_text().strip()
    if token:
        return f"Bearer {token}"
    if user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"
    return None


def _file(entry: dict[str, Any], key: str, base: Path | None) -> str | None:
    """`key` as a path (relative to its kubeconfig), or `key-data` written to a private file
    (TLS libraries read certificates and keys from files)."""
    if entry.get(f"{key}-data"):
        try:
            data = base64.b64decode(entry[f"{key}-data"], validate=True)
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            raise ValueError(f"{key}-data is not base64") from None
        return _private_file(data)
    if entry.get(key):
        return str(_relative(entry[key], base))
    return None


def _relative(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else base / path


_PRIVATE_DIR: list[str] = []


def _private_file(data: bytes) -> str:
    if not _PRIVATE_DIR:
        _PRIVATE_DIR.append(tempfile.mkdtemp(prefix="detk8s-kube-"))  # mode 0700
        atexit.register(shutil.rmtree, _PRIVATE_DIR[0], True)
    fd, path = tempfile.mkstemp(dir=_PRIVATE_DIR[0])  # mode 0600
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _from_client(name: str, ctx: dict[str, Any], kubeconfig: str | None) -> Connection:
    """A user the kubernetes client authenticates (it runs the exec plugin)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG,
            context=name,
            client_configuration=cfg,
        )
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        raise KubeconfigError(f"no usable kubeconfig: {first_line(e)}") from None
    authorization = (cfg.api_key or {}).get("authorization")
    return Connection(
        context=name,
        namespace=ctx.get("namespace") or None,
        server=cfg.host.rstrip("/"),
        authorization=authorization,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=cfg.verify_ssl,
        server_name=getattr(cfg, "tls_server_name", None),
        proxy=cfg.proxy,
        client_configuration=cfg,
    )
