"""The `detk8s` command line. Each command imports what it needs when it runs, so commands that
do not talk to a cluster or a bucket never load the kubernetes or boto3 packages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from detk8s.errors import DetkError

if TYPE_CHECKING:
    from detk8s.config.load import LoadedRun, Project

app = typer.Typer(
    help="Object-detection training runs as Kubeflow jobs: render, build, submit, collect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_project_dir: Path | None = None

RunsArg = Annotated[
    list[str] | None, typer.Argument(help="Run names or glob patterns (Y*).", show_default=False)
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every run in the project.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Treat warnings (linear scaling rule) as errors.")
]


@app.callback()
def _root(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project", "-p", help="Project dir or detk8s.yaml (default: search upwards)."
        ),
    ] = None,
) -> None:
    global _project_dir
    _project_dir = project


def _project() -> Project:
    from detk8s.config.load import Project

    return Project.discover(_project_dir)


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _load(names: list[str] | None, all_runs: bool, strict: bool) -> tuple[Project, list[LoadedRun]]:
    """The selected runs, or every problem in them (one line each) and exit 2."""
    from detk8s.errors import ConfigErrors

    project = _project()
    selected = project.select(names or [], all_runs=all_runs)
    loaded, errors = project.load_runs(selected)
    warnings = [w for run in loaded for w in run.warnings]
    if strict:
        errors += warnings
    else:
        for w in warnings:
            _err(f"warning: {w}")
    if errors:
        raise ConfigErrors(errors)
    return project, loaded


@app.command()
def runs(
    names: RunsArg = None,
    strict: StrictOpt = False,
) -> None:
    """Table of the runs in configs/: framework, model, GPUs x nodes, batch, lr, epochs, data."""
    from rich.console import Console
    from rich.table import Table

    _, loaded = _load(names, all_runs=not names, strict=strict)
    table = Table(title="detk8s runs", title_justify="left")
    for col in (
        "run",
        "framework",
        "model",
        "GPUs x nodes",
        "batch/GPU",
        "total batch",
        "lr",
        "epochs",
        "dataset",
        "train images",
    ):
        table.add_column(
            col,
            justify="right"
            if col in {"batch/GPU", "total batch", "lr", "epochs", "train images"}
            else "left",
        )
    for r in loaded:
        c, d = r.config, r.dataset
        train = f"{d.train_size:,}" if d.train_size else "?"
        frac = f" ({d.train_fraction})" if d.train_fraction else ""
        table.add_row(
            c.name,
            c.framework,
            c.model,
            f"{c.gpus} x {c.nodes}",
            str(c.batch_size),
            str(c.total_batch),
            f"{c.lr:g}",
            str(c.epochs),
            d.name,
            train + frac,
        )
    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


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
    from detk8s.backends.kubernetes.manifests import render_manifests, to_yaml
    from detk8s.jobspec import build_job_spec
    from detk8s.util import write_atomic

    project, loaded = _load(names, all_runs, strict)
    # Everything renders before anything is written: a bad run leaves no half-written output.
    rendered = {
        r.name: to_yaml(render_manifests(build_job_spec(r, project.settings))) for r in loaded
    }
    if output is None:
        sys.stdout.write("".join(rendered.values()))
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        write_atomic(output / f"{name}.yaml", text)
        _err(f"wrote {output / f'{name}.yaml'}")


@app.command()
def validate(
    names: RunsArg = None,
    strict: StrictOpt = False,
) -> None:
    """Check every run config (or the named ones): exit 0, or one line per problem and exit 2."""
    from detk8s.backends.kubernetes.manifests import render_manifests
    from detk8s.jobspec import build_job_spec

    project, loaded = _load(names, all_runs=not names, strict=strict)
    for r in loaded:
        render_manifests(build_job_spec(r, project.settings))
    typer.echo(f"{len(loaded)} run(s) valid: {', '.join(r.name for r in loaded)}")


@app.command()
def schema() -> None:
    """JSON Schema of a run config file, for editors' YAML language servers."""
    import json

    from detk8s.config.jsonschema import run_config_schema

    typer.echo(json.dumps(run_config_schema(), indent=2))


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="detk8s")
    except DetkError as e:
        for line in str(e).splitlines():
            _err(f"error: {line}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
