"""Commands that only read the project: runs, render, validate, schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from detk8s.cli.common import AllOpt, RunsArg, StrictOpt, app, err, load_runs
from detk8s.cli.output import Format, FormatOpt, emit
from detk8s.errors import DetkError
from detk8s.util import plain_table

if TYPE_CHECKING:
    from detk8s.project import LoadedRun


@app.command()
def runs(
    names: RunsArg = None,
    strict: StrictOpt = False,
    output: FormatOpt = Format.table,
) -> None:
    """The runs in configs/: framework, model, GPUs x nodes, batch, lr, epochs, data."""
    _, loaded = load_runs(names, all_runs=not names, strict=strict)
    rows = [run_row(r) for r in loaded]
    columns = ["run", "framework", "model", "GPUs x nodes", "batch/GPU", "total batch", "lr",
               "epochs", "dataset", "train images"]  # fmt: skip

    def cells(r: dict[str, Any]) -> list[Any]:
        train = f"{r['train_images']:,}" if r["train_images"] else "?"
        frac = f" ({r['train_fraction']})" if r["train_fraction"] else ""
        return [r["run"], r["framework"], r["model"], f"{r['gpus']} x {r['nodes']}",
                r["batch_size"], r["total_batch"], r["lr"], r["epochs"], r["dataset"],
                train + frac]  # fmt: skip

    wide = (["api", "image", "namespace", "queue"],
            lambda r: [r["api"], r["image"], r["namespace"], r["queue"]])  # fmt: skip
    emit(rows, output, (columns, cells), wide, "run", "detk8s runs")


def run_row(r: LoadedRun) -> dict[str, Any]:
    """A run as `runs -o json` gives it."""
    c, d = r.config, r.dataset
    return {
        "run": c.name, "framework": c.framework, "model": c.model, "gpus": c.gpus,
        "nodes": c.nodes, "batch_size": c.batch_size, "total_batch": c.total_batch,
        "lr": c.lr, "epochs": c.epochs, "dataset": d.name, "train_images": d.train_size,
        "train_fraction": d.train_fraction, "image": c.image, "namespace": c.namespace,
        "queue": c.queue, "api": c.api, "file": str(r.file),
    }  # fmt: skip


@app.command()
def runtimes() -> None:
    """detk8s's ClusterTrainingRuntimes for Kubeflow Trainer v2 (api: trainer-v2), for a cluster
    admin to apply once: detk8s runtimes | kubectl apply -f -"""
    from detk8s.backends.kubernetes.kinds import RUNTIMES
    from detk8s.backends.kubernetes.manifests import runtime_manifest, to_yaml

    sys.stdout.write(to_yaml([runtime_manifest(launcher) for launcher in RUNTIMES]))


@app.command()
def render(
    names: RunsArg = None,
    all_runs: AllOpt = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write one <RUN>.yaml per run into this directory."),
    ] = None,
    strict: StrictOpt = False,
) -> None:
    """Kubernetes manifests of runs: the ConfigMap with the framework config, then the job."""
    from detk8s.backends.kubernetes.manifests import manifests_for, to_yaml
    from detk8s.util import write_all

    project, loaded = load_runs(names, all_runs, strict)
    # Everything renders before anything is written: a bad run leaves no half-written output.
    rendered = {r.name: to_yaml(manifests_for(r, project.settings)) for r in loaded}
    if output is None:
        sys.stdout.write("".join(rendered.values()))
        return
    files = {output / f"{name}.yaml": text for name, text in rendered.items()}
    write_all(dict(files))
    for path in files:
        err(f"wrote {path}")


@app.command()
def validate(
    names: RunsArg = None,
    strict: StrictOpt = False,
) -> None:
    """Check every run config (or the named ones): exit 0, or one line per problem and exit 2.

    Prints each run's learning-rate schedule: total batch, lr, the lr upstream's linear rule
    gives for that batch, and the warmup in iterations and in epochs."""
    from detk8s.frameworks import get_adapter
    from detk8s.jobspec import pod_job_spec
    from detk8s.schedule import summarize

    project, loaded = load_runs(names, all_runs=not names, strict=strict)
    for r in loaded:  # what a job would be (image, reachability, the adapter's plan): no manifests
        pod_job_spec(r, project.settings)
    summaries = [
        summarize(r.config, r.dataset, get_adapter(r.config.framework).schedule(r.run))
        for r in loaded
    ]
    columns = ["run", "total batch", "lr", "linear-rule lr", "iters/epoch", "warmup iters",
               "warmup epochs"]  # fmt: skip
    rows = [
        [
            s.run,
            str(s.total_batch),
            f"{s.lr:g}",
            "?" if s.rule_lr is None else f"{s.rule_lr:g} (lr is x{s.lr / s.rule_lr:.3g})",
            _num(s.iterations_per_epoch),
            _num(s.warmup_iterations),
            "?" if s.warmup_epochs is None
            else f"{s.warmup_epochs:.2f} ({s.warmup_share or 0:.1%} of {s.epochs})",
        ]
        for s in summaries
    ]  # fmt: skip
    sys.stdout.write(plain_table(columns, rows))
    typer.echo(f"{len(loaded)} run(s) valid: {', '.join(r.name for r in loaded)}")


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


@app.command()
def schema() -> None:
    """JSON Schema of a run config file, for editors' YAML language servers (in a project: its
    dataset names too)."""
    import json

    from detk8s.cli.common import project as current_project
    from detk8s.config.jsonschema import run_config_schema
    from detk8s.frameworks import settings_schemas

    try:
        datasets = current_project().dataset_names()
    except DetkError:  # outside a project: the schema without them
        datasets = None
    typer.echo(json.dumps(run_config_schema(settings_schemas(), datasets), indent=2))
