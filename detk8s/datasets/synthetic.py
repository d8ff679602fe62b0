"""A tiny, deterministic Pascal VOC dataset for smoke tests.

It has the layout of the real `mouse_other_voc` set (2 classes, `images/`, `annotations/`,
`train.txt`/`val.txt` in PaddleDetection's "image annotation" list format, `label_list.txt`), so
a training container can be exercised end to end without the real data.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from xml.sax.saxutils import escape

CLASSES = ("mouse", "other")
# One fixed colour per class so a detector has something learnable.
_CLASS_COLOURS = {"mouse": (200, 40, 40), "other": (40, 80, 200)}


def _voc_xml(filename: str, size: int, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"  <object>\n"
        f"    <name>{escape(name)}</name>\n"
        f"    <pose>Unspecified</pose>\n"
        f"    <truncated>0</truncated>\n"
        f"    <difficult>0</difficult>\n"
        f"    <bndbox>\n"
        f"      <xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>\n"
        f"    </bndbox>\n"
        f"  </object>\n"
        for name, x0, y0, x1, y1 in boxes
    )
    return (
        "<annotation>\n"
        "  <folder>images</folder>\n"
        f"  <filename>{escape(filename)}</filename>\n"
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"
        "  <segmented>0</segmented>\n"
        f"{objects}"
        "</annotation>\n"
    )


def _random_boxes(rng: random.Random, size: int) -> list[tuple[str, int, int, int, int]]:
    boxes: list[tuple[str, int, int, int, int]] = []
    wanted = rng.randint(1, 3)
    # Boxes never overlap, so no drawn rectangle hides part of another's ground truth.
    for _ in range(50):
        if len(boxes) == wanted:
            break
        w = rng.randint(size // 8, size // 3)
        h = rng.randint(size // 8, size // 3)
        x0 = rng.randint(0, size - w - 1)
        y0 = rng.randint(0, size - h - 1)
        x1, y1 = x0 + w, y0 + h
        if all(x1 < b[1] or b[3] < x0 or y1 < b[2] or b[4] < y0 for b in boxes):
            boxes.append((rng.choice(CLASSES), x0, y0, x1, y1))
    return boxes


def make_voc_dataset(
    root: Path, n_train: int = 8, n_val: int = 4, size: int = 320, seed: int = 0
) -> Path:
    """Write the dataset under `root` and return `root`.

    Same arguments give byte-identical files (seeded RNG, fixed JPEG quality).
    """
    # Pillow is imported here: it is only installed where paddle is, and importing it at module
    # level would slow down (or break) the detk8s CLI.
    from PIL import Image, ImageDraw

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    splits = {"train": n_train, "val": n_val}
    for split, count in splits.items():
        lines = []
        for i in range(count):
            stem = f"{split}_{i:04d}"
            background = tuple(rng.randint(90, 170) for _ in range(3))
            image = Image.new("RGB", (size, size), background)
            draw = ImageDraw.Draw(image)
            boxes = _random_boxes(rng, size)
            for name, x0, y0, x1, y1 in boxes:
                draw.rectangle((x0, y0, x1, y1), fill=_CLASS_COLOURS[name])
            image.save(root / "images" / f"{stem}.jpg", format="JPEG", quality=90)
            (root / "annotations" / f"{stem}.xml").write_text(
                _voc_xml(f"{stem}.jpg", size, boxes), encoding="utf-8"
            )
            lines.append(f"images/{stem}.jpg annotations/{stem}.xml\n")
        (root / f"{split}.txt").write_text("".join(lines), encoding="utf-8")

    (root / "label_list.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detk8s.datasets.synthetic",
        description="Write a tiny synthetic 2-class Pascal VOC dataset.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-val", type=int, default=4)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_voc_dataset(args.out_dir, args.n_train, args.n_val, args.size, args.seed)
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
