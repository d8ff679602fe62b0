"""A stateful Kubernetes API emulator on loopback HTTP, for tests that use the real client.

Built on kmock 0.8 (``kmock.KubernetesEmulator``: its aiohttp server, request parsing, object
store with history, discovery documents and reaction DSL). kmock's own request dispatch is
bypassed for Kubernetes paths because it re-filters every past request on every new one
(quadratic: 400 requests took 10 s, 800 took 70 s), and its handlers miss what
``kubernetes>=37`` needs: 201 on create, label/field selectors, list ``kind``, pod logs as
text/plain, ``/version/``, dry-run, namespace paths, watch timeouts.

The test plays the Training Operator through :class:`KubeEmulator` helpers (pods with the
operator's labels, job conditions, logs, events) and injects faults (429/5xx/401/403, delays).
All state lives on the server's event loop; helpers hop onto it, so they are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import pytest
import yaml
from kmock._internal import parsing, rendering

from kube import apply as field_owners

JSON = dict[str, Any]
Key = tuple[kmock.resource, "str | None", str]

APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply (tests/kube/apply.py)
KUBEFLOW = "kubeflow.org"
TRAINER = "trainer.kubeflow.org"
LABEL_JOB = "training.kubeflow.org/job-name"
LABEL_OPERATOR = "training.kubeflow.org/operator-name"
LABEL_TYPE = "training.kubeflow.org/replica-type"
LABEL_INDEX = "training.kubeflow.org/replica-index"
LABEL_ROLE = "training.kubeflow.org/job-role"
TERMINAL_PHASES = ("Succeeded", "Failed")

_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# Strategic-merge keys for the lists a client is likely to patch (the real table is per-type).
_MERGE_KEYS = {
    "ownerReferences": "uid",
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ports": "containerPort",
}


def now() -> str:
    """RFC 3339 UTC time at second precision, as the API server writes timestamps."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ResourceSpec:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    # configmaps/events answer DELETE with a Status; pods and custom resources with the object.
    delete_returns_object: bool = False
    key: kmock.resource = field(init=False, compare=False)

    def __post_init__(self) -> None:
        res = kmock.resource(group=self.group, version=self.version, plural=self.plural)
        object.__setattr__(self, "key", res)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: ``paddlejobs.kubeflow.org``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


DEFAULT_RESOURCES = (
    ResourceSpec("", "v1", "namespaces", "Namespace", False, ("status", "finalize")),
    ResourceSpec("", "v1", "configmaps", "ConfigMap"),
    ResourceSpec("", "v1", "secrets", "Secret"),
    ResourceSpec("", "v1", "services", "Service", True, ("status",), True),
    ResourceSpec("", "v1", "events", "Event"),
    ResourceSpec("", "v1", "pods", "Pod", True, ("status", "log"), True),
    ResourceSpec(KUBEFLOW, "v1", "paddlejobs", "PaddleJob", True, ("status",), True),
    ResourceSpec(KUBEFLOW, "v1", "pytorchjobs", "PyTorchJob", True, ("status",), True),
    ResourceSpec(TRAINER, "v1alpha1", "trainjobs", "TrainJob", True, ("status",), True),
    ResourceSpec(
        TRAINER, "v1alpha1", "clustertrainingruntimes", "ClusterTrainingRuntime", False, (), True
    ),
)
# The training container's name per job kind (the Training Operator's; Trainer v2's `node`).
DEFAULT_CONTAINER = {"paddlejobs": "paddle", "pytorchjobs": "pytorch", "trainjobs": "node"}


def api_error(code: int, message: str, reason: str | None = None, **details: Any) -> Exception:
    return kmock.KubernetesError(
        status=code,
        reason=reason or _REASONS.get(code, "Unknown"),
        message=message,
        details=details or None,
    )


def status_body(code: int, message: str, reason: str | None = None, details: Any = None) -> JSON:
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


# ---------------------------------------------------------------------------------------------
# Selectors and patches


def parse_bool(value: str | None) -> bool:
    """Query booleans as the API server reads them (Go's strconv.ParseBool): clients send
    `true` (kubernetes>=37) or `True` (older)."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


def _split_selector(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b=c``)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """Equality (=, ==, !=), set (in, notin) and existence (k, !k) requirements, ANDed."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for req in _split_selector(text):
        if m := re.fullmatch(r"(\S+?)\s*(==|!=|=)\s*(\S*)", req):
            k, op, v = m.groups()
            if op == "!=":
                tests.append(lambda lab, k=k, v=v: lab.get(k) != v)
            else:
                tests.append(lambda lab, k=k, v=v: lab.get(k) == v)
        elif m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", req):
            k, op, vals = m.group(1), m.group(2), {x.strip() for x in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda lab, k=k, vals=vals: lab.get(k) in vals)
            else:
                tests.append(lambda lab, k=k, vals=vals: lab.get(k) not in vals)
        elif m := re.fullmatch(r"!\s*(\S+)", req):
            absent = m.group(1)
            tests.append(lambda lab, k=absent: k not in lab)
        elif re.fullmatch(r"[\w./-]+", req):
            tests.append(lambda lab, k=req: k in lab)
        else:
            raise api_error(400, f"unable to parse requirement: {req!r}")
    return lambda labels: all(t(labels) for t in tests)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return "" if cur is None else str(cur)


