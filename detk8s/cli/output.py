"""`-o/--output` as kubectl has it, for the commands that list things (runs, status, collect):

    table   the columns a person reads (default)      wide   more columns
    json    every field, a list of objects             yaml   the same as YAML
    name    one name a line (`kind/name` for jobs), for xargs and kubectl

json and yaml carry every field of a row under stable snake_case names (README: Output)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer


class Format(str, Enum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


FormatOpt = Annotated[
    Format,
    typer.Option("--output", "-o", metavar="FORMAT",
                 help="table, wide, json, yaml or name (one a line)."),
]  # fmt: skip


Cells = Callable[[dict[str, Any]], list[Any]]


def emit(
    rows: list[dict[str, Any]],
    fmt: Format,
    columns: tuple[list[str], Cells],
    wide: tuple[list[str], Cells],
    name: str,
    title: str,
) -> None:
    """`rows` (dicts of plain values) as `fmt`. `columns` are the table's headings and a row's
    cells, `wide` what -o wide adds; `name` is the field -o name prints."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif fmt is Format.yaml:
        from detk8s import yaml_io

        sys.stdout.write(yaml_io.dump(rows))
    elif fmt is Format.name:
        sys.stdout.write("".join(f"{r[name]}\n" for r in rows))
    else:
        headings, cells = columns
        if fmt is Format.wide:
            headings = [*headings, *wide[0]]
        texts = [[_cell(c) for c in [*cells(r), *(wide[1](r) if fmt is Format.wide else [])]]
                 for r in rows]  # fmt: skip
        table(headings, texts, title)


def table(headings: list[str], cells: list[list[str]], title: str) -> None:
    from detk8s.cli.common import console

    console().print(rich_table(headings, cells, title))


def rich_table(headings: list[str], cells: list[list[str]], title: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left")
    for heading in headings:
        t.add_column(heading, overflow="fold")
    for row in cells:
        t.add_row(*(Text(c) for c in row))  # values are not rich markup
    return t


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
