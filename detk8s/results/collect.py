"""Every run's result from object storage: the runs and the index of finished ones listed (two
listings, one key per run, however many checkpoints they stored), then each finished run's index
object fetched concurrently; a run without one (still running, failed, or stored before indexes)
has its own top-level objects listed and its eval.json or FAILED fetched.

Status of a run: done (DONE and a valid eval.json), failed (FAILED), running (objects but no
marker yet), missing (nothing stored; a run of the project), invalid (DONE with an eval.json that
is missing, corrupt or incomplete; the reason is shown).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from detk8s.results.cache import ResultCache
from detk8s.results.record import EvalRecord, FailureRecord
from detk8s.storage import DONE, EVAL_JSON, FAILED, INDEX_PREFIX, Storage, index_key
from detk8s.storage.base import StoredObject
from detk8s.util import natural_key, thread_map

FETCH_THREADS = 64  # GETs in flight: each waits a round trip, little CPU
MAX_RECORD_BYTES = 1 << 20  # an eval.json is a few KiB
# What stored results may not do to a summary: control characters (terminal escapes), a leading
# character that makes a spreadsheet cell a formula, Markdown/HTML structure.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@")


@dataclass
class RunResult:
    run: str
    status: str  # done, failed, running, missing, invalid
    record: EvalRecord | None = None
    reason: str = ""
    # From the project's config when the run has no record (yet).
    model: str | None = None
    data: str | None = None
    gpus: int | None = None
    nodes: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    epochs: int | None = None

    def value(self, name: str) -> Any:
        if self.record is not None:
            return getattr(self.record, name, None)
        return getattr(self, name, None)


@dataclass(frozen=True)
class StoredRuns:
    runs: list[str]  # every run with anything stored
    indexed: dict[str, StoredObject]  # run -> its index object: finished, results complete


def stored_runs(storage: Storage) -> StoredRuns:
    """The runs under the root and the index of finished ones, listed side by side."""
    (names, _), (_, objects) = thread_map(storage.children, ["", f"{INDEX_PREFIX}/"], 2)
    runs = [n for n in names if n and not n.startswith((".", "_"))]  # see detk8s.storage
    present = set(runs)
    indexed = {}
    for obj in objects:
        run = obj.key.removeprefix(f"{INDEX_PREFIX}/").removesuffix(".json")
        if obj.key == index_key(run) and run in present:
            indexed[run] = obj
    return StoredRuns(runs, indexed)


def done_runs(storage: Storage, runs: Iterable[str]) -> set[str]:
    """Which of `runs` have their results stored: indexed, or (stored before indexes) DONE."""
    stored = stored_runs(storage)
    present = set(stored.runs)
    unindexed = [r for r in runs if r in present and r not in stored.indexed]
    done = thread_map(lambda r: storage.exists(f"{r}/{DONE}"), unindexed, FETCH_THREADS)
    legacy = {r for r, d in zip(unindexed, done, strict=True) if d}
    return {r for r in runs if r in stored.indexed} | legacy


def _top_level(storage: Storage, run: str) -> dict[str, StoredObject]:
    """The run's own objects by name (eval.json, DONE, FAILED; not what lies in its folders)."""
    _, objects = storage.children(f"{run}/")
    return {obj.key.rsplit("/", 1)[1]: obj for obj in objects}


class _Fetcher:
    """GETs through the ETag cache."""

    def __init__(self, storage: Storage, cache: ResultCache | None) -> None:
        self.storage, self.cache = storage, cache

    def get(self, key: str, etag: str) -> bytes | None:
        cached = self.cache.get(key, etag) if self.cache else None
        return cached if cached is not None else self._remember(key, etag, self.storage.get(key))

    def get_many(
        self, objects: list[StoredObject], progress: Callable[[int], None] | None = None
    ) -> list[bytes | None]:
        cache = self.cache
        bodies = [cache.get(o.key, o.etag) if cache else None for o in objects]
        missed = [i for i, body in enumerate(bodies) if body is None]
        if progress and len(missed) < len(objects):
            progress(len(objects) - len(missed))
        fetched = self.storage.get_many([objects[i].key for i in missed], progress)
        for i, body in zip(missed, fetched, strict=True):
            bodies[i] = self._remember(objects[i].key, objects[i].etag, body)
        return bodies

    def _remember(self, key: str, etag: str, body: bytes | None) -> bytes | None:
        if body is not None and self.cache is not None:
            self.cache.put(key, etag, body)
        return body


def _result(fetch: _Fetcher, run: str, names: dict[str, StoredObject]) -> RunResult:
    for name in (EVAL_JSON, FAILED):  # anyone's objects: read them only when small
        if name in names and names[name].size > MAX_RECORD_BYTES:
            return _too_big(run, name, names[name])
    if DONE in names:
        raw = fetch.get(f"{run}/{EVAL_JSON}", names[EVAL_JSON].etag) if EVAL_JSON in names else None
        if raw is None:
            return RunResult(run, "invalid", reason="DONE without eval.json")
        return _done(run, raw, EVAL_JSON)
    if FAILED in names:
        raw = fetch.get(f"{run}/{FAILED}", names[FAILED].etag) or b"{}"
        try:
            reason = FailureRecord.model_validate_json(raw).reason
        except ValidationError:
            reason = raw.decode("utf-8", "replace").strip()[:200] or "failed"
        return RunResult(run, "failed", reason=reason)
    return RunResult(run, "running", reason="no DONE or FAILED marker yet")


