"""Small helpers shared by commands."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from detk8s.errors import EXIT_USAGE, DetkError

T = TypeVar("T")
R = TypeVar("R")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: mkstemp's 0600 is not it


def replace_atomically(path: Path, fill: Callable[[Path], object]) -> None:
    """`fill(tmp)` writes a temp file beside `path`, which then replaces `path` in one rename:
    a reader never sees half a file, and a failure leaves the old one (or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fill(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class OutputError(DetkError):
    exit_code = EXIT_USAGE


def write_all(files: dict[Path, str | bytes]) -> None:
    """Write every file or none: each goes to a temp file beside it first, and only when all
    are written are they renamed into place. A path whose directory is a file is one line."""
    temps: dict[Path, Path] = {}
    try:
        for path, content in files.items():
            for parent in (path.parent, *path.parent.parents):
                if parent.exists() and not parent.is_dir():
                    raise OutputError(f"{parent} is a file, not a directory: cannot write {path}")
            if path.is_dir():
                raise OutputError(f"{path} is a directory: cannot write a file there")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                            suffix=".tmp")  # fmt: skip
                temps[path] = Path(name)
                with os.fdopen(fd, "wb") as f:
                    f.write(content.encode() if isinstance(content, str) else content)
                os.chmod(name, FILE_MODE)
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def natural_key(name: str) -> tuple[str, int, str]:
    """Sort key that puts L2 before L10."""
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1, name)


def plain_table(columns: list[str], rows: list[list[str]]) -> str:
    """Aligned columns without box drawing: for pipes and for tables too long for rich, which
    needs seconds to lay out a thousand rows."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds of `90s`, `30m`, `6h`, `1h30m` (Go's units, as kubectl takes them), or plain
    seconds."""
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: 90s, 30m, 6h, 1h30m or seconds")
    h, mins, secs = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + secs


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    """`[fn(x) for x in items]` on up to `threads` threads, for calls that mostly wait on the
    network. Every thread is started before any of them works: a thread started while others
    hold the GIL waits out a switch interval (5 ms) to say it is alive, which for 64 threads
    of GETs (ThreadPoolExecutor starts one per submit) is a third of a second. The first
    exception is raised once all are done."""
    todo = list(enumerate(items))
    results: list[Any] = [None] * len(todo)
    errors: list[tuple[int, BaseException]] = []
    lock, go = threading.Lock(), threading.Event()

    def work() -> None:
        go.wait()
        while True:
            with lock:
                if not todo:
                    return
                i, item = todo.pop()
            try:
                results[i] = fn(item)
            except BaseException as e:  # re-raised in the caller's thread
                with lock:
                    errors.append((i, e))

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, len(todo)))]
    for w in workers:
        w.start()
    go.set()
    for w in workers:
        w.join()
    if errors:
        raise min(errors, key=lambda e: e[0])[1]
    return results


def can_fork() -> bool:
    """Whether a forked child is safe here: it gets only the forking thread, so a lock another
    thread held (an import's, a logger's) would never be released in it."""
    import multiprocessing

    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


class Background(Generic[R]):
    """`fn()` computed in a forked child, on another core while this process goes on: for
    CPU-bound work (importing and setting up a client, rendering) that a thread would only
    interleave with this one under the GIL. Calling it waits for the value. `fn` must not change
    anything: if it raised in the child, or the child died, or this platform cannot fork, it runs
    again in the wait, so an error is raised here as it would be without the child. With other
    threads running, or not `fork`, `fn` runs in the wait too. `nice`: the child's lower
    priority, for work that should not take the CPU from this process's own."""

    def __init__(self, fn: Callable[[], R], fork: bool = True, nice: int = 0) -> None:
        import multiprocessing

        self.fn = fn
        self._child: Any = None
        if not fork or not can_fork():
            return
        forking = multiprocessing.get_context("fork")
        self._receiver, sender = forking.Pipe(duplex=False)
        self._child = forking.Process(target=_answer, args=(fn, sender, nice), daemon=True)
        self._child.start()  # daemon: it ends with this process
        sender.close()

    def __call__(self) -> R:
        if self._child is None:
            return self.fn()
        try:
            answered, value = self._receiver.recv()
        except Exception:  # the child died (EOFError), or its answer does not unpickle here
            answered, value = False, None
        finally:
            self._end()
        return value if answered else self.fn()

    def cancel(self) -> None:
        """The value is not needed after all: the child stops, and its core is free."""
        if self._child is not None:
            self._child.kill()
            self._end()

    def _end(self) -> None:
        self._receiver.close()
        self._child.join()
        self._child = None


def _answer(fn: Callable[[], Any], sender: Any, nice: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if nice:
        os.nice(nice)
    try:
        sender.send((True, fn()))
    except Exception:  # fn failed, or its value does not pickle
        sender.send((False, None))  # the parent runs fn itself, and raises what it raises


class SplitMap(Generic[T, R]):
    """`[fn(x) for x in items]`, for CPU-bound `fn` without side effects, on two cores: the
    first item here (to fill the caches the child then shares), then the last `share` of them in
    a forked child (`Background`) from now on; calling it does the rest here and joins them.
    Started early, the child works while this process does something else (asks a server)."""

    def __init__(
        self, fn: Callable[[T], R], items: Iterable[T], at_least: int = 16, share: float = 0.5
    ) -> None:
        self.fn, todo = fn, list(items)
        self._there: Callable[[], list[R]] = list
        if len(todo) < at_least:
            self._done, self._here = [], todo
            return
        self._done = [fn(todo[0])]
        cut = max(1, len(todo) - int(len(todo) * share))
        self._here, there = todo[1:cut], todo[cut:]
        self._there = Background(lambda: [fn(x) for x in there])

    def __call__(self) -> list[R]:
        return [*self._done, *(self.fn(x) for x in self._here), *self._there()]


def split_map(fn: Callable[[T], R], items: Iterable[T], at_least: int = 16) -> list[R]:
    """`[fn(x) for x in items]` on two cores (`SplitMap`), half here and half in a child."""
    return SplitMap(fn, items, at_least)()
