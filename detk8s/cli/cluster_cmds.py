"""Commands that talk to a cluster: submit, status, logs, delete."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from detk8s.cli.cluster_opts import (
    Backend,
    BackendOpt,
    ContextOpt,
    DryRun,
    KubeconfigOpt,
    NamespaceOpt,
    backend_of,
    connect,
)
from detk8s.cli.common import (
    AllOpt,
    RunsArg,
    StrictOpt,
    app,
    console,
    duration,
    err,
    load_selected,
    project,
)
from detk8s.cli.output import Format, FormatOpt, emit
from detk8s.errors import EXIT_FAILED, DetkError, UsageError
from detk8s.labels import RUN_LABEL
from detk8s.names import job_name
from detk8s.storage import TRAIN_LOG

if TYPE_CHECKING:
    from typing import Any

    from detk8s.backends.kubernetes.cluster import Cluster
    from detk8s.backends.kubernetes.kinds import JobKind
    from detk8s.backends.kubernetes.submit import Known, Manifest, Outcome
    from detk8s.project import LoadedRun, Project
    from detk8s.util import Background

    Manifests = dict[str, list[Manifest]]
    Stored = tuple[set[str], str | None]  # the runs with results stored, or why none are known

EXIT_TIMEOUT = 3
SWEEP_THREADS = 16
# The storage check's child yields the CPU to loading and rendering: a re-submit stops it unused.
STORAGE_NICE = 10
# The part of a sweep's rendering its child takes: this process connects and lists jobs meanwhile.
RENDER_SHARE = 0.65


def run_namespace(proj: Project, run: str, flag: str | None) -> str | None:
    """A run's own namespace, unless -n says otherwise (None: the cluster's)."""
    if flag:
        return flag
    try:
        return proj.load_run(run).config.namespace
    except DetkError:  # a run whose config no longer loads still has a job to look at
        return None


@app.command()
def submit(
    names: RunsArg = None,
    all_runs: AllOpt = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow to the end: exit 0 Succeeded, 1 Failed, 3 timeout."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            parser=duration,
            metavar="DURATION",
            show_default=False,
            help="How long --wait waits: 90s, 30m, 6h, 1h30m (or seconds); default 24h.",
        ),
    ] = 24 * 3600.0,
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
    build: Annotated[
        bool,
        typer.Option(
            "--build",
            help="Build and push the runs' images first when their tags are not in the registry.",
        ),
    ] = False,
    force_conflicts: Annotated[
        bool,
        typer.Option(
            "--force-conflicts",
            help="Take back fields someone else changed (kubectl apply/edit) on the run's "
            "objects, as kubectl apply --force-conflicts.",
        ),
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    backend: BackendOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Submit runs as Kubeflow jobs (a sweep goes concurrently); idempotent."""
    from detk8s.backends.kubernetes.manifests import manifests_for, to_yaml

    proj = project()
    selected = proj.select(names or [], all_runs=all_runs)
    local = backend_of(proj, backend) is Backend.local
    # Which runs have results stored (DONE: skipped unless --force) is asked at once, in a child
    # process: its storage client takes as long to set up as loading and rendering a sweep.
    # Only runs that would be (re)created need the answer: when none would, the child stops.
    ask_storage = not (force or local or dry_run is not DryRun.none)
    stored = _stored_later(proj, selected) if ask_storage else None
    loaded = load_selected(proj, selected, strict)
    if wait and len(loaded) != 1:
        raise UsageError("--wait follows one run; submit a sweep without --wait")
    if local:
        _submit_local(proj, [r.name for r in loaded], force, wait, timeout)
        return
    if dry_run is DryRun.client:
        manifests = {r.name: manifests_for(r, proj.settings) for r in loaded}
        sys.stdout.write("".join(to_yaml(m) for m in manifests.values()))
        err(f"dry run: {len(manifests)} run(s) rendered, nothing submitted")
        return
    from detk8s.jobspec import job_namespace
    from detk8s.util import SplitMap

    # Most of the rendering starts now, in a child, while this process asks the cluster.
    rendering = SplitMap(lambda r: manifests_for(r, proj.settings), loaded, share=RENDER_SHARE)
    cluster = connect(proj, context, namespace, kubeconfig)
    targets = {r.name: cluster.in_namespace(namespace or job_namespace(r.config, proj.settings))
               for r in loaded}  # fmt: skip
    server_dry_run = dry_run is DryRun.server
    known = _known_jobs(targets) if len(loaded) > 1 and not server_dry_run else {}
    new = [r.name for r in loaded if _job(known, targets[r.name], r.config.job_name) is None]
    if stored is not None and not new:
        stored.cancel()  # its core is the rendering's
        stored = None
    manifests = {r.name: m for r, m in zip(loaded, rendering(), strict=True)}
    pending = {r.name for r in loaded if not _unchanged(known, targets[r.name], manifests[r.name])}
    skip: set[str] = set()
    if stored is not None:
        skip = _stored_answer(stored) & pending
    elif ask_storage and pending:  # specs changed: a re-submit needs the answer after all
        skip = _stored(proj, sorted(pending))
    _ensure_images(proj, [r for r in loaded if r.name in pending - skip], build)
    _ensure_runtimes(cluster, manifests)
    outcomes = _submit_all(targets, manifests, known, skip, replace, server_dry_run,
                           force_conflicts)  # fmt: skip
    for o in outcomes:
        _report(targets[o.run], manifests[o.run][1]["kind"], o)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        err(f"{len(failed)} of {len(outcomes)} submission(s) failed")
        raise typer.Exit(EXIT_FAILED)
    if wait and outcomes[0].action in ("created", "replaced", "unchanged"):
        _wait(targets[outcomes[0].run], manifests[outcomes[0].run][1], timeout, poll)


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


