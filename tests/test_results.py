"""Metrics parsed from real framework output, and `collect`'s statuses and summary files."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from detk8s.results.collect import collect, row, write_summary
from detk8s.results.metrics import COCO_KEYS, Metrics, parse_metrics
from detk8s.storage import open_storage

LOGS = Path(__file__).parent / "data" / "logs"
SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


def test_ppdet_voc_output_of_a_real_run() -> None:
    """tests/data/logs/ppdet_voc_eval.log is the eval output of a real CPU run of detk8s."""
    m = parse_metrics((LOGS / "ppdet_voc_eval.log").read_text())
    assert m.map50 == 0.42 and m.details["voc_map_type"] == "integral"
    assert m.details["eval_samples"] == 4 and m.fps == pytest.approx(0.9975, abs=1e-3)
    assert m.lines[0].endswith("ppdet.metrics.metrics INFO: mAP(0.50, integral) = 0.42%")


def test_voc_11point_and_seed_figures() -> None:
    text = (
        "[08/01 10:00:00] ppdet.metrics.metrics INFO: mAP(0.50, 11point) = 91.20%\n"
        "[08/01 10:00:00] ppdet.engine INFO: Total sample number: 1458, average FPS: 40.1\n"
        "[08/01 11:00:00] ppdet.metrics.metrics INFO: mAP(0.50, integral) = 93.63%\n"
        "[08/01 11:00:00] ppdet.engine INFO: Total sample number: 1458, average FPS: 41.02\n"
    )
    m = parse_metrics(text)  # the last evaluation is the result (seed 000's 93.63 %, 41.02 FPS)
    assert (m.map50, m.details["voc_map_type"], m.fps, m.details["eval_samples"]) == (
        93.63, "integral", 41.02, 1458
    )  # fmt: skip


def test_coco_block_and_forward_time_from_the_yolox_seed() -> None:
    """Seed 001's YOLOX eval output: forward time, then the 12 COCO lines."""
    m = parse_metrics((LOGS / "yolox_eval.log").read_text())
    coco = m.details["coco"]
    assert list(coco) == list(COCO_KEYS)
    assert coco["AP"] == 0.320 and coco["AP50"] == 0.469
    assert coco["ARl"] == 0.706  # the block's last line
    assert (m.map50_95, m.map50) == (32.0, 46.9)
    assert m.details["forward_ms"] == 8.53 and m.fps == pytest.approx(117.23, abs=0.01)
    assert len(m.lines) == 13 and m.lines[0].startswith("Average Precision  (AP) @[ IoU=0.50:0.95")


def test_last_of_several_coco_blocks_in_a_seed() -> None:
    text = (SEEDS / "001_fe0e7c83d168896b.txt").read_text()
    blocks = text.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")
    assert blocks > 3
    m = parse_metrics(text)
    last_ap = [
        line
        for line in text.splitlines()
        if line.startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")
    ][-1]
    assert m.details["coco"]["AP"] == float(last_ap.rsplit("=", 1)[1])


def test_nothing_to_parse() -> None:
    assert parse_metrics("Epoch: [0] loss: 1.0\nTraceback (most recent call last):\n") == Metrics()


def test_ppdet_per_class_table() -> None:
    """What ppdet's VOC metric prints with classwise (3 pairs a row at most)."""
    text = (
        "[12/01 10:00:00] ppdet.metrics.metrics INFO: Per-category of VOC AP: \n"
        "+----------+-------+----------+-------+\n"
        "| category | AP    | category | AP    |\n"
        "+----------+-------+----------+-------+\n"
        "| mouse    | 0.912 | other    | 0.960 |\n"
        "+----------+-------+----------+-------+\n"
        "[12/01 10:00:00] ppdet.metrics.metrics INFO: mAP(0.50, integral) = 93.63%\n"
    )
    m = parse_metrics(text)
    assert (m.per_class, m.map50) == ({"mouse": 91.2, "other": 96.0}, 93.63)


def record(run: str, **changes: Any) -> dict[str, Any]:
    base = {
        "run": run, "framework": "paddledet", "model": "picodet_s_320",
        "dataset": "mouse_other_voc", "gpus": 2, "nodes": 1, "batch_size": 32, "lr": 0.16,
        "epochs": 300, "map50": 93.63, "fps": 41.02, "train_seconds": 7200.0,
        "started": "2026-11-01T00:00:00+00:00", "finished": "2026-11-01T02:00:00+00:00",
    }  # fmt: skip
    return {**base, **changes}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = open_storage(f"file://{tmp_path / 'store'}")
    s.put(
        "L2/eval.json", json.dumps(record("L2", weights="best_model", weights_epoch=240)).encode()
    )
    s.put("_weights/PPLCNet_x0_75_pretrained.pdparams", b"w")  # not a run
    s.put("L2/DONE", b"")
    s.put("Y1/eval.json", json.dumps(record("Y1", train_fraction="1/3",
                                             dataset="mouse_other_voc_1of3")).encode())  # fmt: skip
    s.put("Y1/DONE", b"")
    s.put("L3/train.log", b"Epoch: [12]\n")
    s.put("L3/checkpoints/11.pdparams", b"x")
    s.put("L4/FAILED", json.dumps({"run": "L4", "reason": "training exited with 1"}).encode())
    s.put("Y2/DONE", b"")
    s.put("Y2/eval.json", b'{"run": "Y2", "framework": "paddle')
    s.put("Y3/DONE", b"")
    s.put("Y4/DONE", b"")
    s.put("Y4/eval.json", json.dumps({k: v for k, v in record("Y4").items()
                                      if k != "train_seconds"}).encode())  # fmt: skip
    return s


