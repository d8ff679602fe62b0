"""The conventions of kubectl and the shell: --version, completion of commands and run names
(through the environment variables the completion scripts set, in bash, zsh and fish), -o
formats on runs / status / collect, durations, readable help, and training progress in
`status` read from a real CPU training log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube.emulator import KubeEmulator
from test_cluster import wait_until

from detk8s import __version__
from detk8s.util import parse_duration, thread_map

LOGS = Path(__file__).parent / "data" / "logs"
NS = "detection"
FORMATS = ["table", "wide", "json", "yaml", "name"]


def test_version(cli: Any) -> None:
    r = cli("--version")
    assert (r.code, r.out) == (0, f"detk8s {__version__}\n")


def complete(project: Path, words: str, shell: str) -> list[str]:
    env = {**os.environ, "_DETK8S_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    else:
        env |= {"_TYPER_COMPLETE_ARGS": words, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    done = subprocess.run([sys.executable, "-m", "detk8s"], env=env, cwd=project,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_of_run_names_and_commands(project: Path, shell: str) -> None:
    runs = complete(project, "detk8s render L", shell)
    names = set(re.findall(r"[A-Z]\d+", " ".join(runs)))
    assert {"L1", "L2", "L3", "L4"} <= names and not {"Y1", "U1"} & names
    assert any("status" in w for w in complete(project, "detk8s sta", shell))


def test_install_and_show_completion_exist(project: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "detk8s", "--show-completion", "bash"],
                          cwd=project, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "_DETK8S_COMPLETE=complete_bash" in done.stdout


def test_help_shows_no_python_types(cli: Any) -> None:
    for command in ["--help", "submit --help", "status --help", "collect --help", "build --help"]:
        r = cli(*command.split())
        assert r.code == 0
        for python_type in ("<bool>", "<list", "<str>", "<float>", "<int>"):
            assert python_type not in r.out, (command, python_type)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "30m", "6h", "1h30m", "2h0m5s", "45", "1.5")] == [
        90, 1800, 21600, 5400, 7205, 45, 1.5
    ]  # fmt: skip
    for bad in ("", "1x", "h", "1m30h", "-5m"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)


def test_thread_map_keeps_order_runs_concurrently_and_raises_the_first_error() -> None:
    import threading

    together = threading.Barrier(8, timeout=10)  # all 8 calls wait for each other: concurrent

    def square(x: int) -> int:
        together.wait()
        return x * x

    assert thread_map(square, range(8), 8) == [x * x for x in range(8)]
    assert thread_map(square, [], 8) == []

    def fail_odd(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    with pytest.raises(ValueError, match=r"^odd 1$"):
        thread_map(fail_odd, range(10), 3)


FORKED = """
import os, threading, time
from detk8s.util import Background, split_map

here = os.getpid()
assert Background(os.getpid)() != here  # on another core
tried = []

def fails() -> None:
    tried.append(os.getpid())
    raise ValueError("broken")

try:
    Background(fails)()
except ValueError as e:  # raised by running it again here, as without the child
    assert str(e) == "broken" and tried == [here], tried
else:
    raise AssertionError("no error")
done = split_map(lambda x: (x * x, os.getpid()), range(40))
assert [v for v, _ in done] == [x * x for x in range(40)]
assert {p for _, p in done[:20]} == {here} and here not in {p for _, p in done[20:]}
assert [p for _, p in split_map(lambda x: (x, os.getpid()), range(3))] == [here] * 3
assert Background(lambda: os.nice(0), nice=5)() == os.nice(0) + 5  # yields the CPU to us
assert Background(os.getpid, fork=False)() == here
waiting = Background(lambda: time.sleep(60))
started = time.monotonic()
waiting.cancel()  # not needed after all: the child is stopped, not waited for
assert time.monotonic() - started < 10
threading.Thread(target=threading.Event().wait, daemon=True).start()
assert Background(os.getpid)() == here  # another thread: no fork, no lock left held
print("ok")
"""


def test_background_and_split_map_fork_only_when_safe() -> None:
    """A fresh interpreter: pytest's own process may have threads (servers of other tests)."""
    done = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout == "ok\n", done.stderr


def test_a_bad_duration_is_a_usage_error(project: Path, cli: Any) -> None:
    r = cli("submit", "Y4", "--wait", "--timeout", "1x")
    assert r.code == 2 and "is not a duration" in " ".join(r.err.replace("│", " ").split())


@pytest.mark.parametrize("fmt", FORMATS)
def test_runs_output_formats(project: Path, cli: Any, fmt: str) -> None:
    r = cli("runs", "L1", "U1", "-o", fmt)
    assert r.code == 0, r.err
    if fmt == "name":
        assert r.out == "L1\nU1\n"
    elif fmt in ("json", "yaml"):
        rows = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
        assert [(x["run"], x["framework"], x["total_batch"]) for x in rows] == [
            ("L1", "paddledet", 32), ("U1", "ultralytics", 32)
        ]  # fmt: skip
        assert set(rows[0]) >= {"gpus", "nodes", "batch_size", "lr", "epochs", "dataset", "image"}
    else:
        assert "GPUs x nodes" in r.out and ("namespace" in r.out) == (fmt == "wide")


