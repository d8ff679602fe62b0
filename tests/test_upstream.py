"""The shipped PaddleDetection runs train as upstream PaddleDetection release/2.6 trains them:
its weights URLs, its input sizes (after ppdet's own _BASE_ resolution), its LR recipe shown
beside ours by `detk8s validate`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_render import ppdet_config, render

REPO = Path(__file__).resolve().parent.parent

# Every weights URL a shipped file may name, with the upstream release/2.6 config it comes from.
UPSTREAM_URLS = {
    "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"
    "PPLCNet_x0_75_pretrained.pdparams": "configs/picodet/picodet_s_320_coco_lcnet.yml",
    "https://paddledet.bj.bcebos.com/models/pretrained/MobileNetV1_pretrained.pdparams":
        "configs/yolov3/_base_/yolov3_mobilenet_v1.yml",
    # ultralytics: the COCO-trained YOLOv3 of the ultralytics/yolov3 v9.6.0 release assets (what
    # its utils/downloads.py attempt_download('yolov3.pt') fetches).
    "https://github.com/ultralytics/yolov3/releases/download/v9.6.0/yolov3.pt":
        "ultralytics/yolov3 v9.6.0 release",
    # YOLOX: its README's COCO YOLOX-s (the 0.1.1rc0 release asset seed 003 fine-tunes from).
    "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_s.pth":
        "YOLOX README, 0.3.0",
    # The SSD trainer: the MobileNet-v1 SSD train_ssd.py downloads when missing (seed 002).
    "https://nvidia.box.com/shared/static/djf5w54rjvpqocsiztzaandq1m3avr7c.pth":
        "pytorch-ssd train_ssd.py",
}  # fmt: skip
YOLOV3_TRAIN_SIZES = [320, 352, 384, 416, 448, 480, 512, 544, 576, 608]
URL = re.compile(r"https?://[^\s'\"]+\.(?:pdparams|pdopt|pth|pt|tar|zip)\b")


def shipped_files() -> list[Path]:
    """Every config and doc a user reads or runs: configs, examples, the project file, README."""
    files = [REPO / "detk8s.yaml", REPO / "README.md"]
    for top in ("configs", "examples", ".github"):
        files += [p for p in (REPO / top).rglob("*") if p.suffix in (".yml", ".yaml", ".md")]
    return files


def test_only_upstream_weights_urls_are_shipped() -> None:
    found = {m.group(0): f for f in shipped_files() for m in URL.finditer(f.read_text())}
    assert found, "the scan found no weights URL at all"
    unknown = {
        url: str(f.relative_to(REPO)) for url, f in found.items() if url not in UPSTREAM_URLS
    }
    assert unknown == {}, "weights URLs that no upstream release/2.6 config uses"
    base = yaml.safe_load((REPO / "configs/bases/picodet_s_320.yml").read_text())
    assert UPSTREAM_URLS[base["pretrain_weights"]].startswith("configs/picodet/")


def effective(cm: dict[str, Any], tmp: Path) -> Any:
    """The run's ppdet config as ppdet itself resolves it (its _BASE_ points into the image)."""
    from ppdet.core.workspace import load_config

    text = ppdet_config(cm)
    text["_BASE_"] = [b.replace("/opt/detk8s/configs", str(REPO / "configs"))
                      for b in text["_BASE_"]]  # fmt: skip
    path = tmp / "paddledet.yml"
    path.write_text(yaml.safe_dump(text))
    return load_config(str(path))


def sizes(cfg: Any) -> tuple[list[int], list[int], list[int]]:
    """(training sizes, eval Resize, TestReader image_shape) of an effective config."""
    batch = cfg["TrainReader"]["batch_transforms"]
    (train,) = [t["BatchRandomResize"]["target_size"] for t in batch if "BatchRandomResize" in t]
    (ev,) = [t["Resize"]["target_size"] for t in cfg["EvalReader"]["sample_transforms"]
             if "Resize" in t]  # fmt: skip
    return train, ev, cfg["TestReader"]["inputs_def"]["image_shape"]


def test_y1_trains_and_evaluates_at_upstream_sizes(project: Path, cli: Any, tmp_path: Path) -> None:
    cm, _ = render(cli, "Y1")
    cfg = effective(cm, tmp_path)
    assert sizes(cfg) == (YOLOV3_TRAIN_SIZES, [608, 608], [3, 608, 608])
    # `detk8s exec` downloads the upstream weights; ppdet reads the local copy.
    assert cfg["pretrain_weights"] == "/output/Y1/pretrained/MobileNetV1_pretrained.pdparams"


