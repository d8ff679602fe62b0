"""A VOC dataset as COCO JSON, the way YOLOX and miemiedetection read a COCO dataset:

    <out>/annotations/<split>.json   images, annotations (bbox x, y, w, h in pixels), categories
    <out>/<split>2017                a symlink to the dataset's directory: the JSON's file_names
                                     are the images' paths inside it (train2017, val2017 are the
                                     image folder names both trainers use by default)
    <out>/labels.txt                 the class names, one a line

Category ids start at 1, as in COCO. Difficult objects are kept as ordinary boxes (iscrowd 0),
as the YOLO conversion keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detk8s.datasets.converted import fingerprint, is_current, mark_current
from detk8s.datasets.voc import VocError, read_annotation, read_labels, read_list
from detk8s.util import write_atomic

ANNOTATIONS = "annotations"
LABELS = "labels.txt"


def image_folder(split: str) -> str:
    return f"{split}2017"


def annotation_file(split: str) -> str:
    return f"{split}.json"


def convert(root: Path, lists: dict[str, Path], label_list: Path, out: Path) -> Path:
    """Write the COCO layout of `lists` ({split: list file}) under `out`, unless the same
    inputs were converted before; `out`."""
    stamp = fingerprint(root, lists, label_list)
    if is_current(out, stamp):
        return out
    names = read_labels(label_list)
    for split, list_file in lists.items():
        document = coco_document(root, list_file, names)
        write_atomic(out / ANNOTATIONS / annotation_file(split), json.dumps(document))
        link = out / image_folder(split)
        link.unlink(missing_ok=True)
        link.symlink_to(root.resolve(), target_is_directory=True)
    write_atomic(out / LABELS, "".join(f"{name}\n" for name in names))
    mark_current(out, stamp)
    return out


def coco_document(root: Path, list_file: Path, names: list[str]) -> dict[str, Any]:
    """The COCO detection JSON of one list file."""
    category = {name: i for i, name in enumerate(names, 1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    resolved = root.resolve()
    for image_id, (image, xml) in enumerate(read_list(root, list_file), 1):
        ann = read_annotation(image, xml)
        try:
            file_name = image.resolve().relative_to(resolved).as_posix()
        except ValueError:
            raise VocError(f"{list_file}: {image} is outside the dataset directory") from None
        images.append({"id": image_id, "file_name": file_name, "width": ann.width,
                       "height": ann.height})  # fmt: skip
        for box in ann.boxes:
            if box.name not in category:
                raise VocError(f"{xml}: class {box.name!r} is not in the label list")
            w, h = box.xmax - box.xmin, box.ymax - box.ymin
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": category[box.name], "bbox": [box.xmin, box.ymin, w, h],
                "area": w * h, "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": i, "name": name, "supercategory": "none"} for name, i in category.items()]
    return {"info": {"description": f"{list_file.name}, converted by detk8s"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}  # fmt: skip
