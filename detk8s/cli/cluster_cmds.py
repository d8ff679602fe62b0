"""Commands that talk to a cluster: submit, status, logs, delete."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from detk8s.cli.common import AllOpt, RunsArg, StrictOpt, app, console, err, load_runs, project
from detk8s.errors import EXIT_FAILED, DetkError, UsageError
from detk8s.labels import RUN_LABEL
from detk8s.names import job_name
from detk8s.storage import TRAIN_LOG

if TYPE_CHECKING:
    from typing import Any

    from detk8s.backends.kubernetes.cluster import Cluster
    from detk8s.backends.kubernetes.submit import Outcome
    from detk8s.project import Project

    Manifests = dict[str, list[dict[str, Any]]]

EXIT_TIMEOUT = 3
SWEEP_THREADS = 16

ContextOpt = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context (default: project, current).")
]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: project, context).")
]


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


def connect(proj: Project, context: str | None, namespace: str | None) -> Cluster:
    from detk8s.backends.kubernetes.cluster import Cluster

    settings = proj.settings
    return Cluster(context or settings.context, namespace or settings.namespace)


@app.command()
def submit(
    names: RunsArg = None,
    all_runs: AllOpt = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow to the end: exit 0 Succeeded, 1 Failed, 3 timeout."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 24 * 3600.0,
    poll: Annotated[float, typer.Option(help="Seconds between state checks.", hidden=True)] = 2.0,
    dry_run: Annotated[
        DryRun,
        typer.Option(
            "--dry-run",
            help="client: print what would be created; server: "
            "the API server validates without persisting.",
        ),
    ] = DryRun.none,
    replace: Annotated[
        bool, typer.Option("--replace", help="Delete and recreate a job whose spec changed.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Submit even when results are already stored (DONE).")
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    backend: BackendOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Submit runs as Kubeflow jobs (a sweep goes concurrently); idempotent."""
    from detk8s.backends.kubernetes.manifests import manifests_for, to_yaml

    proj, loaded = load_runs(names, all_runs, strict)
    if wait and len(loaded) != 1:
        raise UsageError("--wait follows one run; submit a sweep without --wait")
    if backend_of(proj, backend) is Backend.local:
        _submit_local(proj, [r.name for r in loaded], force, wait, timeout)
        return
    manifests = {r.name: manifests_for(r, proj.settings) for r in loaded}
    if dry_run is DryRun.client:
        sys.stdout.write("".join(to_yaml(m) for m in manifests.values()))
        err(f"dry run: {len(manifests)} run(s) rendered, nothing submitted")
        return
    skip = set() if force or dry_run is DryRun.server else _stored(proj, list(manifests))
    cluster = connect(proj, context, namespace)
    outcomes = _submit_all(cluster, manifests, skip, replace, dry_run is DryRun.server)
    for o in outcomes:
        _report(cluster, manifests[o.run][1]["kind"], o)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        err(f"{len(failed)} of {len(outcomes)} submission(s) failed")
        raise typer.Exit(EXIT_FAILED)
    if wait and outcomes[0].action in ("created", "replaced", "unchanged"):
        _wait(cluster, manifests[outcomes[0].run][1], timeout, poll)


def _submit_local(proj: Project, runs: list[str], force: bool, wait: bool, timeout: float) -> None:
    from detk8s.backends.local import LocalBackend, follow_file

    local = LocalBackend(proj)
    skip = set() if force else _stored(proj, runs)
    started = {}
    for run in runs:
        pid = local.pid(run)
        if run in skip:
            typer.echo(f"{run}: skipped: results already stored (DONE); --force reruns")
        elif pid is not None:
            typer.echo(f"{run}: unchanged: already running locally (pid {pid})")
        else:
            proc = local.start(run, force=force)
            started[run] = proc
            log = local.run_dir(run) / TRAIN_LOG
            typer.echo(f"{run}: started locally (pid {proc.pid}); log: {log}")
    if not wait or not started:
        return
    ((run, proc),) = started.items()
    import time

    deadline = time.monotonic() + timeout
    follow_file(
        local.run_dir(run) / TRAIN_LOG,
        alive=lambda: proc.poll() is None and time.monotonic() < deadline,
        out=typer.echo,
    )
    if proc.poll() is None:
        err(f"{run}: still running after {timeout:g} s (pid {proc.pid})")
        raise typer.Exit(EXIT_TIMEOUT)
    state = local.state(run).state
    err(f"{run}: {state}")
    if proc.returncode != 0 or state != "Succeeded":
        raise typer.Exit(EXIT_FAILED)


