"""TinyImageNet (200 classes, 64 px) in its release layout under ``data_dir`` (or ``data_dir/tiny-imagenet-200``):
``wnids.txt``, ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with ``val/val_annotations.txt``
(file name, wnid, box). The validation set serves as the test set, labelled from ``val_annotations.txt``.
Class order: the sorted wnids (as torchvision's ImageFolder on ``train/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gdrdd.data.image_files import read_image
from gdrdd.data.spec import DatasetSpec, ImageSet, RealData
from gdrdd.errors import DataNotFoundError

FOLDER = "tiny-imagenet-200"
SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def find_root(data_dir: Path) -> Path:
    for candidate in (data_dir / FOLDER, data_dir):
        if (candidate / "wnids.txt").is_file() and (candidate / "val" / "val_annotations.txt").is_file():
            return candidate
    raise DataNotFoundError(
        f"TinyImageNet was not found under {data_dir}. Expected {data_dir / FOLDER}/ (or the same under "
        f"{data_dir}) with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt: "
        f"download {SOURCE} and unzip it in {data_dir}. Point paths.data_dir at the folder that holds it.")


def tinyimagenet_class_names(data_dir: Path) -> tuple[str, ...]:
    """The sorted wnids of ``wnids.txt``."""
    root = find_root(Path(data_dir).expanduser())
    return tuple(sorted(line.strip() for line in (root / "wnids.txt").read_text().split() if line.strip()))


def load_tinyimagenet(data_dir: Path, spec: DatasetSpec) -> RealData:
    root = find_root(data_dir)
    index = {wnid: i for i, wnid in enumerate(spec.class_names)}
    train = [(path, label) for wnid, label in index.items()
             for path in sorted((root / "train" / wnid / "images").glob("*.JPEG"))]
    missing = [w for w in index if not (root / "train" / w / "images").is_dir()]
    if missing:
        raise DataNotFoundError(f"TinyImageNet under {root} lacks train/<wnid>/images/ for {len(missing)} classes "
                                f"(first: {missing[0]}); unzip {SOURCE} again")
    val = []
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in index:
            val.append((root / "val" / "images" / fields[0], index[fields[1]]))
    return RealData(_read(train, spec), _read(val, spec))


def _read(items: list[tuple[Path, int]], spec: DatasetSpec) -> ImageSet:
    images = np.stack([read_image(path, spec.resolution, spec.channels) for path, _ in items])
    return ImageSet(torch.from_numpy(images), torch.tensor([label for _, label in items], dtype=torch.long))