def running_job(cluster: KubeEmulator, cli: Any, lines: int) -> None:
    """Y4 running, rank 0's log the first `lines` lines of a real CPU PicoDet run's log."""
    assert cli("submit", "Y4").code == 0
    cluster.set_job_condition("paddlejobs", NS, "y4", "Running")
    cluster.add_pod(NS, "y4", "worker", 0, node="gpu-1")
    text = (LOGS / "ppdet_train.log").read_text().splitlines(keepends=True)
    cluster.set_pod_log(NS, "y4-worker-0", "".join(text[:lines]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_status_output_formats_and_progress(cluster: KubeEmulator, cli: Any, fmt: str) -> None:
    running_job(cluster, cli, lines=5)  # iterations 0 and 1 of 4 logged
    r = cli("status", "-o", fmt)
    assert r.code == 0, r.err
    progress = "epoch 1/80, iter 2/4, loss 3.968, ETA 0:00:02"  # the log's, Y4's 80 epochs
    if fmt == "name":
        assert r.out == "paddlejobs/y4\n"
    elif fmt in ("json", "yaml"):
        (row,) = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
        assert (row["run"], row["job"], row["state"], row["namespace"]) == (
            "Y4", "paddlejobs/y4", "Running", NS
        )  # fmt: skip
        assert row["progress"] == progress and row["nodes"] == "gpu-1"
    else:  # the progress column wraps: its words are there
        text = " ".join(r.out.replace("│", " ").split())
        assert all(word in text for word in progress.split()), text
        assert ("namespace" in text) == (fmt == "wide")


def test_status_watch_prints_changes_until_the_end(cluster: KubeEmulator, cli: Any) -> None:
    running_job(cluster, cli, lines=4)  # iteration 0

    def trainer() -> None:  # the log grows, then the job ends: each after a refresh happened
        refreshes = lambda: len(cluster.requests("GET", f"/namespaces/{NS}/paddlejobs$"))  # noqa: E731
        wait_until(lambda: refreshes() >= 2)
        cluster.append_pod_log(NS, "y4-worker-0", "".join(
            (LOGS / "ppdet_train.log").read_text().splitlines(keepends=True)[4:6]))  # fmt: skip
        seen = refreshes()
        wait_until(lambda: refreshes() >= seen + 2)
        cluster.set_job_condition("paddlejobs", NS, "y4", "Succeeded")

    t = threading.Thread(target=trainer, daemon=True)
    t.start()
    r = cli("status", "--watch", "--interval", "0.1s")
    t.join()
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("Y4  paddlejobs/y4  Running  epoch 1/80, iter 1/4")
    assert any("iter 3/4" in line for line in lines[1:])
    assert lines[-1].startswith("Y4  paddlejobs/y4  Succeeded")


@pytest.mark.parametrize("fmt", FORMATS)
def test_collect_output_formats(project: Path, cli: Any, tmp_path: Path, fmt: str) -> None:
    from test_results import record

    from detk8s.storage import open_storage

    store = open_storage(f"file://{tmp_path / 'store'}")
    store.put("L2/eval.json", json.dumps(record("L2")).encode())
    store.put("L2/DONE", b"")
    text = (project / "detk8s.yaml").read_text()
    (project / "detk8s.yaml").write_text(text.replace("s3://detk8s/runs", store.uri))
    r = cli("collect", "L1", "L2", "-o", fmt, "-o", "summary.csv")
    assert r.code == 0, r.err
    assert (project / "summary.csv").read_text().startswith("run,status,")
    if fmt == "name":
        assert r.out == "L1\nL2\n"
    elif fmt in ("json", "yaml"):
        rows = json.loads(r.out) if fmt == "json" else yaml.safe_load(r.out)
        assert [(x["run"], x["status"], x["mAP"]) for x in rows] == [
            ("L1", "missing", None), ("L2", "done", 93.63)
        ]  # fmt: skip
    else:
        assert "93.63%" in r.out and ("reason" in r.out.splitlines()[0]) == (fmt == "wide")


def test_s3_region_comes_from_boto3s_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No region in the project: AWS_PROFILE's in ~/.aws/config, as every AWS tool reads it;
    the project's `storage.region` over it."""
    from detk8s.storage import Connection, open_storage

    (tmp_path / "config").write_text("[profile lab]\nregion = eu-west-3\n")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    assert open_storage("s3://b/runs").client.meta.region_name == "eu-west-3"
    chosen = open_storage("s3://b/runs", Connection(region="ap-south-1"))
    assert chosen.client.meta.region_name == "ap-south-1"


# A command, then the cluster and storage client packages it loaded (there should be none).
CLIENTS_LOADED = """
import sys
from detk8s.cli import main
sys.argv = ["detk8s", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(sorted({m.split(".")[0] for m in sys.modules} & {"kubernetes", "boto3", "botocore",
                                                         "s3transfer"}))
"""


@pytest.mark.parametrize(
    "command", [["runs"], ["validate", "--strict"], ["render", "--all", "-o", "out"],
                ["submit", "L1", "--dry-run=client"], ["--help"]],
)  # fmt: skip
def test_commands_without_a_cluster_or_bucket_load_neither_client(
    project: Path, command: list[str]
) -> None:
    done = subprocess.run([sys.executable, "-c", CLIENTS_LOADED, *command], cwd=project,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