def _ensure_images(proj: Project, loaded: list[LoadedRun], build: bool) -> None:
    """Every run's image is in its registry before any job is created: a missing one would end
    in ImagePullBackOff minutes later. With --build, the project's missing images are built and
    pushed first. A registry that cannot be asked is a warning."""
    from detk8s.images.registry import manifest_exists
    from detk8s.jobspec import image_name, resolve_image
    from detk8s.util import thread_map

    refs = {resolve_image(r, proj.settings): image_name(r, proj.settings) for r in loaded}
    found = dict(zip(refs, thread_map(manifest_exists, refs, SWEEP_THREADS), strict=True))
    for ref, presence in found.items():
        if presence.exists is None:
            err(f"warning: cannot check that {ref} is in its registry ({presence.detail})")
    missing = [ref for ref, presence in found.items() if presence.exists is False]
    if not missing:
        return
    ours = [refs[ref] for ref in missing if refs[ref] in proj.settings.images]
    if not build or len(ours) < len(missing):
        ref = next(r for r in missing if not build or refs[r] not in proj.settings.images)
        fix = "detk8s build --push, or submit --build" if refs[ref] else "push it"
        raise MissingImage(f"image {ref} is not in its registry: {fix}")
    from detk8s.cli.build_cmds import build_and_push

    build_and_push(proj, list(dict.fromkeys(n for n in ours if n)))


class MissingImage(DetkError):
    pass


class MissingRuntime(DetkError):
    pass


def _ensure_runtimes(cluster: Cluster, manifests: Manifests) -> None:
    """The detk8s runtime each TrainJob names is on the cluster (a TrainJob under a missing one
    would only get a Warning event)."""
    from detk8s.backends.kubernetes.kinds import TRAINJOB

    names = {m[1]["spec"]["runtimeRef"]["name"] for m in manifests.values()
             if m[1]["kind"] == TRAINJOB}  # fmt: skip
    for name in sorted(names):
        if cluster.has_runtime(name) is False:
            raise MissingRuntime(
                f"ClusterTrainingRuntime {name} is not on the cluster: a cluster admin applies "
                "detk8s's runtimes once (detk8s runtimes | kubectl apply -f -)"
            )


def _stored(proj: Project, runs: list[str]) -> set[str]:
    """Runs whose results are already in object storage: skipped unless --force."""
    return _stored_answer(_stored_later(proj, runs, background=False))