def _stored(proj: Project, runs: list[str]) -> set[str]:
    """Runs whose results are already in object storage (DONE): skipped unless --force."""
    from concurrent.futures import ThreadPoolExecutor

    from detk8s.storage import DONE

    try:
        storage = proj.storage()
        with ThreadPoolExecutor(SWEEP_THREADS) as pool:
            done = list(pool.map(lambda r: storage.exists(f"{r}/{DONE}"), runs))
    except DetkError as e:
        err(f"warning: cannot check stored results ({e}); submitting anyway")
        return set()
    return {r for r, d in zip(runs, done, strict=True) if d}


def _submit_all(
    cluster: Cluster, manifests: Manifests, skip: set[str], replace: bool, server_dry_run: bool
) -> list[Outcome]:
    from concurrent.futures import ThreadPoolExecutor

    from detk8s.backends.kubernetes.submit import Outcome, submit_manifests

    def one(run: str) -> Outcome:
        name = manifests[run][1]["metadata"]["name"]
        if run in skip:
            return Outcome(run, name, "skipped", "results already stored (DONE); --force resubmits")
        try:
            return submit_manifests(cluster, run, manifests[run], replace, server_dry_run)
        except DetkError as e:
            return Outcome(run, name, "failed", str(e))
        except Exception as e:  # one broken submission must not hide the others' outcomes
            return Outcome(run, name, "failed", f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(min(SWEEP_THREADS, max(1, len(manifests)))) as pool:
        return list(pool.map(one, manifests))


def _report(cluster: Cluster, kind_name: str, o: Outcome) -> None:
    from detk8s.backends.kubernetes.kinds import KINDS

    kind = KINDS[kind_name]
    ref = f"{kind.plural}/{o.job}"
    ns = cluster.namespace
    if o.action in ("created", "replaced"):
        pod = f"{o.job}-{kind.rank0_replica}-0"
        typer.echo(f"{o.run}: {o.action} {ref} in namespace {ns}; "
                   f"logs: kubectl logs -n {ns} -f {pod}")  # fmt: skip
    elif o.ok:
        typer.echo(
            f"{o.run}: {o.action} {ref} in namespace {ns}" + (f": {o.detail}" if o.detail else "")
        )
    else:
        err(f"error: {o.run}: {o.detail}")


def _wait(cluster: Cluster, job: dict[str, Any], timeout: float, poll: float) -> None:
    from detk8s.backends.kubernetes.kinds import KINDS
    from detk8s.backends.kubernetes.watch import TIMEOUT, wait_for_job

    kind = KINDS[job["kind"]]
    name = job["metadata"]["name"]
    state = wait_for_job(cluster, kind, name, timeout, poll, out=typer.echo, note=err)
    if state == TIMEOUT:
        err(f"{kind.plural}/{name}: still running after {timeout:g} s")
        raise typer.Exit(EXIT_TIMEOUT)
    if state != "Succeeded":  # its pods may be gone: the log the run stored stays readable
        run = (job["metadata"].get("labels") or {}).get(RUN_LABEL, name)
        err(f"[detk8s] the run's whole log: detk8s logs {run}")
    err(f"{kind.plural}/{name}: {state}")
    if state != "Succeeded":
        raise typer.Exit(EXIT_FAILED)


@app.command()
def status(
    names: RunsArg = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Table of jobs: state, replicas, restarts, age, node, GPUs, why Pending (local: pids)."""
    from rich.table import Table

    from detk8s.backends.kubernetes.status import job_rows

    proj = project()
    wanted = proj.select(names, all_runs=False) if names else None
    if backend_of(proj, backend) is Backend.local:
        _status_local(proj, wanted)
        return
    cluster = connect(proj, context, namespace)
    rows = job_rows(cluster, wanted)
    table = Table(title=f"detk8s jobs in {cluster.target.context}/{cluster.namespace}",
                  title_justify="left")  # fmt: skip
    for col in ("run", "job", "state", "ready", "restarts", "age", "node", "GPUs", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.run, r.job, r.state, f"{r.ready}/{r.total}", str(r.restarts), r.age,
                      r.nodes, str(r.gpus), r.reason)  # fmt: skip
    console().print(table)
    missing = sorted(set(wanted or []) - {r.run for r in rows})
    for run in missing:
        err(f"{run}: no job in namespace {cluster.namespace}")


def _status_local(proj: Project, wanted: list[str] | None) -> None:
    from rich.table import Table

    from detk8s.backends.local import LocalBackend

    local = LocalBackend(proj)
    table = Table(title=f"detk8s local runs in {local.workdir}", title_justify="left")
    for col in ("run", "state", "pid", "log"):
        table.add_column(col, overflow="fold")
    for run in wanted or list(proj.run_files):
        try:
            st = local.state(run)
        except DetkError as e:  # one run's storage call failed: its row says so
            table.add_row(run, f"Unknown: {e}", "-", str(local.run_dir(run) / TRAIN_LOG))
            continue
        if wanted or st.state != "Pending":
            table.add_row(run, st.state, str(st.pid or "-"), str(st.log))
    console().print(table)


@app.command()
def logs(
    run: Annotated[str, typer.Argument(help="Run name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new lines.")] = False,
    replica: Annotated[
        str | None, typer.Option("--replica", help="e.g. worker-1 (default: rank 0).")
    ] = None,
    all_replicas: Annotated[
        bool, typer.Option("--all", help="Every replica, each line prefixed with its name.")
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Logs of a run: rank 0 (worker-0 of a PaddleJob, master-0 of a PyTorchJob)."""
    from detk8s.backends.kubernetes.logs import print_logs

    proj = project()
    (name,) = proj.select([run])
    if backend_of(proj, backend) is Backend.local:
        from detk8s.backends.local import LocalBackend, follow_file

        local = LocalBackend(proj)
        path = local.run_dir(name) / TRAIN_LOG
        if not path.exists():
            raise UsageError(f"{name}: no local log at {path}")
        follow_file(path, alive=lambda: follow and local.pid(name) is not None, out=typer.echo)
        return
    from detk8s.runner.logsync import stored_log

    cluster = connect(proj, context, namespace)
    store = proj.storage()
    print_logs(
        cluster, job_name(name), replica, all_replicas, follow, typer.echo,
        stored=lambda replica_name: stored_log(store, name, replica_name), note=err,
    )  # fmt: skip


@app.command()
def delete(
    names: RunsArg = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Every detk8s job in the namespace.")
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Delete runs' jobs (and their ConfigMaps); locally, stop their processes."""
    from detk8s.backends.kubernetes.submit import delete_job
    from detk8s.labels import MANAGED_BY_LABEL

    proj = project()
    if backend_of(proj, backend) is Backend.local:
        from detk8s.backends.local import LocalBackend

        local = LocalBackend(proj)
        for run in proj.select(names or [], all_runs=all_runs):
            if local.stop(run):
                typer.echo(f"stopped local run {run}")
            elif not all_runs:
                err(f"{run}: not running locally")
        return
    cluster = connect(proj, context, namespace)
    if all_runs:
        targets = [
            (k, j["metadata"]["name"]) for k, j in cluster.list_jobs(f"{MANAGED_BY_LABEL}=detk8s")
        ]
    else:
        targets = []
        for run in proj.select(names or []):
            found = cluster.find_job(job_name(run))
            if found is None:
                err(f"{run}: no job {job_name(run)} in namespace {cluster.namespace}")
            else:
                targets.append((found[0], job_name(run)))
    for kind, name in targets:
        delete_job(cluster, kind, name)
        typer.echo(f"deleted {kind.plural}/{name} in namespace {cluster.namespace}")
    if not targets and all_runs:
        typer.echo(f"no detk8s jobs in namespace {cluster.namespace}")