def test_input_size_and_train_sizes(project: Path, cli: Any, tmp_path: Path) -> None:
    (project / "configs/runs/Y7.yml").write_text("_BASE_: Y1.yml\ninput_size: 416\n")
    (project / "configs/runs/Y8.yml").write_text(
        "_BASE_: Y1.yml\ninput_size: 320\npaddledet: {train_sizes: [352, 288, 320, 320]}\n"
    )
    (project / "configs/runs/L9.yml").write_text("_BASE_: L1.yml\ninput_size: 416\n")
    assert sizes(effective(render(cli, "Y7")[0], tmp_path)) == (
        YOLOV3_TRAIN_SIZES, [416, 416], [3, 416, 416]
    )  # fmt: skip
    assert sizes(effective(render(cli, "Y8")[0], tmp_path)) == (
        [288, 320, 352], [320, 320], [3, 320, 320]
    )  # fmt: skip
    picodet = effective(render(cli, "L9")[0], tmp_path)
    assert sizes(picodet) == ([256, 288, 320, 352, 384], [416, 416], [1, 3, 416, 416])
    assert picodet["eval_size"] == [416, 416]  # PicoHeadV2 reads it


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("input_size: 300", "input_size: 300 is not a multiple of 32"),
        ("paddledet: {train_sizes: [320, 330]}",
         "paddledet.train_sizes.1: 330 is not a multiple of 32"),
        ("paddledet: {train_sizes: []}", "paddledet.train_sizes: list should have at least 1 "
                                         "item after validation, not 0 (got [])"),
        ("input_size: 0", "input_size: input should be greater than or equal to 32 (got 0)"),
        ("pretrain_weights: ftp://host/w.pdparams", "pretrain_weights: 'ftp://host/w.pdparams' "
         "is not a weights file: use https://host/path/file, s3://bucket/path/file, an absolute "
         "path, or a path inside the dataset"),
        ("pretrain_weights: ../../w.pdparams",
         "pretrain_weights: '../../w.pdparams' leaves the dataset directory ('..')"),
        ("pretrain_weights: s3://bucket/", "pretrain_weights: 's3://bucket/' is not a weights "
         "file: use https://host/path/file, s3://bucket/path/file, an absolute path, or a path "
         "inside the dataset"),
        ("pretrain_weights: 'https://me:pw@host/w.pdparams'",
         "pretrain_weights: has credentials in the URL: keep them in a Secret"),
    ],
)  # fmt: skip
def test_bad_sizes_and_weights(project: Path, cli: Any, line: str, message: str) -> None:
    (project / "configs/runs/bad.yml").write_text(f"_BASE_: ../bases/yolov3_mobilenet_v1.yml\n"
                                                  f"{line}\n")  # fmt: skip
    result = cli("validate", "bad")
    assert (result.code, result.err) == (2, f"error: configs/runs/bad.yml: {message}\n")
    assert "pw@" not in result.err


def test_weights_sources_render_to_pod_paths(project: Path, cli: Any) -> None:
    for name, source, expected in [
        ("W1", "s3://models/pretrained/PPLCNet_x0_75_pretrained.pdparams",
         "/output/W1/pretrained/PPLCNet_x0_75_pretrained.pdparams"),
        ("W2", "pretrained/lcnet.pdparams", "/data/mouse_other_voc/pretrained/lcnet.pdparams"),
        ("W3", "/weights/lcnet.pdparams", "/weights/lcnet.pdparams"),
    ]:  # fmt: skip
        (project / f"configs/runs/{name}.yml").write_text(
            f"_BASE_: L1.yml\npretrain_weights: {source}\n"
        )
        cm, _ = render(cli, name)
        assert ppdet_config(cm)["pretrain_weights"] == expected


def test_validate_shows_the_lr_schedule(project: Path, cli: Any) -> None:
    result = cli("validate", "L1", "L3", "Y1", "Y2")
    assert result.code == 0, result.err
    rows = {line.split()[0]: line for line in result.out.splitlines()[1:-1]}
    # PicoDet-S: upstream's 0.32 is for 4 GPUs x 64; 5,828 train images; warmup 300 iterations.
    assert rows["L1"].split() == ["L1", "32", "0.08", "0.04", "(lr", "is", "x2)", "182", "300",
                                  "1.65", "(0.5%", "of", "300)"]  # fmt: skip
    assert rows["L3"].split()[:8] == ["L3", "96", "0.24", "0.12", "(lr", "is", "x2)", "60"]
    assert rows["L3"].split()[8:10] == ["300", "5.00"]
    # YOLOv3: upstream's 0.001 is for 8 GPUs x 8; the 1/3 list has 1,943 lines; warmup 1,000.
    assert rows["Y1"].split()[1:10] == ["8", "0.00125", "0.000125", "(lr", "is", "x10)", "242",
                                        "1,000", "4.13"]  # fmt: skip
    assert rows["Y2"].split()[7:10] == ["121", "1,000", "8.26"]
