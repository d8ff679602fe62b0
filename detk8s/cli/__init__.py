"""The `detk8s` command line. Each command imports what it needs when it runs, so commands that
do not talk to a cluster or a bucket never load the kubernetes or boto3 packages."""

from __future__ import annotations

import os
import sys

# Importing a command module registers its commands; `--help` lists them in this order.
from detk8s.cli import config_cmds  # noqa: F401

# isort: split
from detk8s.cli import cluster_cmds  # noqa: F401

# isort: split
from detk8s.cli import build_cmds  # noqa: F401

# isort: split
from detk8s.cli import results_cmds  # noqa: F401

# isort: split
from detk8s.cli import weights_cmds  # noqa: F401
from detk8s.cli.common import app, err
from detk8s.errors import DetkError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # `--dry-run` alone means the client-side dry run, as in kubectl.
    args = ["--dry-run=client" if a == "--dry-run" else a for a in args]
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        err("error: standard output is closed")
        sys.exit(1)
    try:
        try:
            app(args=args, prog_name="detk8s")
        finally:
            sys.stdout.flush()  # here, where a full disk or a closed pipe can still be reported
    except DetkError as e:
        for line in str(e).splitlines():
            err(f"error: {line}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except BrokenPipeError:  # `detk8s ... | head`: the reader has what it wanted
        _detach_stdout()
        sys.exit(0)
    except OSError as e:
        _detach_stdout()
        where = f" {e.filename}" if e.filename else " output"
        err(f"error: cannot write{where}: {e.strerror or e}")
        sys.exit(1)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
