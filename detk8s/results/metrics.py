"""Metrics parsed from what the trainers print, in the formats of the seeds' real logs. Each
framework adapter picks the parsers its trainer needs; all fill one `Metrics` shape.

PaddleDetection VOC:  `ppdet.metrics.metrics INFO: mAP(0.50, integral) = 93.63%` (or `11point`),
                      with `classwise` a per-category table of `| category | AP |` cells
COCO (pycocotools):   the 12 `Average Precision/Recall (AP/AR) @[ IoU=... ] = 0.320` lines
Speed:                `Total sample number: 1458, average FPS: 41.02` (ppdet) and
                      `Average forward time: 8.53 ms, ...` (YOLOX / miemiedetection)
A log may hold several evaluations (one per snapshot epoch): the last one is the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_VOC = re.compile(r"mAP\(0\.50,\s*(integral|11point)\)\s*=\s*([0-9.]+)%")
_COCO = re.compile(
    r"Average (Precision|Recall)\s+\((AP|AR)\) @\[ IoU=\s*([0-9.:]+)\s*\| area=\s*(\w+)\s*"
    r"\| maxDets=\s*(\d+) \] = (-?[0-9.]+)"
)
_PPDET_FPS = re.compile(r"Total sample number:\s*(\d+),\s*average FPS:\s*([0-9.]+)")
_FORWARD = re.compile(r"Average forward time:\s*([0-9.]+)\s*ms")
_PPDET_CLASS_TABLE = "Per-category of VOC AP"
_TABLE_ROW = re.compile(r"^\|(.+)\|\s*$")

# The 12 COCO lines in pycocotools' order, by their conventional short names.
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class Metrics:
    """One evaluation's results; mAP-like values in percent."""

    map50: float | None = None
    map50_95: float | None = None
    per_class: dict[str, float] = field(default_factory=dict)  # class -> AP@0.5
    fps: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # everything else found
    lines: list[str] = field(default_factory=list)  # the raw lines the values come from


def parse_metrics(text: str) -> Metrics:
    """Every metric of the formats above found in `text`."""
    out = Metrics()
    voc = list(_VOC.finditer(text))
    if voc:
        last = voc[-1]
        out.map50 = float(last.group(2))
        out.details["voc_map_type"] = last.group(1)
        out.lines.append(_line_of(text, last))
    coco = _last_coco_block(text)
    if coco:
        values, lines = coco
        out.details["coco"] = values
        out.map50_95 = round(values["AP"] * 100, 2)
        if out.map50 is None:
            out.map50 = round(values["AP50"] * 100, 2)
        out.lines += lines
    fps = list(_PPDET_FPS.finditer(text))
    if fps:
        out.fps = float(fps[-1].group(2))
        out.details["eval_samples"] = int(fps[-1].group(1))
        out.lines.append(_line_of(text, fps[-1]))
    forward = list(_FORWARD.finditer(text))
    if forward:
        ms = float(forward[-1].group(1))
        out.details["forward_ms"] = ms
        if out.fps is None and ms > 0:
            out.fps = round(1000.0 / ms, 2)
        out.lines.append(_line_of(text, forward[-1]))
    out.per_class, lines = ppdet_per_class(text)
    out.lines += lines
    return out


def ppdet_per_class(text: str) -> tuple[dict[str, float], list[str]]:
    """The last per-category table ppdet's VOC metric prints with `classwise`: AP in percent,
    and the table's lines. Rows hold up to three (category, AP) pairs."""
    start = text.rfind(_PPDET_CLASS_TABLE)
    if start < 0:
        return {}, []
    out: dict[str, float] = {}
    lines = []
    for line in text[start:].splitlines()[1:]:
        row = _TABLE_ROW.match(line.strip())
        if row is None:
            if line.strip().startswith("+"):
                continue
            break
        lines.append(line.strip())
        cells = [c.strip() for c in row.group(1).split("|")]
        for name, ap in zip(cells[::2], cells[1::2], strict=False):
            try:
                out[name] = round(float(ap) * 100, 2)
            except ValueError:
                continue  # the header row, or an empty cell
    return out, lines


def _line_of(text: str, match: re.Match[str]) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end >= 0 else len(text)].strip()


def _last_coco_block(text: str) -> tuple[dict[str, float], list[str]] | None:
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
    values = dict(zip(COCO_KEYS, (float(m.group(6)) for m in block), strict=True))
    return values, [_line_of(text, m) for m in block]


def map50_points(text: str) -> list[tuple[int, float]]:
    """Every evaluation's mAP@0.5 in `text` (percent), by offset: ppdet's VOC line, or the
    COCO AP50 line."""
    points = [(m.start(), float(m.group(2))) for m in _VOC.finditer(text)]
    points += [
        (m.start(), round(float(m.group(6)) * 100, 2))
        for m in _COCO.finditer(text)
        if m.group(2) == "AP" and m.group(3) == "0.50" and m.group(4) == "all"
    ]
    return sorted(points)