def parse_field_selector(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """``involvedObject.name=x,type!=Normal``: dotted paths compared as strings."""
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for req in _split_selector(text):
        m = re.fullmatch(r"([\w.]+)\s*(==|!=|=)\s*(.*)", req)
        if not m:
            raise api_error(400, f"invalid field selector: {req!r}")
        path, op, value = m.groups()
        if op == "!=":
            tests.append(lambda o, p=path, v=value: _field_value(o, p) != v)
        else:
            tests.append(lambda o, p=path, v=value: _field_value(o, p) == v)
    return lambda obj: all(t(obj) for t in tests)


def merge_patch(old: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; ``strategic`` also merges the lists in _MERGE_KEYS by their key."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(old) if isinstance(old, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        elif isinstance(v, Mapping):
            result[k] = merge_patch(result.get(k), v, strategic)
        elif (
            strategic
            and k in _MERGE_KEYS
            and isinstance(v, list)
            and isinstance(result.get(k), list)
        ):
            mk = _MERGE_KEYS[k]
            merged = [copy.deepcopy(i) for i in result[k]]
            index = {i.get(mk): n for n, i in enumerate(merged) if isinstance(i, Mapping)}
            for item in v:
                if isinstance(item, Mapping) and item.get(mk) in index:
                    n = index[item[mk]]
                    merged[n] = merge_patch(merged[n], item, strategic)
                else:
                    merged.append(copy.deepcopy(item))
            result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    return result


def json_patch(old: JSON, ops: list[Any]) -> JSON:
    import jsonpatch  # a kmock dependency

    try:
        return jsonpatch.apply_patch(copy.deepcopy(old), ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise api_error(
            422, f"the server rejected our request due to an error in our request: {exc}"
        ) from None


def _validate(spec: ResourceSpec, obj: JSON) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    prefix = f'{spec.kind} "{name}" is invalid: '
    if spec.plural != "events" and (len(name) > 253 or not _DNS1123.fullmatch(name)):
        raise api_error(
            422,
            prefix + f'metadata.name: Invalid value: "{name}": a lowercase '
            "RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            name=name,
            kind=spec.kind,
        )
    for k, v in (meta.get("labels") or {}).items():
        key_name = k.rsplit("/", 1)[-1]
        if len(key_name) > 63 or not _LABEL_NAME.fullmatch(key_name):
            raise api_error(
                422,
                prefix + f'metadata.labels: Invalid value: "{k}": name part '
                "must consist of alphanumeric characters, '-', '_' or '.'",
                name=name,
                kind=spec.kind,
            )
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.fullmatch(v):
            raise api_error(
                422,
                prefix + f'metadata.labels: Invalid value: "{v}": a valid label '
                "must be an empty string or consist of alphanumeric characters, '-', "
                "'_' or '.', and must start and end with an alphanumeric character "
                "(at most 63 characters)",
                name=name,
                kind=spec.kind,
            )
    if spec.plural in ("configmaps", "secrets"):
        size = sum(len(k) + len(str(v)) for k, v in (obj.get("data") or {}).items())
        if size > 1048576:
            raise api_error(
                422,
                prefix + "[]: Too long: must have at most 1048576 bytes",
                name=name,
                kind=spec.kind,
            )


# ---------------------------------------------------------------------------------------------
# Faults, logs


@dataclass
class Fault:
    """The next ``times`` requests matching method/path get ``status`` (None: only ``delay``)."""

    status: int | None
    times: int | None = 1  # None: every matching request, until cleared
    method: str | None = None
    path: re.Pattern[str] | None = None  # searched in the URL path
    retry_after: float | None = None
    message: str | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and not self.path.search(path))


@dataclass
class LogBuffer:
    text: str = ""
    closed: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass
class PathInfo:
    spec: ResourceSpec | None
    namespace: str | None
    name: str | None
    subresource: str | None


# ---------------------------------------------------------------------------------------------
# The server side (runs on the event loop)


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesEmulator):
    """kmock's emulator with a direct, linear-time dispatcher for the Kubernetes paths."""

    token: str | None = None  # if set, requests without ``Bearer <token>`` get 401
    git_version: str = "v1.29.4"
    service_time: float = 0.0  # seconds each request takes, as an API server writing to etcd
    specs: dict[tuple[str, str, str], ResourceSpec] = attrs.field(factory=dict)
    faults: list[Fault] = attrs.field(factory=list)
    logs: dict[tuple[str, str, str, bool], LogBuffer] = attrs.field(factory=dict)
    rv: int = 1000
    streams: set[asyncio.Task[Any]] = attrs.field(factory=set)
    builtin_payloads: set[int] = attrs.field(factory=set)
    closing: bool = False

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's own fallbacks stay registered but are never served: our dispatcher replaces them.
        self.builtin_payloads = {id(p) for p in self._payloads}
        for spec in DEFAULT_RESOURCES:
            self.declare(spec)

    def declare(self, spec: ResourceSpec) -> None:
        self.specs[spec.group, spec.version, spec.plural] = spec
        self.resources[spec.key] = kmock.ResourceInfo(
            kind=spec.kind,
            namespaced=spec.namespaced,
            singular=spec.kind.lower(),
            subresources=set(spec.subresources),
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        )

    def undeclare(self, plural: str) -> None:
        """Forget a resource, as on a cluster without that CRD (its objects stay stored)."""
        spec = self.spec(plural)
        del self.specs[spec.group, spec.version, spec.plural]
        del self.resources[spec.key]

    def spec(self, name: str) -> ResourceSpec:
        """By plural (``paddlejobs``) or kind (``PaddleJob``)."""
        for spec in self.specs.values():
            if name in (spec.plural, spec.kind):
                return spec
        raise KeyError(f"unknown resource {name!r}")

    # -- request intake: kmock's, minus its crash on /api/v1/namespaces and its form parsing

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await self._parse_request(raw_request)
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:  # a kmock DSL stream failed mid-way
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)  # kmock's accounting; the fixture reports non-API ones
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _parse_request(self, raw: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        try:
            k8s = parsing.parse_path(raw.path)
        except ValueError:  # kmock 0.8 cannot parse /api/v1/namespaces
            k8s = parsing.ParsedPath()
        resource = (
            None
            if k8s.group is None
            else kmock.resource(group=k8s.group, version=k8s.version, plural=k8s.plural)
        )
        method = kmock.method(raw.method)
        return rendering.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            data=data,
            body=body,
            text=body.decode("utf-8", "replace"),
            action=parsing.guess_k8s(k8s, method, dict(raw.query)),
            resource=resource,
            namespace=k8s.namespace,
            name=k8s.name,
            subresource=k8s.subresource,
        )

    # -- error rendering: real Status bodies instead of kmock's tracebacks

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            body = status_body(exc.status, exc.message or "", exc.reason, exc.details)
            return aiohttp.web.json_response(body, status=exc.status)
        body = status_body(500, f"Internal error occurred: {exc!r}")
        return aiohttp.web.json_response(body, status=500)

    # -- dispatch

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path, method = request.url.path, request.method.value
        if self.closing:  # refuse reconnecting watches, or shutdown waits for them
            body = status_body(503, "the emulator is shutting down")
            return aiohttp.web.json_response(body, status=503, headers={"Connection": "close"})
        if self.service_time:  # concurrent requests overlap, as on a real server
            await asyncio.sleep(self.service_time)
        fault = next((f for f in self.faults if f.matches(method, path)), None)
        if fault is not None:
            fault.hits += 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return self._fault_response(fault, request)
        if (
            self.token is not None
            and path not in ("/healthz", "/livez", "/readyz")
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return aiohttp.web.json_response(status_body(401, "Unauthorized"), status=401)
        if self._user_payloads():
            # Reactions added through kmock's DSL win over the emulation (slow path).
            with contextlib.suppress(LookupError):
                return await self._serve_user_reactions(request)
        info = self._parse_path(path)
        if info is None:
            return await self._serve_non_resource(request, path)
        if info.spec is None:
            raise api_error(404, "the server could not find the requested resource")
        return await self._serve_resource(request, info)

    def _user_payloads(self) -> list[Any]:
        # By identity: kmock's ``priorities`` walks the view chain and costs ~1 ms a request.
        return [p for p in self._payloads if id(p) not in self.builtin_payloads]

    async def _serve_user_reactions(self, request: rendering.Request) -> Any:
        for payload in self._user_payloads():
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        raise LookupError

    def _fault_response(self, fault: Fault, request: rendering.Request) -> aiohttp.web.Response:
        code = fault.status or 500
        message = fault.message
        if message is None:
            info = self._parse_path(request.url.path)
            plural = info.spec.plural if info and info.spec else "resource"
            group = info.spec.group if info and info.spec else ""
            verb = {
                "GET": "get",
                "POST": "create",
                "PATCH": "patch",
                "PUT": "update",
                "DELETE": "delete",
            }.get(request.method.value, "get")
            ns = f' in the namespace "{info.namespace}"' if info and info.namespace else ""
            message = {
                401: "Unauthorized",
                403: f'{plural} is forbidden: User "system:serviceaccount:default:detk8s" '
                f'cannot {verb} resource "{plural}" in API group "{group}"{ns}',
                429: "Too many requests, please try again later.",
                503: "the server is currently unable to handle the request",
            }.get(code, "Internal error occurred: injected fault")
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(fault.retry_after))
        return aiohttp.web.json_response(status_body(code, message), status=code, headers=headers)

    def _parse_path(self, path: str) -> PathInfo | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        spec = self.specs.get((group, version, rest[0]))
        if spec is not None and namespace is not None and not spec.namespaced:
            spec = None
        name = rest[1] if len(rest) > 1 else None
        sub = "/".join(rest[2:]) or None
        if spec is not None and sub is not None and sub not in spec.subresources:
            spec = None
        return PathInfo(spec, namespace, name, sub)

    async def _serve_non_resource(
        self, request: rendering.Request, path: str
    ) -> aiohttp.web.StreamResponse:
        path = path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            major, minor = self.git_version.lstrip("v").split(".")[:2]
            return aiohttp.web.json_response(
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": self.git_version,
                    "gitCommit": "0" * 40,
                    "gitTreeState": "clean",
                    "buildDate": "2024-04-17T00:00:00Z",
                    "goVersion": "go1.21.9",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        parts = path.strip("/").split("/")
        res = request.resource
        body: Any
        try:
            body = await self._discovery(request, path, parts, res)
        except kmock.KubernetesError:  # kmock's own texts -> the API server's
            raise api_error(404, "the server could not find the requested resource") from None
        if body.get("groupVersion") == "/v1":  # kmock 0.8 writes "/v1" for the core group
            body["groupVersion"] = "v1"
        return aiohttp.web.json_response(body)

    async def _discovery(
        self, request: rendering.Request, path: str, parts: list[str], res: Any
    ) -> JSON:
        body: Any
        if path == "/":
            body = await self._serve_root(request)
        elif path == "/api":
            body = await self._serve_api(request)
        elif path == "/apis":
            body = await self._serve_apis(request)
        elif res is not None and parts[0] == "apis" and len(parts) == 2:
            body = await self._serve_group(request)
        elif res is not None and len(parts) == (2 if parts[0] == "api" else 3):
            body = await self._serve_version(request)
        else:
            raise api_error(404, "the server could not find the requested resource")
        return body

    async def _serve_resource(
        self, request: rendering.Request, info: PathInfo
    ) -> aiohttp.web.StreamResponse:
        spec = info.spec
        assert spec is not None
        method, params = request.method.value, request.params
        ns = info.namespace if spec.namespaced else None
        dry_run = params.get("dryRun") == "All"
        if spec.namespaced and info.namespace is None and method != "GET":
            raise api_error(404, "the server could not find the requested resource")
        if info.subresource == "log":
            if method != "GET":
                raise api_error(405, "method not allowed")
            return await self._serve_log(request, ns or "", info.name or "")
        if info.name is None:
            if method == "GET" and parse_bool(params.get("watch")):
                return await self._serve_watch_stream(request, spec, ns)
            if method == "GET":
                return aiohttp.web.json_response(self.list_body(spec, ns, params))
            if method == "POST":
                body = request.data
                if not isinstance(body, dict):
                    raise api_error(400, "the body of the request was in an unknown format")
                obj = await self.create(spec, ns, body, dry_run=dry_run)
                return aiohttp.web.json_response(obj, status=201)
            if method == "DELETE":
                items = self.list_body(spec, ns, params)["items"]
                for item in items:
                    m = item["metadata"]
                    await self.delete(spec, m.get("namespace"), m["name"], dry_run=dry_run)
                return aiohttp.web.json_response(self._list_envelope(spec, items))
            raise api_error(405, "method not allowed")
        name = info.name
        if method == "GET":
            if parse_bool(params.get("watch")):
                return await self._serve_watch_stream(request, spec, ns, name)
            return aiohttp.web.json_response(self.get_or_404(spec, ns, name))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            manager, force = params.get("fieldManager"), parse_bool(params.get("force"))
            if ctype == APPLY_PATCH:
                data = request.data if request.data is not None else yaml.safe_load(request.text)
                obj, created = await self.apply(spec, ns, name, data, manager, force, dry_run)
                return aiohttp.web.json_response(obj, status=201 if created else 200)
            obj = await self.patch(
                spec, ns, name, request.data, ctype, subresource=info.subresource,
                dry_run=dry_run, manager=manager,
            )  # fmt: skip
            return aiohttp.web.json_response(obj)
        if method == "PUT":
            if not isinstance(request.data, dict):
                raise api_error(400, "the body of the request was in an unknown format")
            obj = await self.replace(
                spec, ns, name, request.data, subresource=info.subresource, dry_run=dry_run
            )
            return aiohttp.web.json_response(obj)
        if method == "DELETE":
            opts = request.data if isinstance(request.data, dict) else {}
            policy = opts.get("propagationPolicy") or params.get("propagationPolicy")
            dry_run = dry_run or "All" in (opts.get("dryRun") or [])
            obj = await self.delete(spec, ns, name, policy=policy, dry_run=dry_run)
            if spec.delete_returns_object or "deletionTimestamp" in obj["metadata"]:
                return aiohttp.web.json_response(obj)
            return aiohttp.web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": spec.group,
                        "kind": spec.plural,
                        "uid": obj["metadata"].get("uid"),
                    },
                }
            )
        raise api_error(405, "method not allowed")

    # -- the store: every mutation goes through here (HTTP and test helpers alike)

    def _key(self, spec: ResourceSpec, ns: str | None, name: str) -> Key:
        return (spec.key, ns if spec.namespaced else None, name)

    def get(self, spec: ResourceSpec, ns: str | None, name: str) -> JSON | None:
        obj = self._objects._objects.get(self._key(spec, ns, name))
        return None if obj is None or obj.deleted else obj.raw

    def get_or_404(self, spec: ResourceSpec, ns: str | None, name: str) -> JSON:
        obj = self.get(spec, ns, name)
        if obj is None:
            raise api_error(
                404,
                f'{spec.qualified} "{name}" not found',
                name=name,
                group=spec.group,
                kind=spec.plural,
            )
        return obj

    def select(
        self, spec: ResourceSpec, ns: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[JSON]:
        by_label = parse_label_selector(label_selector) if label_selector else None
        by_field = parse_field_selector(field_selector) if field_selector else None
        items = []
        for (res, obj_ns, _), obj in self._objects.items():
            if obj.deleted or (ns is not None and obj_ns != ns):
                continue
            if res is not spec.key and res != spec.key:
                continue
            raw = obj.raw
            if by_label and not by_label(raw.get("metadata", {}).get("labels") or {}):
                continue
            if by_field and not by_field(raw):
                continue
            items.append(raw)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return items

    def _list_envelope(self, spec: ResourceSpec, items: list[JSON]) -> JSON:
        return {
            "kind": f"{spec.kind}List",
            "apiVersion": spec.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": items,
        }

    def list_body(self, spec: ResourceSpec, ns: str | None, params: Mapping[str, str]) -> JSON:
        items = self.select(
            spec, ns, params.get("labelSelector", ""), params.get("fieldSelector", "")
        )
        return self._list_envelope(spec, items)

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    async def _publish(self, spec: ResourceSpec, event: str, obj: JSON) -> None:
        await self._buses[spec.key].put({"type": event, "object": obj})

    def _check_namespace(self, spec: ResourceSpec, ns: str | None) -> None:
        if spec.namespaced and self.get(self.spec("namespaces"), None, ns or "") is None:
            raise api_error(404, f'namespaces "{ns}" not found', name=ns, kind="namespaces")

    async def create(
        self,
        spec: ResourceSpec,
        ns: str | None,
        body: JSON,
        *,
        dry_run: bool = False,
        check_namespace: bool = True,
    ) -> JSON:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if spec.group and (obj.get("apiVersion"), obj.get("kind")) != (spec.api_version, spec.kind):
            raise api_error(
                400,
                f"the API version in the data ({obj.get('apiVersion')}) or "
                f"kind ({obj.get('kind')}) does not match the expected "
                f"{spec.api_version}, Kind={spec.kind}",
            )
        if spec.namespaced:
            if meta.get("namespace") not in (None, ns):
                raise api_error(
                    400,
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise api_error(
                422,
                f'{spec.kind} "" is invalid: metadata.name: Required value: '
                "name or generateName is required",
                kind=spec.kind,
            )
        _validate(spec, obj)
        name = meta["name"]
        if check_namespace:
            self._check_namespace(spec, ns)
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        for k in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(k, None)
        async with self._lock:  # the existence check too: another create may be mid-way
            if self.get(spec, ns, name) is not None:
                raise api_error(
                    409,
                    f'{spec.qualified} "{name}" already exists',
                    reason="AlreadyExists",
                    name=name,
                    group=spec.group,
                    kind=spec.plural,
                )
            if dry_run:
                return obj
            meta["resourceVersion"] = self._next_rv()
            key = self._key(spec, ns, name)
            if key in self._objects._objects:
                self._objects._objects[key].history.append(obj)  # re-created after deletion
            else:
                self._objects[key] = obj
            await self._publish(spec, "ADDED", obj)
        return obj

    async def _store_update(
        self, spec: ResourceSpec, old: JSON, new: JSON, dry_run: bool, *, deleting: bool = False
    ) -> JSON:
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        kept = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp")
        for k in kept[:-1] if deleting else kept:
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = spec.api_version, spec.kind
        _validate(spec, new)
        meta["generation"] = old_meta.get("generation", 1) + (new.get("spec") != old.get("spec"))
        if dry_run:
            return new
        async with self._lock:
            meta["resourceVersion"] = self._next_rv()
            key = self._key(spec, old_meta.get("namespace"), old_meta["name"])
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                self._objects._objects[key].delete()
                await self._publish(spec, "DELETED", new)
            else:
                self._objects._objects[key].history.append(new)
                await self._publish(spec, "MODIFIED", new)
        return new

    def _scope(self, spec: ResourceSpec, old: JSON, new: JSON, subresource: str | None) -> JSON:
        """/status changes only status; the main endpoint ignores status if /status exists."""
        if subresource == "status":
            return {**old, "status": new.get("status")}
        if "status" in spec.subresources:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = old["status"]
        return new

    async def patch(
        self,
        spec: ResourceSpec,
        ns: str | None,
        name: str,
        body: Any,
        content_type: str = "application/merge-patch+json",
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> JSON:
        old = self.get_or_404(spec, ns, name)
        if content_type == "application/json-patch+json" and isinstance(body, list):
            new = json_patch(old, body)
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ) and isinstance(body, dict):
            strategic = content_type.startswith("application/strategic")
            if strategic and spec.group:
                raise api_error(
                    415,
                    "the body of the request was in an unknown format - "
                    "accepted media types include: application/json-patch+json,"
                    " application/merge-patch+json, application/apply-patch+yaml",
                )
            new = merge_patch(old, body, strategic)
        else:
            raise api_error(
                415,
                f"the body of the request was in an unknown format ({content_type})",
            )
        new = self._scope(spec, old, new, subresource)
        if manager:
            new = field_owners.record_update(old, new, manager)
        return await self._store_update(spec, old, new, dry_run)

    async def apply(
        self, spec: ResourceSpec, ns: str | None, name: str, body: Any, manager: str | None,
        force: bool, dry_run: bool,
    ) -> tuple[JSON, bool]:  # fmt: skip
        """Server-side apply (tests/kube/apply.py): creates, or merges what `manager` sends."""
        if not manager:
            raise api_error(422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                                 "Required value: is required for apply patch")  # fmt: skip
        if not isinstance(body, dict):
            raise api_error(400, "the body of the request was in an unknown format")
        old = self.get(spec, ns, name)
        new, conflicts = field_owners.apply(old, body, manager, force)
        if conflicts:
            raise api_error(409, f"Apply failed with {len(conflicts)} conflict"
                                 f"{'s' if len(conflicts) > 1 else ''}: {'; '.join(conflicts)}",
                            name=name, kind=spec.plural)  # fmt: skip
        if old is None:
            new["metadata"]["name"] = name
            return await self.create(spec, ns, new, dry_run=dry_run), True
        return await self._store_update(
            spec, old, self._scope(spec, old, new, None), dry_run
        ), False

    async def replace(
        self,
        spec: ResourceSpec,
        ns: str | None,
        name: str,
        body: JSON,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        old = self.get_or_404(spec, ns, name)
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"].get("resourceVersion"):
            raise api_error(
                409,
                f'Operation cannot be fulfilled on {spec.qualified} "{name}": '
                "the object has been modified; please apply your changes to "
                "the latest version and try again",
                name=name,
                kind=spec.plural,
            )
        new = self._scope(spec, old, copy.deepcopy(body), subresource)
        return await self._store_update(spec, old, new, dry_run)

    async def delete(
        self,
        spec: ResourceSpec,
        ns: str | None,
        name: str,
        *,
        policy: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        obj = self.get_or_404(spec, ns, name)
        if dry_run:
            return obj
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                new = merge_patch(obj, {"metadata": {"deletionTimestamp": now()}})
                obj = await self._store_update(spec, obj, new, False, deleting=True)
            return obj
        async with self._lock:
            self._objects._objects[self._key(spec, ns, name)].delete()
            await self._publish(spec, "DELETED", obj)
        if spec.plural == "pods":  # its containers' logs go with it (a pod recreated under
            for key in [k for k in self.logs if k[:2] == (ns, name)]:  # the name starts afresh)
                await self._close_log(self.logs.pop(key))
        if policy != "Orphan":
            if spec.plural == "namespaces":
                await self._collect_garbage(None, None, deleted_namespace=name)
            else:
                await self._collect_garbage(meta.get("uid"), ns)
        return obj

    async def _collect_garbage(
        self, uid: str | None, ns: str | None, deleted_namespace: str | None = None
    ) -> None:
        """Like the garbage collector (but at once): dependents go with their last owner."""
        specs = {spec.key: spec for spec in self.specs.values()}
        for (res, obj_ns, name), obj in list(self._objects.items()):
            spec = specs.get(res)
            if spec is None or obj.deleted:
                continue
            if deleted_namespace is not None:
                if obj_ns == deleted_namespace:
                    await self.delete(spec, obj_ns, name)
                continue
            refs = obj.raw["metadata"].get("ownerReferences") or []
            if (ns is not None and obj_ns != ns) or not any(r.get("uid") == uid for r in refs):
                continue
            left = [r for r in refs if r.get("uid") != uid]
            if left:
                raw = obj.raw
                new = merge_patch(raw, {"metadata": {"ownerReferences": left}})
                await self._store_update(spec, raw, new, False)
            else:
                await self.delete(spec, obj_ns, name)

    # -- watch

    async def _serve_watch_stream(
        self,
        request: rendering.Request,
        spec: ResourceSpec,
        ns: str | None,
        name: str | None = None,
    ) -> aiohttp.web.StreamResponse:
        params = request.params
        field_selector = params.get("fieldSelector", "")
        if name is not None:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={name}"]))
        by_label = parse_label_selector(params.get("labelSelector", ""))
        by_field = parse_field_selector(field_selector)
        since = (
            int(params["resourceVersion"])
            if params.get("resourceVersion", "0") not in ("", "0")
            else None
        )
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None

        def wanted(obj: JSON) -> bool:
            meta = obj.get("metadata", {})
            return (
                (ns is None or meta.get("namespace") == ns)
                and by_label(meta.get("labels") or {})
                and by_field(obj)
            )

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        assert request._raw_request is not None
        await response.prepare(request._raw_request)
        bus = self._buses[spec.key]
        mark = await bus.mark()  # before the snapshot, so no event falls in between
        task = asyncio.current_task()
        assert task is not None
        self.streams.add(task)
        try:
            async with asyncio.timeout(timeout):
                for obj in self.select(spec, ns):
                    if since is not None and int(obj["metadata"]["resourceVersion"]) <= since:
                        continue
                    if wanted(obj):
                        await response.write(
                            json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
                        )
                async for event in bus.stream(since=mark):
                    if wanted(event["object"]):
                        await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.streams.discard(task)
            with contextlib.suppress(ValueError):
                await bus.unmark(mark)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    # -- pod logs

    def log_buffer(self, ns: str, pod: str, container: str, previous: bool = False) -> LogBuffer:
        return self.logs.setdefault((ns, pod, container, previous), LogBuffer())

    async def _close_log(self, buf: LogBuffer) -> None:
        async with buf.changed:
            buf.closed = True
            buf.changed.notify_all()

    async def write_log(
        self,
        ns: str,
        pod: str,
        container: str,
        text: str,
        *,
        append: bool,
        previous: bool = False,
        close: bool = False,
    ) -> None:
        buf = self.log_buffer(ns, pod, container, previous)
        async with buf.changed:
            buf.text = buf.text + text if append else text
            buf.closed = buf.closed or close
            buf.changed.notify_all()

    async def restart_container(self, ns: str, pod: str, container: str) -> None:
        """A container restarted in place: its log becomes the `previous` one (a follow of it
        ends), and the new container's starts empty."""
        current = self.logs.pop((ns, pod, container, False), LogBuffer())
        await self._close_log(current)
        self.logs[ns, pod, container, True] = current

    async def _serve_log(
        self, request: rendering.Request, ns: str, name: str
    ) -> aiohttp.web.StreamResponse:
        pod = self.get_or_404(self.spec("pods"), ns, name)
        params = request.params
        containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = params.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise api_error(
                400,
                f"a container name must be specified for pod {name}, choose "
                f"one of: [{' '.join(containers)}]",
            )
        if container not in containers:
            raise api_error(400, f"container {container} is not valid for pod {name}")
        previous = parse_bool(params.get("previous"))
        key = (ns, name, container, previous)
        if previous and key not in self.logs:
            raise api_error(
                400, f'previous terminated container "{container}" in pod "{name}" not found'
            )
        statuses = {s.get("name"): s for s in pod.get("status", {}).get("containerStatuses", [])}
        waiting = statuses.get(container, {}).get("state", {}).get("waiting")
        if not previous and key not in self.logs and waiting:
            raise api_error(
                400,
                f'container "{container}" in pod "{name}" is waiting to start: '
                f"{waiting.get('reason', 'ContainerCreating')}",
            )
        buf = self.log_buffer(ns, name, container, previous)
        text = buf.text
        if params.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(params["tailLines"]) :]) if int(params["tailLines"]) else ""
        if params.get("limitBytes"):
            text = text[: int(params["limitBytes"])]
        if not parse_bool(params.get("follow")) or previous:
            return aiohttp.web.Response(text=text, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        assert request._raw_request is not None
        await response.prepare(request._raw_request)
        task = asyncio.current_task()
        assert task is not None
        self.streams.add(task)
        try:
            if text:
                await response.write(text.encode())
            sent = len(buf.text)
            while True:
                async with buf.changed:
                    seen = sent
                    await buf.changed.wait_for(lambda n=seen: len(buf.text) != n or buf.closed)
                    chunk, sent, closed = buf.text[seen:], len(buf.text), buf.closed
                if chunk:
                    await response.write(chunk.encode())
                if closed:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.streams.discard(task)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    def close_streams(self) -> None:
        """End every watch and log follow; later requests get 503."""
        self.closing = True
        for task in list(self.streams):
            task.cancel()


# ---------------------------------------------------------------------------------------------
# The test side (any thread)


class KubeEmulator:
    """Runs :class:`KubeAPI` on 127.0.0.1 in a background thread; thread-safe test helpers.

    Namespaces ``default`` and ``kube-system`` exist; creating into another namespace answers
    404 like a real cluster until :meth:`add_namespace`. Requests must carry the bearer token
    written by :meth:`kubeconfig` (``token=None`` switches the check off).
    """

    def __init__(
        self,
        *,
        token: str | None = "emu-token",
        port: int = 0,
        namespaces: tuple[str, ...] = ("default", "kube-system"),
        git_version: str = "v1.29.4",
        service_time: float = 0.0,
        tls: bool = False,
    ) -> None:
        """``tls``: serve HTTPS with a self-signed certificate the kubeconfig trusts (kubectl
        sends a token only over TLS); ``service_time``: seconds each request takes."""
        self.token, self.port, self.git_version = token, port, git_version
        self.service_time = service_time
        self.tls = self_signed() if tls else None
        self._namespaces = namespaces
        self.host = ""
        self.api: KubeAPI
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server_errors: list[Exception] = []  # emulator bugs seen while serving (not 4xx)

    # -- lifecycle

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._run_loop, name="kube-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("kube emulator failed to start") from self._error
        if not self.host:
            raise RuntimeError("kube emulator did not start within 30 s")
        for ns in self._namespaces:
            self.add_namespace(ns)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.api = KubeAPI(token=self.token, git_version=self.git_version,
                           service_time=self.service_time)  # fmt: skip
        server_cls = _tls_server(self.tls[0]) if self.tls else aiohttp.test_utils.RawTestServer
        server = kmock.Server(self.api, host="127.0.0.1", port=self.port or None, user_agent="",
                              server_cls=server_cls)  # fmt: skip
        async with self.api, server:
            self.port = server.port
            self.host = f"{'https' if self.tls else 'http'}://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()
            self.api.close_streams()
            await asyncio.sleep(0.01)  # let the cancelled handlers finish their responses
            # kmock turns handler crashes into 500s; keep them so the fixture can fail the test.
            self.server_errors = [
                e for e in self.api.errors if not isinstance(e, kmock.KubernetesError)
            ]

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` (sync or async) on the server loop and return a private copy of its result."""
        assert self._loop is not None

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            # Copy plain data so the caller never shares dicts with the server thread.
            return copy.deepcopy(result) if isinstance(result, (dict, list)) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    # -- generic state access

    def spec(self, kind_or_plural: str) -> ResourceSpec:
        return self.api.spec(kind_or_plural)

    def add_namespace(self, name: str) -> JSON:
        spec = self.spec("namespaces")
        if (obj := self.get("namespaces", None, name)) is not None:
            return obj
        body = {"metadata": {"name": name}, "status": {"phase": "Active"}}
        return self.call(self.api.create, spec, None, body)

    def create(self, kind: str, namespace: str | None, body: JSON) -> JSON:
        """Store an object as a controller would (no faults, no token, namespace not checked)."""
        return self.call(self.api.create, self.spec(kind), namespace, body, check_namespace=False)

    def get(self, kind: str, namespace: str | None, name: str) -> JSON | None:
        return self.call(self.api.get, self.spec(kind), namespace, name)

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[JSON]:
        return self.call(
            self.api.select, self.spec(kind), namespace, label_selector, field_selector
        )

    def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: JSON,
        *,
        subresource: str | None = None,
        manager: str | None = None,
    ) -> JSON:
        """JSON merge patch; ``subresource="status"`` to write status; ``manager`` owns what it
        changes (as `kubectl edit` does, its manager being kubectl-edit)."""
        return self.call(
            self.api.patch, self.spec(kind), namespace, name, patch,
            subresource=subresource, manager=manager,
        )  # fmt: skip

    def delete(self, kind: str, namespace: str | None, name: str) -> JSON:
        return self.call(self.api.delete, self.spec(kind), namespace, name)

    def uninstall(self, kind: str) -> None:
        """Make the resource unknown (e.g. ``paddlejobs``: the Training Operator is absent)."""
        self.call(self.api.undeclare, kind)

    def requests(self, method: str | None = None, path: str | None = None) -> list[JSON]:
        """Requests received so far: ``{method, path, params, headers, data}``; path is a regex."""

        def snapshot() -> list[JSON]:
            return [
                {
                    "method": r.method.value,
                    "path": r.url.path,
                    "params": dict(r.params),
                    "headers": dict(r.headers),
                    "data": r.data if isinstance(r.data, (dict, list)) else None,
                }
                for r in list(self.api._requests)
                if (method is None or r.method.value == method.upper())
                and (path is None or re.search(path, r.url.path))
            ]

        return self.call(snapshot)

    # -- the Training Operator's side

    def add_pod(
        self,
        namespace: str,
        job_name: str,
        replica_type: str,
        index: int = 0,
        *,
        phase: str = "Running",
        node: str | None = "gpu-1",
        restarts: int = 0,
        waiting_reason: str | None = None,
        waiting_message: str = "",
        exit_code: int | None = None,
        terminated_reason: str | None = None,
        last_terminated_reason: str | None = None,
        conditions: list[JSON] | None = None,
        kind: str | None = None,
        container: str | None = None,
        labels: Mapping[str, str] | None = None,
        master: bool | None = None,
        name: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> JSON:
        """A pod as the operator creates it: ``{job}-{type}-{index}``, labels, ownerReference.

        ``kind`` (PaddleJob/PyTorchJob or plural) defaults to the kind of the existing job named
        ``job_name``. ``waiting_reason`` (e.g. ImagePullBackOff, CrashLoopBackOff) puts the
        container in a waiting state; ``phase="Pending", node=None`` is an unscheduled pod.
        """
        job_spec, job = self._find_job(namespace, job_name, kind)
        rtype = replica_type.lower()
        name = name or f"{job_name}-{rtype}-{index}"
        cname = container or DEFAULT_CONTAINER.get(job_spec.plural, "main")
        now_ = now()
        pod_labels: dict[str, str] = {}
        if job_spec.group == KUBEFLOW:  # the Training Operator's; others pass their own
            pod_labels = {
                LABEL_JOB: job_name,
                LABEL_TYPE: rtype,
                LABEL_INDEX: str(index),
                LABEL_OPERATOR: f"{job_spec.kind.lower()}-controller",
            }
            if master if master is not None else rtype == "master":
                pod_labels[LABEL_ROLE] = "master"
        pod_labels.update(labels or {})
        meta: JSON = {"name": name, "namespace": namespace, "labels": pod_labels}
        if annotations:
            meta["annotations"] = dict(annotations)
        if job is not None:
            meta["ownerReferences"] = [
                {
                    "apiVersion": job_spec.api_version,
                    "kind": job_spec.kind,
                    "name": job_name,
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        state: JSON
        if waiting_reason:
            state = {"waiting": {"reason": waiting_reason, "message": waiting_message}}
        elif phase == "Running":
            state = {"running": {"startedAt": now_}}
        elif phase in TERMINAL_PHASES:
            code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
            state = {
                "terminated": {
                    "exitCode": code,
                    "startedAt": now_,
                    "finishedAt": now_,
                    "reason": terminated_reason or ("Completed" if code == 0 else "Error"),
                }
            }
        else:
            state = {"waiting": {"reason": "ContainerCreating"}} if node else {}
        cstatus: JSON = {
            "name": cname,
            "image": "detk8s:test",
            # kubernetes>=37 models are strict pydantic: imageID must be a string.
            "imageID": "" if "waiting" in state else "docker.io/library/detk8s@sha256:" + "0" * 64,
            "ready": "running" in state,
            "restartCount": restarts,
            "started": "running" in state,
        }
        if state:
            cstatus["state"] = state
        if last_terminated_reason:
            cstatus["lastState"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": last_terminated_reason,
                    "finishedAt": now_,
                }
            }
        status: JSON = {"phase": phase, "qosClass": "Burstable"}
        if node:
            status.update(hostIP="10.0.0.2", podIP=f"10.244.0.{10 + index}", startTime=now_)
            if state:
                status["containerStatuses"] = [cstatus]
        if conditions is not None:
            status["conditions"] = conditions
        elif not node:
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": now_,
                    "message": waiting_message
                    or "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ]
        else:
            ready = "True" if "running" in state else "False"
            status["conditions"] = [
                {"type": t, "status": s, "lastTransitionTime": now_}
                for t, s in (
                    ("Initialized", "True"),
                    ("Ready", ready),
                    ("ContainersReady", ready),
                    ("PodScheduled", "True"),
                )
            ]
        pod = {
            "metadata": meta,
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "schedulerName": "default-scheduler",
                "containers": [{"name": cname, "image": "detk8s:test"}],
            },
            "status": status,
        }
        if node is None:
            del pod["spec"]["nodeName"]
        created = self.create("pods", namespace, pod)
        if phase in TERMINAL_PHASES:
            self.call(self.api.write_log, namespace, name, cname, "", append=True, close=True)
        return created

    def set_pod_phase(self, namespace: str, name: str, phase: str, **status: Any) -> JSON:
        """Move a pod's phase (terminal phases end ``follow`` log streams)."""
        pod = self.patch(
            "pods", namespace, name, {"status": {"phase": phase, **status}}, subresource="status"
        )
        if phase in TERMINAL_PHASES:
            for c in pod["spec"]["containers"]:
                self.call(
                    self.api.write_log, namespace, name, c["name"], "", append=True, close=True
                )
        return pod

    def _find_job(
        self, namespace: str, job_name: str, kind: str | None
    ) -> tuple[ResourceSpec, JSON | None]:
        plurals = [self.spec(kind).plural] if kind else ["paddlejobs", "pytorchjobs"]
        for plural in plurals:
            job = self.get(plural, namespace, job_name)
            if job is not None:
                return self.spec(plural), job
        return self.spec(plurals[0]), None

    def set_job_condition(
        self,
        kind: str,
        namespace: str,
        name: str,
        type: str,
        reason: str | None = None,
        message: str | None = None,
        *,
        status: str = "True",
        replica_statuses: Mapping[str, Mapping[str, int]] | None = None,
    ) -> JSON:
        """Add a job condition the way the Training Operator's ``setCondition`` does.

        Same type and status: only reason/message change (kept transition time); Running and
        Restarting replace each other; Succeeded/Failed flip Running to False; nothing changes
        after Failed. Also sets startTime/completionTime and ``replica_statuses`` (e.g.
        ``{"Worker": {"active": 2}}``, the selector is filled in).
        """
        spec = self.spec(kind)
        job = self.get(spec.plural, namespace, name)
        if job is None:
            raise KeyError(f"{spec.plural}/{name} not found in {namespace}")
        st = copy.deepcopy(job.get("status") or {})
        conds: list[JSON] = st.get("conditions") or []
        now_ = now()
        default_msgs = {
            "Created": "is created.",
            "Running": "is running.",
            "Restarting": "is restarting.",
            "Succeeded": "successfully completed.",
            "Failed": "is failed.",
            "Suspended": "is suspended.",
        }
        cond = {
            "type": type,
            "status": status,
            "reason": reason if reason is not None else f"{spec.kind}{type}",
            "message": message
            if message is not None
            else f"{spec.kind} {namespace}/{name} {default_msgs.get(type, type)}",
            "lastUpdateTime": now_,
            "lastTransitionTime": now_,
        }
        failed = any(c["type"] == "Failed" and c["status"] == "True" for c in conds)
        current = next((c for c in conds if c["type"] == type), None)
        if not failed and not (
            current and current["status"] == status and current.get("reason") == cond["reason"]
        ):
            if current and current["status"] == status:
                cond["lastTransitionTime"] = current["lastTransitionTime"]
            kept = []
            for c in conds:
                if c["type"] == type or {c["type"], type} == {"Running", "Restarting"}:
                    continue
                if type in TERMINAL_PHASES and c["type"] == "Running":
                    c = {**c, "status": "False"}
                kept.append(c)
            st["conditions"] = [*kept, cond]
        if type == "Running" and status == "True":
            st.setdefault("startTime", now_)
        if type in TERMINAL_PHASES and status == "True":
            st.setdefault("completionTime", now_)
        if replica_statuses is not None:
            selector = f"{LABEL_JOB}={name},{LABEL_OPERATOR}={spec.kind.lower()}-controller"
            st["replicaStatuses"] = {
                rt: {**counts, "selector": f"{selector},{LABEL_TYPE}={rt.lower()}"}
                for rt, counts in replica_statuses.items()
            }
        st.setdefault("replicaStatuses", {})
        return self.patch(spec.plural, namespace, name, {"status": st}, subresource="status")

    def set_pod_log(
        self,
        namespace: str,
        pod: str,
        text: str,
        *,
        container: str | None = None,
        append: bool = False,
        close: bool = False,
        previous: bool = False,
    ) -> None:
        """Set (or ``append`` to) a container's log; ``close`` ends ``follow`` streams."""
        cname = container or self._first_container(namespace, pod)
        self.call(
            self.api.write_log,
            namespace,
            pod,
            cname,
            text,
            append=append,
            previous=previous,
            close=close,
        )

    def append_pod_log(
        self, namespace: str, pod: str, text: str, *, container: str | None = None
    ) -> None:
        self.set_pod_log(namespace, pod, text, container=container, append=True)

    def close_pod_log(self, namespace: str, pod: str, *, container: str | None = None) -> None:
        self.set_pod_log(namespace, pod, "", container=container, append=True, close=True)

    def _first_container(self, namespace: str, pod: str) -> str:
        obj = self.get("pods", namespace, pod)
        if obj is None:
            raise KeyError(f"pod {namespace}/{pod} not found")
        return obj["spec"]["containers"][0]["name"]

    def add_event(
        self,
        namespace: str,
        involved_name: str,
        reason: str = "FailedScheduling",
        message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        type: str = "Warning",
        *,
        kind: str = "Pod",
        count: int = 1,
        component: str = "default-scheduler",
    ) -> JSON:
        """A core/v1 Event about ``kind``/``involved_name`` (uid filled in when it exists)."""
        involved: JSON = {
            "kind": kind,
            "namespace": namespace,
            "name": involved_name,
            "apiVersion": self.spec(kind).api_version,
        }
        target = self.get(kind, namespace, involved_name)
        if target is not None:
            involved["uid"] = target["metadata"]["uid"]
        now_ = now()
        return self.create(
            "events",
            namespace,
            {
                "metadata": {
                    "name": f"{involved_name}.{uuid.uuid4().hex[:16]}",
                    "namespace": namespace,
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type,
                "count": count,
                "firstTimestamp": now_,
                "lastTimestamp": now_,
                "source": {"component": component},
                "reportingComponent": component,
            },
        )

    # -- faults

    def fail(
        self,
        status: int | None,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """The next ``times`` requests (None: all) matching ``method`` and the ``path`` regex
        answer ``status`` with a Status body (``Retry-After`` if given; 429 defaults to 1 s).
        ``status=None`` with ``delay`` only slows them down. Faults are checked in order."""
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = Fault(
            status, times, method, re.compile(path) if path else None, retry_after, message, delay
        )
        self.call(self.api.faults.append, fault)
        return fault

    def clear_faults(self) -> None:
        self.call(self.api.faults.clear)

    # -- client configuration

    def kubeconfig(
        self,
        path: str | Path,
        *,
        namespace: str = "default",
        token: str | None = None,
        server: str | None = None,
    ) -> Path:
        """Write a kubeconfig (context ``emu``) pointing at this server; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": "emu",
                    "cluster": {
                        "server": server or self.host,
                        **({"certificate-authority-data": self.tls[1]} if self.tls else {}),
                    },
                }
            ],
            "users": [{"name": "emu", "user": {"token": token or self.token or "none"}}],
            "contexts": [
                {
                    "name": "emu",
                    "context": {"cluster": "emu", "user": "emu", "namespace": namespace},
                }
            ],
            "current-context": "emu",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    @staticmethod
    def unreachable_host() -> str:
        """A loopback URL where nothing listens (connection refused)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
def kube_api() -> Iterator[KubeEmulator]:
    """A fresh emulator per test: ``kube_api.host``, ``kube_api.kubeconfig(path)``, helpers."""
    with KubeEmulator() as emu:
        yield emu
    if emu.server_errors:
        raise AssertionError("the kube emulator crashed while serving") from emu.server_errors[0]


__all__ = ["KubeAPI", "KubeEmulator", "ResourceSpec", "kube_api"]


def self_signed() -> tuple[ssl.SSLContext, str]:
    """A server context with a new self-signed certificate for 127.0.0.1, and the certificate
    as a kubeconfig's certificate-authority-data (base64 PEM)."""
    import base64
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-emulator")])
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:  # the ssl module loads keys from files only
        Path(tmp, "cert.pem").write_bytes(pem + key_pem)
        context.load_cert_chain(Path(tmp, "cert.pem"))
    return context, base64.b64encode(pem).decode()


def _tls_server(context: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    class TlsServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, **kwargs: Any) -> None:
            await super().start_server(ssl=context, **kwargs)

    return TlsServer
