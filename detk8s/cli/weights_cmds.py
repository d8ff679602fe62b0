"""`detk8s weights push`: pretrained weights into the project's storage, for clusters whose pods
cannot reach the internet."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from detk8s.cli.common import app, err, project
from detk8s.errors import UsageError
from detk8s.storage import WEIGHTS_PREFIX

weights_app = typer.Typer(
    help="Pretrained weights in object storage (pretrain_weights: s3://...).",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.command("push")
def push(
    source: Annotated[str, typer.Argument(help="An http(s) URL or a local file.")],
    to: Annotated[
        str | None,
        typer.Option(
            metavar="URI", help=f"Storage prefix (default: <project storage>/{WEIGHTS_PREFIX})."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Object name (default: the file's).")
    ] = None,
) -> None:
    """Copy a weights file into storage and print the value for a run's `pretrain_weights`."""
    from detk8s.weights import download, parse_weights_source, redact

    try:
        parsed = parse_weights_source(source)
    except ValueError as e:
        raise UsageError(f"{redact(source)}: {e}") from None
    if parsed.kind not in ("url", "path", "dataset"):
        raise UsageError(f"{source}: give an http(s) URL or a local file")
    file_name = name or parsed.file_name or Path(source).name
    if not file_name or "/" in file_name:
        raise UsageError(f"--name {file_name!r}: give a plain file name")
    proj = project()
    prefix = (to or f"{proj.local_path(proj.settings.storage.uri)}/{WEIGHTS_PREFIX}").rstrip("/")
    store = proj.storage(prefix)
    with tempfile.TemporaryDirectory(prefix="detk8s-weights-") as tmp:
        if parsed.kind == "url":
            local = Path(tmp) / file_name
            err(f"downloading {source}")
            size = download(source, local)
        else:
            local = Path(source)
            if not local.is_file():
                raise UsageError(f"{source}: no such file")
            size = local.stat().st_size
        store.upload(file_name, local)
    err(f"stored {size / 1e6:.1f} MB as {prefix}/{file_name}")
    typer.echo(f"{prefix}/{file_name}")
