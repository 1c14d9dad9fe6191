"""Reader for class-folder trees: ``<root>/<split>/<class name>/<image file>``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gdrdd.data.spec import ImageSet

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_image_folder(split_dir: Path, class_names: tuple[str, ...], resolution: int, channels: int) -> ImageSet:
    """Read every image of ``split_dir/<class>/`` for the given classes (label = position in ``class_names``),
    resized to ``resolution`` px if needed and converted to ``channels`` channels."""
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = split_dir / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no images in class folder {folder}")
        for path in files:
            images.append(read_image(path, resolution, channels))
            labels.append(label)
    return ImageSet(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long))


def read_image(path: Path, resolution: int, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except OSError as err:
        raise OSError(f"cannot read image file {path}: {err}") from err
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
