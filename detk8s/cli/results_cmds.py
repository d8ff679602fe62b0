"""Commands about runs' results: exec (the training pod's entrypoint) and collect."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from detk8s.cli.common import RunsArg, app, err, project
from detk8s.cli.output import Format, emit
from detk8s.errors import UsageError

if TYPE_CHECKING:
    from detk8s.project import Project
    from detk8s.results.collect import RunResult

SUMMARY_FORMATS = {".csv": "csv", ".md": "md", ".json": "json"}
RICH_ROWS = 200  # above this, or when piped, a plain table: rich takes seconds for 1,000 rows
NUMERIC = {"batch", "lr", "epochs", "mAP", "mAP50:95", "FPS", "train time", "GPU-hours"}
PROGRESS_OVER = 5  # runs: a progress bar when collecting more than this


@app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run name.")],
    run_file: Annotated[
        Path | None,
        typer.Option(help="The resolved run (run.json from the job's ConfigMap): pod mode."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(metavar="URI", help="Results storage (default: $DETK8S_STORAGE or project)."),
    ] = None,
    no_tee: Annotated[
        bool, typer.Option("--no-tee", help="Output to the log file only (local backend).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Train even when DONE is stored.")] = False,
) -> None:
    """Train a run here and store its results: the training image's entrypoint.

    Prepares the data, builds this replica's train command, trains (resuming from stored
    checkpoints), evaluates and stores the results. Without --run-file, the run of this
    project on this machine, as `submit --backend local` runs it. `-- ARGV` runs ARGV instead
    of the framework's train command."""
    from detk8s.runner.execute import execution

    if run_file is None:  # this machine: the job as the local backend runs it
        from detk8s.backends.local import local_job

        proj = project()
        (name,) = proj.select([run])
        spec, layout = local_job(proj, name)
        os.environ.update(spec.env)
        if layout.detk8s[0] != sys.executable:  # the trainer's own interpreter (local_python)
            flags = [
                *(["--storage", storage] if storage else []),
                *(["--no-tee"] if no_tee else []),
                *(["--force"] if force else []),
            ]
            argv = [*spec.command, *flags, *(["--", *ctx.args] if ctx.args else [])]
            os.execv(argv[0], argv)  # fmt: skip
        run_file = Path(layout.run_file)
    job = execution(run_file, storage, not no_tee, force, list(ctx.args))
    if job.name != run:
        raise UsageError(f"{run_file} is run {job.name}, not {run}")
    raise typer.Exit(job.execute())


@app.command()
def collect(
    names: RunsArg = None,
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FORMAT|PATH",
            help="table, wide, json, yaml or name on stdout; a .csv, .md or .json path also "
            "writes the summary there (repeatable).",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="PNG", help="Bar chart of mAP (and FPS) per run, e.g. map.png."),
    ] = None,
    curves: Annotated[
        Path | None,
        typer.Option(
            metavar="PNG",
            help="Loss and mAP per epoch of each run, from its stored training log.",
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(metavar="URI", help="Storage (default: the project's).")
    ] = None,
    use_cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse results fetched before (by ETag).")
    ] = True,
) -> None:
    """Every run's results from object storage in one table (and files)."""
    from rich.console import Console
    from rich.progress import Progress

    from detk8s.results.cache import ResultCache
    from detk8s.results.collect import collect as collect_results
    from detk8s.results.collect import row, write_summary
    from detk8s.util import write_all

    formats = [Format(o) for o in output or [] if o in Format.__members__]
    paths = [Path(o) for o in output or [] if o not in Format.__members__]
    if len(formats) > 1:
        raise UsageError(f"--output: one format at a time, not {formats[0].value} and "
                         f"{formats[1].value}")  # fmt: skip
    fmt = formats[0] if formats else Format.table
    for path in paths:
        if path.suffix not in SUMMARY_FORMATS:
            raise UsageError(f"--output {path}: use .csv, .md or .json (or a format: table, "
                             "wide, json, yaml, name)")  # fmt: skip
    proj = project()
    known = list(proj.run_files)
    store = proj.storage(storage)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("collecting", total=None, visible=False)

        def total(n: int) -> None:
            bar.update(task, total=n, visible=n > PROGRESS_OVER)

        results = collect_results(
            store, known, progress=lambda n: bar.advance(task, n), on_total=total,
            cache=ResultCache(store.uri) if use_cache else None,
        )  # fmt: skip
    if names:
        wanted = set(proj.select(names)) | {n for n in names if n not in proj.run_files}
        results = [r for r in results if r.run in wanted]
    _fill_from_configs(proj, results)
    rows = [row(r) for r in results]
    if fmt not in (Format.table, Format.wide):
        emit(rows, fmt, ([], list), ([], list), "run", "")
    else:
        _table(rows, results, store.uri, fmt is Format.wide)
    files: dict[Path, str | bytes] = {
        path: write_summary(rows, SUMMARY_FORMATS[path.suffix]) for path in paths
    }
    if plot is not None:
        from detk8s.results.plot import plot_map

        files[plot] = plot_map(rows)
    if curves is not None:
        from detk8s.results.curves import run_curves
        from detk8s.results.plot import plot_curves

        files[curves] = plot_curves(run_curves(proj, store, [r.run for r in results], err))
    write_all(files)  # every output or none
    for path in files:
        err(f"wrote {path}")


def _table(rows: list[dict[str, Any]], results: list[RunResult], uri: str, wide: bool) -> None:
    """rich's table on a terminal; plain columns in a pipe or when long (rich needs seconds to
    lay out a thousand rows)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from detk8s.results.collect import COLUMNS, cell, printable
    from detk8s.util import plain_table

    columns = [*COLUMNS, *(["reason"] if wide else [])]
    cells = []
    for r, res in zip(rows, results, strict=True):
        line = [cell(c, r.get(c)) for c in columns]
        if res.status in ("failed", "invalid") and res.reason and not wide:
            line[1] = f"{res.status}: {printable(res.reason)}"
        cells.append(line)
    console = Console()
    if console.is_terminal and len(cells) <= RICH_ROWS:
        table = Table(title=f"detk8s results in {uri}", title_justify="left")
        for col in columns:
            table.add_column(col, justify="right" if col in NUMERIC else "left")
        for line in cells:
            table.add_row(*(Text(v) for v in line))  # stored text is not rich markup
        console.print(table)
    else:
        sys.stdout.write(plain_table(columns, cells))


def _fill_from_configs(proj: Project, results: list[RunResult]) -> None:
    """Runs without a record show what their config says (model, data, GPUs...)."""
    for r in results:
        if r.record is not None or r.run not in proj.run_files:
            continue
        try:
            loaded = proj.load_run(r.run)
        except Exception:  # a broken config must not hide the others' results
            continue
        c = loaded.config
        r.model, r.gpus, r.nodes = c.model, c.gpus, c.nodes
        r.batch_size, r.lr, r.epochs = c.batch_size, c.lr, c.epochs
        frac = loaded.dataset.train_fraction
        r.data = f"{loaded.dataset.name}" + (f" ({frac})" if frac else "")
