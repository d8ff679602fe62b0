"""What every command shares: the app, the project, run selection, messages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from detk8s.project import LoadedRun, Project

app = typer.Typer(
    help="Object-detection training runs as Kubeflow jobs: render, build, submit, collect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_project_dir: Path | None = None


def complete_runs(incomplete: str) -> list[str]:
    """Run names for shell completion: the files in configs/runs, none of them loaded."""
    from detk8s.errors import DetkError
    from detk8s.project import Project

    try:
        names = Project.discover(_project_dir).run_files
    except DetkError:
        return []
    return [n for n in names if n.startswith(incomplete)]


RunsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Run names or glob patterns (Y*).", show_default=False, metavar="RUN...",
                   autocompletion=complete_runs),
]  # fmt: skip
AllOpt = Annotated[bool, typer.Option("--all", help="Every run in the project.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Treat warnings (linear scaling rule) as errors.")
]


def duration(text: str) -> float:
    """A --timeout-style value: 90s, 30m, 6h, 1h30m or seconds."""
    from detk8s.util import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _version(show: bool) -> None:
    if show:
        from detk8s import __version__

        typer.echo(f"detk8s {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    project: Annotated[
        Path | None,
        typer.Option(
            "--project", "-p", metavar="PATH",
            help="Project dir or detk8s.yaml (default: search upwards).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:  # fmt: skip
    global _project_dir
    _project_dir = project


def project() -> Project:
    from detk8s.project import Project

    return Project.discover(_project_dir)


def console(width_when_piped: int = 200) -> Console:
    """rich's console; piped output gets a wide one, not a table squeezed into 80 columns."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=width_when_piped)


def err(message: str) -> None:
    typer.echo(message, err=True)


def load_runs(
    names: list[str] | None, all_runs: bool, strict: bool
) -> tuple[Project, list[LoadedRun]]:
    """The selected runs, or every problem in them (one line each) and exit 2."""
    proj = project()
    return proj, load_selected(proj, proj.select(names or [], all_runs=all_runs), strict)


def load_selected(proj: Project, selected: list[str], strict: bool) -> list[LoadedRun]:
    """`selected` runs of `proj` (by name), or every problem in them and exit 2."""
    from detk8s.errors import ConfigErrors

    loaded, errors = proj.load_runs(selected)
    warnings = [w for run in loaded for w in run.warnings]
    if strict:
        errors += warnings
    else:
        for w in warnings:
            err(f"warning: {w}")
    if errors:
        raise ConfigErrors(errors)
    return loaded