def test_collect_statuses(store: Any) -> None:
    results = {r.run: r for r in collect(store, known=["L1", "L2", "L3", "L4", "Y1", "Y2"])}
    assert {r: v.status for r, v in results.items()} == {
        "L1": "missing", "L2": "done", "L3": "running", "L4": "failed",
        "Y1": "done", "Y2": "invalid", "Y3": "invalid", "Y4": "invalid",
    }  # fmt: skip
    assert results["L4"].reason == "training exited with 1"
    assert results["Y2"].reason == "eval.json is not JSON"
    assert results["Y3"].reason == "DONE without eval.json"
    assert results["Y4"].reason == "eval.json: train_seconds: field required"
    l2 = row(results["L2"])
    assert (l2["mAP"], l2["FPS"], l2["GPUs x nodes"], l2["GPU-hours"]) == (
        93.63, 41.02, "2 x 1", 4.0
    )  # fmt: skip
    assert row(results["Y1"])["data"] == "mouse_other_voc_1of3 (1/3)"
    assert (l2["weights"], row(results["Y1"])["weights"]) == ("best_model, epoch 240", None)


def test_summary_formats(store: Any) -> None:
    rows = [row(r) for r in collect(store, known=["L1"])]
    parsed = list(csv.DictReader(io.StringIO(write_summary(rows, "csv"))))
    assert [(r["run"], r["status"], r["mAP"]) for r in parsed][:3] == [
        ("L1", "missing", ""), ("L2", "done", "93.63"), ("L3", "running", "")
    ]  # fmt: skip
    assert json.loads(write_summary(rows, "json"))[1]["GPU-hours"] == 4.0
    md = write_summary(rows, "md").splitlines()
    assert md[0].startswith("| run | status | model |") and "| 93.63% |" in md[3]