def _stored_later(proj: Project, runs: list[str], background: bool = True) -> Background[Stored]:
    """`_stored`'s question, asked in a child process unless not `background`."""
    from detk8s.util import Background

    def ask() -> Stored:  # in the child: the problem comes back as text
        from detk8s.results.collect import done_runs

        try:
            return done_runs(proj.storage(), runs), None
        except DetkError as e:
            return set(), str(e)

    return Background(ask, fork=background, nice=STORAGE_NICE)


def _stored_answer(asking: Background[Stored]) -> set[str]:
    done, problem = asking()
    if problem:
        err(f"warning: cannot check stored results ({problem}); submitting anyway")
    return done


def _known_jobs(targets: dict[str, Cluster]) -> dict[str, Known]:
    """Each namespace's jobs, listed once for a sweep rather than asked for run by run."""
    from detk8s.backends.kubernetes.submit import known_jobs
    from detk8s.util import thread_map

    namespaces = {c.namespace: c for c in targets.values()}
    listed = thread_map(known_jobs, namespaces.values(), len(namespaces))
    return dict(zip(namespaces, listed, strict=True))


def _job(known: dict[str, Known], cluster: Cluster, name: str) -> tuple[JobKind, Manifest] | None:
    return known.get(cluster.namespace, {}).get(name)


def _unchanged(known: dict[str, Known], cluster: Cluster, manifests: list[Manifest]) -> bool:
    from detk8s.backends.kubernetes.submit import same_spec

    found = _job(known, cluster, manifests[1]["metadata"]["name"])
    return found is not None and same_spec(found, manifests[1])


def _submit_all(
    targets: dict[str, Cluster], manifests: Manifests, known: dict[str, Known], skip: set[str],
    replace: bool, server_dry_run: bool, force_conflicts: bool,
) -> list[Outcome]:  # fmt: skip
    from detk8s.backends.kubernetes.rest import ApiError
    from detk8s.backends.kubernetes.submit import Outcome, submit_manifests
    from detk8s.util import thread_map

    def one(run: str) -> Outcome:
        name = manifests[run][1]["metadata"]["name"]
        if run in skip:
            return Outcome(run, name, "skipped", "results already stored (DONE); --force resubmits")
        try:
            return submit_manifests(targets[run], run, manifests[run], replace, server_dry_run,
                                    force_conflicts, known.get(targets[run].namespace))  # fmt: skip
        except DetkError as e:
            return Outcome(run, name, "failed", str(e))
        except ApiError as e:  # a 404 that is no answer to a lookup: no namespace, no CRD
            return Outcome(run, name, "failed", targets[run].describe(e))
        except Exception as e:  # one broken submission must not hide the others' outcomes
            return Outcome(run, name, "failed", f"{type(e).__name__}: {e}")

    return thread_map(one, manifests, SWEEP_THREADS)


def _report(cluster: Cluster, kind_name: str, o: Outcome) -> None:
    from detk8s.backends.kubernetes.kinds import KINDS

    kind = KINDS[kind_name]
    ref = f"{kind.plural}/{o.job}"
    ns = cluster.namespace
    if o.action in ("created", "replaced"):
        logs = f"kubectl logs -n {ns} -f {o.job}-{kind.rank0_replica}-0"
        if kind.attempt_label:  # a JobSet's pod names end in a random suffix
            logs = f"detk8s logs {o.run} -f"
        typer.echo(f"{o.run}: {o.action} {ref} in namespace {ns}; logs: {logs}")
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
    output: FormatOpt = Format.table,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until every job has ended.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            parser=duration,
            metavar="DURATION",
            show_default=False,
            help="--watch refresh: 2s (the default), 1m, ...",
        ),
    ] = 2.0,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Jobs: state, replicas, restarts, age, nodes, GPUs, training progress, why they wait.

    Progress (epoch, iteration, loss, ETA) comes from rank 0's log; locally, pids and logs."""
    from detk8s.backends.kubernetes.status import job_rows

    proj = project()
    wanted = proj.select(names, all_runs=False) if names else None
    if backend_of(proj, backend) is Backend.local:
        _status_local(proj, wanted)
        return
    cluster = connect(proj, context, namespace, kubeconfig)
    progress = _progress_reader(proj)
    title = f"detk8s jobs in {cluster.target.context}/{cluster.namespace}"

    def rows() -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in job_rows(cluster, wanted, progress)]

    current = rows()
    if watch:
        current = _watch(rows, current, title, interval)
    else:
        emit(current, output, STATUS_COLUMNS, STATUS_WIDE, "job", title)
    for run in sorted(set(wanted or []) - {r["run"] for r in current}):
        err(f"{run}: no job in namespace {cluster.namespace}")


