"""Is a tag in its registry? One HEAD on the Registry HTTP API v2 manifest, with the bearer-token
dance when the registry asks for it. Credentials come from the docker/podman auth files and are
never printed: messages name the registry and the HTTP status only."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
TIMEOUT = 5.0


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port] as written, docker.io for Docker Hub
    repository: str  # path inside the registry
    tag: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, _, tag = ref.rpartition(":")
        if not name or "/" in tag:
            name, tag = ref, "latest"
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest, tag)
        return cls(DOCKER_HUB, name if rest else f"library/{name}", tag)

    @property
    def api_base(self) -> str:
        host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        scheme = "http" if host.rsplit(":", 1)[0] in LOOPBACK else "https"
        return f"{scheme}://{host}"


@dataclass(frozen=True)
class Presence:
    exists: bool | None  # None: could not tell
    detail: str = ""


def manifest_exists(ref: str, timeout: float = TIMEOUT) -> Presence:
    image = ImageRef.parse(ref)
    url = f"{image.api_base}/v2/{image.repository}/manifests/{image.tag}"
    try:
        status, challenge = _head(url, None, timeout)
        if status == 401 and challenge.lower().startswith("bearer "):
            token = _token(challenge, image, timeout)
            status, _ = _head(url, f"Bearer {token}", timeout)
        elif status == 401 and (basic := _basic_auth(image.registry)):
            status, _ = _head(url, f"Basic {basic}", timeout)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return Presence(None, f"cannot reach registry {image.registry}: {reason}")
    if status == 200:
        return Presence(True)
    if status == 404:
        return Presence(False)
    return Presence(None, f"registry {image.registry} answered HTTP {status}")


def _head(url: str, authorization: str | None, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
    if authorization:
        request.add_unredirected_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("WWW-Authenticate", "")


def _token(challenge: str, image: ImageRef, timeout: float) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise ValueError("bearer challenge without a realm")
    params.setdefault("scope", f"repository:{image.repository}:pull")
    request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}")
    basic = _basic_auth(image.registry)
    if basic:
        request.add_unredirected_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.load(response)
    token: str = body.get("token") or body.get("access_token") or ""
    return token


def auth_files() -> list[Path]:
    """Where docker and podman keep registry logins, in the order they read them."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker_config = os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
    files.append(Path(docker_config) / "config.json")
    return files


def _basic_auth(registry: str) -> str | None:
    """The base64 user:password stored for `registry`, if any (credential helpers not asked)."""
    keys = {registry, f"https://{registry}", f"http://{registry}"}
    if registry == DOCKER_HUB:
        keys |= {"https://index.docker.io/v1/", "index.docker.io"}
    for file in auth_files():
        try:
            auths = json.loads(file.read_text()).get("auths", {})
        except (OSError, ValueError, AttributeError):
            continue
        for key in keys:
            entry = auths.get(key) or {}
            if entry.get("auth"):
                return str(entry["auth"])
            if entry.get("username") and entry.get("password"):
                pair = f"{entry['username']}:{entry['password']}"
                return base64.b64encode(pair.encode()).decode()
    return None
