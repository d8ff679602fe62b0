"""Pascal VOC as the datasets keep it: list files of `image annotation` lines (paths relative to
the dataset directory), one XML annotation per image, and label_list.txt with one class a line.
Every framework reads the same dataset; adapters convert it to their trainer's format in the pod."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from detk8s.errors import DetkError

CORNERS = ("xmin", "ymin", "xmax", "ymax")


class VocError(DetkError):
    pass


@dataclass(frozen=True)
class Box:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False


@dataclass(frozen=True)
class Annotation:
    image: Path  # absolute
    width: int
    height: int
    boxes: tuple[Box, ...]


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_list(root: Path, list_file: Path) -> list[tuple[Path, Path]]:
    """(image, annotation) pairs of a list file, made absolute against the dataset root."""
    pairs = []
    for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise VocError(f"{list_file}:{n}: expected 'image annotation', got {line.strip()!r}")
        pairs.append((root / parts[0], root / parts[1]))
    return pairs


def read_annotation(image: Path, xml: Path) -> Annotation:
    try:
        tree = ET.parse(xml)
    except (OSError, ET.ParseError) as e:
        raise VocError(f"{xml}: not a VOC annotation ({e})") from None
    size = tree.find("size")
    width = int(float(size.findtext("width", "0"))) if size is not None else 0
    height = int(float(size.findtext("height", "0"))) if size is not None else 0
    boxes = []
    for obj in tree.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        xmin, ymin, xmax, ymax = (
            float(bnd.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        difficult = obj.findtext("difficult", "0").strip() == "1"
        boxes.append(Box(obj.findtext("name", "").strip(), xmin, ymin, xmax, ymax, difficult))
    if width <= 0 or height <= 0:
        width, height = _image_size(image)
    return Annotation(image, width, height, tuple(boxes))


def _image_size(image: Path) -> tuple[int, int]:
    """From the image itself, for annotations without a usable <size>."""
    from PIL import Image  # the trainers' images carry Pillow; the CLI never gets here

    with Image.open(image) as im:
        return im.size
