"""Metrics parsed from what the frameworks print, in the formats of the seeds' real logs.

PaddleDetection VOC:  `ppdet.metrics.metrics INFO: mAP(0.50, integral) = 93.63%` (or `11point`)
COCO (pycocotools):   the 12 `Average Precision/Recall (AP/AR) @[ IoU=... ] = 0.320` lines
Speed:                `Total sample number: 1458, average FPS: 41.02` (ppdet) and
                      `Average forward time: 8.53 ms, ...` (YOLOX / miemiedetection)
A log may hold several evaluations (one per snapshot epoch): the last one is the result.
"""

from __future__ import annotations

import re
from typing import Any

_VOC = re.compile(r"mAP\(0\.50,\s*(integral|11point)\)\s*=\s*([0-9.]+)%")
_COCO = re.compile(
    r"Average (Precision|Recall)\s+\((AP|AR)\) @\[ IoU=\s*([0-9.:]+)\s*\| area=\s*(\w+)\s*"
    r"\| maxDets=\s*(\d+) \] = (-?[0-9.]+)"
)
_PPDET_FPS = re.compile(r"Total sample number:\s*(\d+),\s*average FPS:\s*([0-9.]+)")
_FORWARD = re.compile(r"Average forward time:\s*([0-9.]+)\s*ms")

# The 12 COCO lines in pycocotools' order, by their conventional short names.
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def parse_metrics(text: str) -> dict[str, Any]:
    """Every metric found in `text`, as percentages for mAP-like values; {} when none."""
    out: dict[str, Any] = {}
    voc = _VOC.findall(text)
    if voc:
        kind, value = voc[-1]
        out["map50"] = float(value)
        out["voc_map_type"] = kind
    coco = _last_coco_block(text)
    if coco:
        out["coco"] = coco
        out["map50_95"] = round(coco["AP"] * 100, 2)
        out.setdefault("map50", round(coco["AP50"] * 100, 2))
    fps = _PPDET_FPS.findall(text)
    if fps:
        samples, value = fps[-1]
        out["fps"] = float(value)
        out["eval_samples"] = int(samples)
    forward = _FORWARD.findall(text)
    if forward:
        ms = float(forward[-1])
        out["forward_ms"] = ms
        out.setdefault("fps", round(1000.0 / ms, 2) if ms > 0 else None)
    return out


def _last_coco_block(text: str) -> dict[str, float] | None:
    """The last complete block of 12 lines, each block starting at its AP@[.5:.95] line."""
    found = list(_COCO.finditer(text))
    n = len(COCO_KEYS)
    starts = [
        i for i, m in enumerate(found)
        if m.group(2) == "AP" and m.group(3) == "0.50:0.95" and m.group(4) == "all"
        and i + n <= len(found)
    ]  # fmt: skip
    if not starts:
        return None
    block = found[starts[-1] : starts[-1] + n]
    return dict(zip(COCO_KEYS, (float(m.group(6)) for m in block), strict=True))
