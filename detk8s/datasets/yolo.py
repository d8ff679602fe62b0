"""A VOC dataset as the YOLO trainers (ultralytics YOLOv3/v5) read it, written next to the run:

    <out>/images/<split>/<stem>.jpg   symlinks to the dataset's images (the dataset may be a
                                      read-only volume)
    <out>/labels/<split>/<stem>.txt   one `class cx cy w h` line per box, normalised to 0..1
    <out>/<split>.txt                 the images of the split, one absolute path a line
    <out>/data.yaml                   train/val lists, class count and names

The trainer finds each label by replacing /images/ with /labels/ in its image's path. Difficult
objects are kept (YOLO has no such flag; VOC evaluation skips them, these trainers do not).
"""

from __future__ import annotations

from pathlib import Path

from detk8s import yaml_io
from detk8s.datasets.converted import fingerprint, is_current, mark_current
from detk8s.datasets.voc import Annotation, Box, VocError, read_annotation, read_labels, read_list
from detk8s.util import write_atomic

DATA_YAML = "data.yaml"


def yolo_line(box: Box, cls: int, width: int, height: int) -> str:
    cx = (box.xmin + box.xmax) / 2 / width
    cy = (box.ymin + box.ymax) / 2 / height
    w = (box.xmax - box.xmin) / width
    h = (box.ymax - box.ymin) / height
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def voc_box(line: str, names: list[str], width: int, height: int) -> Box:
    """The inverse of yolo_line, in pixels."""
    cls, cx, cy, w, h = line.split()
    x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
    return Box(names[int(cls)], x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)


def convert(root: Path, lists: dict[str, Path], label_list: Path, out: Path) -> Path:
    """Write the YOLO layout of `lists` ({split: list file}) under `out`, unless the same
    inputs were converted before; the data.yaml path."""
    names = read_labels(label_list)
    stamp = fingerprint(root, lists, label_list)
    data_yaml = out / DATA_YAML
    if data_yaml.is_file() and is_current(out, stamp):
        return data_yaml
    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, str] = {}
    for split, list_file in lists.items():
        images = []
        for image, xml in read_list(root, list_file):
            ann = read_annotation(image, xml)
            link = out / "images" / split / image.name
            _write_labels(ann, index, out / "labels" / split / f"{image.stem}.txt", xml)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(image.resolve())
            images.append(str(link))
        write_atomic(out / f"{split}.txt", "".join(f"{i}\n" for i in images))
        splits[split] = str(out / f"{split}.txt")
    data = {"path": str(out), **splits, "nc": len(names), "names": names}
    write_atomic(data_yaml, yaml_io.dump(data))
    mark_current(out, stamp)
    return data_yaml


def _write_labels(ann: Annotation, index: dict[str, int], path: Path, xml: Path) -> None:
    lines = []
    for box in ann.boxes:
        if box.name not in index:
            raise VocError(f"{xml}: class {box.name!r} is not in the label list")
        lines.append(yolo_line(box, index[box.name], ann.width, ann.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
