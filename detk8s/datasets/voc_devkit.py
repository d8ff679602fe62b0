"""A VOC dataset in the VOCdevkit layout, as the jetson-inference SSD trainer (pytorch-ssd's
VOCDataset) reads it, written next to the run:

    <out>/ImageSets/Main/<split>.txt   image ids, one a line (trainval: training, test: eval)
    <out>/JPEGImages/<id><ext>         symlinks to the dataset's images
    <out>/Annotations/<id>.xml         symlinks to their annotations
    <out>/labels.txt                   the class names, one a line (without it the trainer
                                       silently uses VOC's 20 classes)

An image's id is its file name without the extension, so two images of the same name in
different directories cannot both be in it.
"""

from __future__ import annotations

from pathlib import Path

from detk8s.datasets.converted import fingerprint, is_current, mark_current
from detk8s.datasets.voc import VocError, read_labels, read_list
from detk8s.util import write_atomic

LABELS = "labels.txt"
# What VOCDataset looks for, in its order (vision/datasets/voc_dataset.py).
IMAGE_SUFFIXES = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".tif",
                  ".TIF", ".tiff", ".TIFF")  # fmt: skip


def convert(root: Path, lists: dict[str, Path], label_list: Path, out: Path) -> Path:
    """Write the layout of `lists` ({split: list file}) under `out`, unless the same inputs were
    converted before; `out`."""
    stamp = fingerprint(root, lists, label_list)
    if is_current(out, stamp):
        return out
    images: dict[str, Path] = {}
    for split, list_file in lists.items():
        ids = []
        for image, xml in read_list(root, list_file):
            image_id = image.stem
            if image.suffix not in IMAGE_SUFFIXES:
                raise VocError(f"{list_file}: {image.name}: the SSD trainer reads "
                               f"{', '.join(IMAGE_SUFFIXES[::2])} images only")  # fmt: skip
            if images.setdefault(image_id, image) != image:
                raise VocError(f"{list_file}: {image} and {images[image_id]} have the same id "
                               f"{image_id!r} in the VOCdevkit layout: rename one")  # fmt: skip
            _link(out / "JPEGImages" / image.name, image)
            _link(out / "Annotations" / f"{image_id}.xml", xml)
            ids.append(image_id)
        write_atomic(out / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    write_atomic(out / LABELS, "".join(f"{name}\n" for name in read_labels(label_list)))
    mark_current(out, stamp)
    return out


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target.resolve())
