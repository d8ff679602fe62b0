"""Kubeconfigs as kubectl reads them (detk8s/backends/kubernetes/kubeconfig.py), against the API
emulator over TLS: merged KUBECONFIG lists, paths relative to their file, exec plugins (through
the kubernetes client), and one-line errors."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube.emulator import KubeEmulator

NS = "detection"


@pytest.fixture
def emu() -> Any:
    with KubeEmulator(tls=True) as emulator:
        emulator.add_namespace(NS)
        yield emulator


def write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **config}))
    return path


def context(name: str, cluster: str, user: str) -> dict[str, Any]:
    return {"name": name, "context": {"cluster": cluster, "user": user, "namespace": NS}}


def authenticated(emu: KubeEmulator) -> bool:
    """Every request the emulator saw carried its token."""
    seen = emu.requests()
    return bool(seen) and all(
        r["headers"].get("Authorization") == f"Bearer {emu.token}" for r in seen
    )


def test_merged_files_first_wins_and_paths_are_relative_to_their_file(
    emu: KubeEmulator, project: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert emu.tls is not None
    (tmp_path / "a/ca.pem").parent.mkdir()
    (tmp_path / "a/ca.pem").write_bytes(base64.b64decode(emu.tls[1]))
    (tmp_path / "b").mkdir()
    (tmp_path / "b/token").write_text(f"{emu.token}\n")
    a = write(tmp_path / "a/config", {
        "current-context": "emu",
        "contexts": [context("emu", "c", "u")],
        "clusters": [{"name": "c", "cluster": {"server": emu.host,
                                               "certificate-authority": "ca.pem"}}],
    })  # fmt: skip
    b = write(tmp_path / "b/config", {
        "current-context": "elsewhere",  # a's is first
        "contexts": [context("elsewhere", "c", "u")],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],  # a's wins
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
    })  # fmt: skip
    missing = tmp_path / "none/config"  # skipped, as kubectl skips it
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(map(str, (missing, a, b))))
    result = cli("status")
    assert result.code == 0, result.err
    assert f"detk8s jobs in emu/{NS}" in result.out
    assert authenticated(emu)


def test_exec_plugin_users_are_authenticated_by_the_plugin(
    emu: KubeEmulator, project: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert emu.tls is not None
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": {"token": emu.token}}  # fmt: skip
    config = write(tmp_path / "config", {
        "current-context": "emu",
        "contexts": [context("emu", "c", "u")],
        "clusters": [{"name": "c", "cluster": {"server": emu.host,
                                               "certificate-authority-data": emu.tls[1]}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
            "interactiveMode": "Never",
        }}}],
    })  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(config))
    result = cli("status")
    assert result.code == 0, result.err
    assert authenticated(emu)


def test_client_certificates_are_private_files(tmp_path: Path) -> None:
    from detk8s.backends.kubernetes.kubeconfig import resolve

    data = {"cert": b"-----BEGIN CERTIFICATE-----\n", "key": b"-----BEGIN PRIVATE KEY-----\n"}
    config = write(tmp_path / "config", {
        "current-context": "x",
        "contexts": [context("x", "c", "u")],
        "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example:6443/",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {
            "client-certificate-data": base64.b64encode(data["cert"]).decode(),
            "client-key-data": base64.b64encode(data["key"]).decode(),
        }}],
    })  # fmt: skip
    conn = resolve(kubeconfig=str(config))
    assert (conn.server, conn.verify, conn.authorization) == ("https://k8s.example:6443", False,
                                                              None)  # fmt: skip
    assert conn.cert_file and conn.key_file
    for path, expected in ((conn.cert_file, data["cert"]), (conn.key_file, data["key"])):
        assert Path(path).read_bytes() == expected
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(Path(path).parent).st_mode) == 0o700


@pytest.mark.parametrize(
    ("config", "args", "error"),
    [
        ({"contexts": [context("x", "c", "u")]}, [],
         "error: no usable kubeconfig: no current context in {file}"),
        ({"current-context": "x", "contexts": [context("x", "c", "u")]}, ["--context", "nope"],
         "error: no usable kubeconfig: no context named 'nope'"),
        ({"current-context": "x", "contexts": [context("x", "c", "u")]}, [],
         "error: no usable kubeconfig: no cluster named 'c'"),
        ({"current-context": "x", "contexts": [context("x", "c", "u")],
          "clusters": [{"name": "c", "cluster": {}}], "users": [{"name": "u", "user": {}}]},
         [],
         "error: no usable kubeconfig: cluster 'c' has no server"),
        ({"current-context": "x", "contexts": [{"context": {}}]}, [],
         "error: {file}: contexts: an entry without a name"),
        (None, ["--kubeconfig", "{file}"], "error: no usable kubeconfig: {file}: no such file"),
        ({"current-context": "x", "contexts": [context("x", "c", "u")],
          "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example"}}],
          "users": [{"name": "u", "user": {"tokenFile": "gone"}}]}, [],
         "error: no usable kubeconfig: context 'x': No such file or directory ({dir}/gone)"),
        ({"current-context": "x", "contexts": [context("x", "c", "u")],
          "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example",
                                                 "certificate-authority-data": "not base64!"}}],
          "users": [{"name": "u", "user": {}}]}, [],
         "error: no usable kubeconfig: context 'x': certificate-authority-data is not base64"),
        (None, [], "error: no usable kubeconfig: no file at {file} (KUBECONFIG, --kubeconfig), "
                   "and not in a pod"),
    ],
    ids=["no-current", "no-such-context", "no-such-cluster", "no-server", "unnamed", "missing",
         "token-file-gone", "bad-base64", "no-file"],
)  # fmt: skip
def test_unusable_kubeconfigs_are_one_line(
    project: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any] | None, args: list[str], error: str,
) -> None:  # fmt: skip
    file = tmp_path / "config"
    if config is not None:
        write(file, config)
    monkeypatch.setenv("KUBECONFIG", str(file))
    result = cli("status", *[a.format(file=file) for a in args])
    assert result.code != 0 and result.out == ""
    assert result.err.splitlines() == [error.format(file=file, dir=tmp_path)]