def _status_cells(r: dict[str, Any]) -> list[Any]:
    return [r["run"], r["job"], r["state"], f"{r['ready']}/{r['total']}", r["restarts"],
            r["age"], r["nodes"], r["gpus"], r["progress"], r["reason"]]  # fmt: skip


STATUS_COLUMNS = (["run", "job", "state", "ready", "restarts", "age", "node", "GPUs", "progress",
                   "reason"], _status_cells)  # fmt: skip
STATUS_WIDE = (["namespace"], lambda r: [r["namespace"]])
ENDED = ("Succeeded", "Failed")


def _watch(
    rows: Callable[[], list[dict[str, Any]]], current: list[dict[str, Any]], title: str,
    interval: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Refresh in place on a terminal (rich Live); in a pipe, a line per change of a job."""
    import time

    from detk8s.cli.output import rich_table

    def table(r: list[dict[str, Any]]) -> Any:
        return rich_table(STATUS_COLUMNS[0], [[str(c) for c in _status_cells(x)] for x in r],
                          title)  # fmt: skip

    def ended(r: list[dict[str, Any]]) -> bool:
        return all(x["state"] in ENDED for x in r)

    if console().is_terminal:
        from rich.live import Live

        with Live(table(current), console=console(), auto_refresh=False) as live:
            while not ended(current):
                time.sleep(interval)
                current = rows()
                live.update(table(current), refresh=True)
        return current
    seen: dict[str, str] = {}
    while True:
        for r in current:
            line = f"{r['run']}  {r['job']}  {r['state']}  {r['progress'] or r['reason']}".strip()
            if seen.get(r["job"]) != line:
                typer.echo(line)
                seen[r["job"]] = line
        if ended(current):
            return current
        time.sleep(interval)
        current = rows()


def _progress_reader(proj: Project) -> Callable[[dict[str, Any], str], str | None]:
    """The job's progress as its framework reads its log, with its run's config."""
    from detk8s.frameworks import get_adapter, known_frameworks
    from detk8s.frameworks.base import latest_progress
    from detk8s.labels import FRAMEWORK_LABEL

    def read(job: dict[str, Any], log: str) -> str | None:
        labels = job["metadata"].get("labels") or {}
        framework, run = labels.get(FRAMEWORK_LABEL), labels.get(RUN_LABEL)
        if framework not in known_frameworks() or run not in proj.run_files:
            return None
        try:
            found = latest_progress(get_adapter(framework), proj.load_run(run).run, log)
        except DetkError:
            return None
        return str(found) if found else None

    return read


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
        str | None,
        typer.Option("--replica", metavar="NAME", help="e.g. worker-1 (default: rank 0)."),
    ] = None,
    all_replicas: Annotated[
        bool, typer.Option("--all", help="Every replica, each line prefixed with its name.")
    ] = False,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
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

    cluster = connect(proj, context, namespace, kubeconfig)
    cluster = cluster.in_namespace(run_namespace(proj, name, namespace))
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
    kubeconfig: KubeconfigOpt = None,
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
    cluster = connect(proj, context, namespace, kubeconfig)
    targets: list[tuple[JobKind, str, Cluster]] = []
    if all_runs:
        for kind, job in cluster.list_jobs(f"{MANAGED_BY_LABEL}=detk8s"):
            targets.append((kind, job["metadata"]["name"], cluster))
    else:
        for run in proj.select(names or []):
            where = cluster.in_namespace(run_namespace(proj, run, namespace))
            found = where.find_job(job_name(run))
            if found is None:
                err(f"{run}: no job {job_name(run)} in namespace {where.namespace}")
            else:
                targets.append((found[0], job_name(run), where))
    for kind, name, where in targets:
        delete_job(where, kind, name)
        typer.echo(f"deleted {kind.plural}/{name} in namespace {where.namespace}")
    if not targets and all_runs:
        typer.echo(f"no detk8s jobs in namespace {cluster.namespace}")