def test_collect_cli(project: Path, cli: Any, store: Any) -> None:
    text = (project / "detk8s.yaml").read_text()
    (project / "detk8s.yaml").write_text(text.replace("s3://detk8s/runs", store.uri))
    result = cli("collect", "-o", "summary.csv", "-o", "summary.md", "--plot", "map.png")
    assert result.code == 0, result.err
    out = result.out.splitlines()
    assert out[0].split() == ["run", "status", "model", "data", "GPUs", "x", "nodes", "batch",
                              "lr", "epochs", "weights", "mAP", "mAP50:95", "FPS", "train", "time",
                              "GPU-hours"]  # fmt: skip
    lines = {line.split()[0]: line for line in out[1:]}
    assert "93.63%" in lines["L2"] and "41.02" in lines["L2"] and "2:00:00" in lines["L2"]
    assert "missing" in lines["L1"] and "picodet_s_320" in lines["L1"]  # from its config
    assert "failed: training exited with 1" in lines["L4"]
    assert "invalid: DONE without eval.json" in lines["Y3"]
    assert (project / "summary.csv").read_text().startswith("run,status,model,")
    assert (project / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli("collect", "-o", "summary.xlsx")
    assert (
        bad.code == 2
        and bad.err.strip()
        == "error: --output summary.xlsx: use .csv, .md or .json (or a "
        "format: table, wide, json, yaml, name)"
    )


def test_etag_cache_fetches_only_what_changed(store: Any, tmp_path: Path) -> None:
    from detk8s.results.cache import ResultCache

    class Counting(type(store)):  # type: ignore[misc]
        gets = 0

        def get(self, key: str) -> bytes | None:
            Counting.gets += 1
            return super().get(key)

    def fetches() -> tuple[int, dict[str, str]]:
        before = Counting.gets
        results = collect(Counting(store.uri), cache=ResultCache(store.uri, tmp_path / "cache"))
        return Counting.gets - before, {r.run: r.status for r in results}

    first, status = fetches()
    assert first == 5  # eval.json of L2, Y1, Y2, Y4 and FAILED of L4 (Y3 lists no eval.json)
    again, status_again = fetches()
    assert again == 0 and status_again == status
    time.sleep(0.01)
    store.put("L2/eval.json", json.dumps(record("L2", map50=95.0)).encode())
    changed, _ = fetches()
    assert changed == 1
    assert next(r for r in collect(store) if r.run == "L2").record.map50 == 95.0


def test_collect_shows_every_framework_in_one_table(
    project: Path, cli: Any, tmp_path: Path
) -> None:
    """Each adapter's metrics from its trainer's real output (PaddleDetection and ultralytics
    from CPU runs here, YOLOX from seed 001, the SSD trainer from a CPU run here), stored as
    `detk8s exec` stores a result, read back by `collect`."""
    from detk8s.frameworks import get_adapter
    from detk8s.layout import POD
    from detk8s.project import Project

    store = open_storage(f"file://{tmp_path / 'four'}")
    outputs = {"L1": "ppdet_voc_eval.log", "U1": "yolov5_val.log", "X1": "yolox_eval.log",
               "S1": "ssd_eval.log"}  # fmt: skip
    expected = {}
    for run, log in outputs.items():
        loaded = Project.discover(project).load_run(run).run
        c = loaded.config
        m = get_adapter(c.framework).metrics(loaded, POD, (LOGS / log).read_text())
        assert m.map50 is not None, run
        fields = {"framework": c.framework, "model": c.model, "gpus": c.gpus, "lr": c.lr,
                  "batch_size": c.batch_size, "epochs": c.epochs, "map50": m.map50,
                  "map50_95": m.map50_95, "fps": m.fps, "per_class": m.per_class}  # fmt: skip
        store.put(f"{run}/eval.json", json.dumps(record(run, **fields)).encode())
        store.put(f"{run}/DONE", b"")
        expected[run] = (c.model, f"{m.map50:.2f}%")
    text = (project / "detk8s.yaml").read_text()
    (project / "detk8s.yaml").write_text(text.replace("s3://detk8s/runs", store.uri))
    result = cli("collect", "--output", "summary.json")
    assert result.code == 0, result.err
    rows = {r["run"]: r for r in json.loads((project / "summary.json").read_text())}
    for run, (model, map50) in expected.items():
        line = next(line for line in result.out.splitlines() if line.startswith(f"{run} "))
        assert " done " in line and model in line and map50 in line, line
        assert rows[run]["status"] == "done"
    assert expected["X1"][1] == "46.90%" and rows["X1"]["mAP50:95"] == 32.0
    assert expected["S1"][1] == "1.01%"


def test_collect_lists_one_key_per_run_however_many_checkpoints(
    s3_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy that logs every request to a real S3 server: a finished run costs one GET
    of its index object, its checkpoints cost nothing; a run without an index (running,
    failed, stored before indexes) one listing of its own top level."""
    from s3.proxy import recording_proxy

    from detk8s.storage import Connection

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_bucket.endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_bucket.endpoint.secret_key)
    uri = f"s3://{s3_bucket.name}/runs"
    writer = open_storage(uri, Connection(s3_bucket.endpoint.url, s3_bucket.endpoint.region))

    def finished(run: str, checkpoints: int) -> None:
        for i in range(checkpoints):
            writer.put(f"{run}/checkpoints/{i}/model.pdparams", b"w")
        body = json.dumps(record(run)).encode()
        writer.put(f"{run}/eval.json", body)
        writer.put(f"_index/{run}.json", body)  # as `detk8s exec` stores a result
        writer.put(f"{run}/DONE", b"")

    finished("L1", 3)
    finished("L2", 3)
    writer.put("Y1/eval.json", json.dumps(record("Y1")).encode())  # stored before indexes
    writer.put("Y1/DONE", b"")
    writer.put("Y2/checkpoints/0/model.pdparams", b"w")  # still running
    writer.put("_index/Y9.json", json.dumps(record("Y9")).encode())  # no such run: ignored

    def collected() -> tuple[dict[str, str], list[tuple[str, str]]]:
        with recording_proxy(s3_bucket.endpoint.url) as proxy:
            store = open_storage(uri, Connection(proxy.url, s3_bucket.endpoint.region))
            results = collect(store)
        return {r.run: r.status for r in results}, sorted(proxy.log)

    status, requests = collected()
    assert status == {"L1": "done", "L2": "done", "Y1": "done", "Y2": "running"}
    bucket = f"/{s3_bucket.name}"
    assert requests == sorted([
        *[("GET", bucket)] * 4,  # runs, the index, Y1's and Y2's top level
        ("GET", f"{bucket}/runs/_index/L1.json"), ("GET", f"{bucket}/runs/_index/L2.json"),
        ("GET", f"{bucket}/runs/Y1/eval.json"),
    ])  # fmt: skip
    finished("L1", 40)  # many more checkpoints: the same requests
    assert collected() == (status, requests)
