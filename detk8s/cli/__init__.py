"""The `detk8s` command line. Each command imports what it needs when it runs, so commands that
do not talk to a cluster or a bucket never load the kubernetes or boto3 packages."""

# ruff: noqa: E402 (the collector is tuned before the imports it would slow down)

from __future__ import annotations

import atexit
import gc
import os
import sys

# A command is mostly imports and config models: a few hundred thousand objects that live until
# it ends, which CPython's default threshold (700 allocations) has the collector scan again and
# again (40 ms of a sweep's re-submit). Python 3.13 took it to 2,000; at 10,000 a collection still
# comes often enough for the commands that run for hours (exec, logs -f).
gc.set_threshold(10_000)
# What is left at exit is freed as the modules go: the collector's last passes over all of it
# would add a tenth to a short command.
atexit.register(gc.freeze)
# Before building its first model, pydantic looks for validation plugins (observability hooks)
# in the entry points of every installed package: in an ML environment, the largest single cost
# of a render. detk8s's models have nothing for them; a user's own setting stands.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

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