def _indexed_results(
    fetch: _Fetcher, indexed: dict[str, StoredObject], progress: Callable[[int], None] | None
) -> list[RunResult]:
    """Finished runs from their index objects, fetched in one batch."""
    results = [_too_big(run, obj.key, obj) for run, obj in indexed.items()
               if obj.size > MAX_RECORD_BYTES]  # fmt: skip
    if progress and results:
        progress(len(results))
    small = {run: obj for run, obj in indexed.items() if obj.size <= MAX_RECORD_BYTES}
    bodies = fetch.get_many(list(small.values()), progress)
    for (run, obj), raw in zip(small.items(), bodies, strict=True):
        if raw is None:  # deleted since it was listed
            results.append(RunResult(run, "invalid", reason=f"{obj.key} vanished while collecting"))
        else:
            results.append(_done(run, raw, obj.key))
    return results


def _too_big(run: str, name: str, obj: StoredObject) -> RunResult:
    return RunResult(run, "invalid", reason=f"{name} is {obj.size / 1e6:.1f} MB: not a result")


def _done(run: str, raw: bytes, name: str) -> RunResult:
    """A finished run from its eval.json (or the index's copy of it), checked."""
    try:
        record = EvalRecord.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or name
        reason = f"{name} is not JSON" if first["type"] == "json_invalid" else (
            f"{name}: {where}: {first['msg'].lower()}"
        )  # fmt: skip
        return RunResult(run, "invalid", reason=reason)
    if record.run != run:
        return RunResult(run, "invalid", reason=f"{name} is of run {record.run!r}")
    return RunResult(run, "done", record=record)


def collect(
    storage: Storage,
    known: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    cache: ResultCache | None = None,
) -> list[RunResult]:
    """Results of every run under the storage root, plus `known` runs with nothing stored."""
    stored = stored_runs(storage)
    if on_total:
        on_total(len(stored.runs))
    fetcher = _Fetcher(storage, cache)

    def unindexed(run: str) -> RunResult:
        result = _result(fetcher, run, _top_level(storage, run))
        if progress:
            progress(1)
        return result

    others = [run for run in stored.runs if run not in stored.indexed]
    found = [*_indexed_results(fetcher, stored.indexed, progress),
             *thread_map(unindexed, others, FETCH_THREADS)]  # fmt: skip
    results = {r.run: r for r in found}
    if cache is not None:
        cache.save()
    for run in known:
        results.setdefault(run, RunResult(run, "missing", reason="nothing stored"))
    return [results[r] for r in sorted(results, key=natural_key)]


COLUMNS = ("run", "status", "model", "data", "GPUs x nodes", "batch", "lr", "epochs", "weights",
           "mAP", "mAP50:95", "FPS", "train time", "GPU-hours")  # fmt: skip


def row(r: RunResult) -> dict[str, Any]:
    """One summary row, machine-readable values (None where unknown)."""
    rec = r.record
    gpus, nodes = r.value("gpus"), r.value("nodes")
    data = rec.dataset if rec else r.data
    if rec and rec.train_fraction:
        data = f"{data} ({rec.train_fraction})"
    return {
        "run": r.run,
        "status": r.status,
        "model": r.value("model"),
        "data": data,
        "GPUs x nodes": f"{gpus} x {nodes}" if gpus and nodes else None,
        "batch": r.value("batch_size"),
        "lr": r.value("lr"),
        "epochs": r.value("epochs"),
        "weights": _weights(rec) if rec else None,
        "mAP": rec.map50 if rec else None,
        "mAP50:95": rec.map50_95 if rec else None,
        "FPS": rec.fps if rec else None,
        "train time": rec.train_seconds if rec else None,
        "GPU-hours": round(rec.gpu_hours, 3) if rec else None,
        "reason": r.reason,
    }


def _weights(rec: EvalRecord) -> str | None:
    """Which weights the mAP is of: `best_model, epoch 40`."""
    if rec.weights is None:
        return None
    return rec.weights + (f", epoch {rec.weights_epoch}" if rec.weights_epoch else "")


def hms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def cell(name: str, value: Any) -> str:
    """A value as the table and Markdown show it."""
    if value is None:
        return ""
    if name in ("mAP", "mAP50:95"):
        return f"{value:.2f}%"
    if name == "FPS":
        return f"{value:.2f}"
    if name == "train time":
        return hms(value)
    if name == "lr":
        return f"{value:g}"
    return printable(str(value))


def printable(text: str) -> str:
    """Text from storage with control characters (terminal escapes, newlines) made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _csv_value(value: Any) -> Any:
    """Strings that a spreadsheet would run as a formula are kept as text (OWASP's advice)."""
    if isinstance(value, str):
        value = printable(value)
        return f"'{value}" if value.startswith(_FORMULA_START) else value
    return "" if value is None else value


def _md_value(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "\\`")


def write_summary(rows: list[dict[str, Any]], fmt: str) -> str:
    """The summary as csv, md or json text."""
    columns = [*COLUMNS, "reason"]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
        return buf.getvalue()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_md_value(cell(c, r[c])) for c in columns) + " |")
    return "\n".join(lines) + "\n"
