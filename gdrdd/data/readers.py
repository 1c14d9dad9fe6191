"""Data set readers by name, and the tensor cache that makes slow readers fast after the first run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch

from gdrdd.data.cifar import load_cifar10, load_cifar100
from gdrdd.data.embedded import load_mnist_mini
from gdrdd.data.idx import load_fashion_mnist, load_mnist
from gdrdd.data.imagefolder import folder_class_names, load_folder_dataset
from gdrdd.data.spec import DatasetSpec, ImageSet, RealData
from gdrdd.data.svhn import load_svhn
from gdrdd.data.tinyimagenet import load_tinyimagenet, tinyimagenet_class_names
from gdrdd.utils.files import atomic_write

# reader name -> (loader, whether its output is worth caching as a tensor file)
READERS: dict[str, tuple[Callable[[Path, DatasetSpec], RealData], bool]] = {
    "mnist_mini": (lambda data_dir, spec: load_mnist_mini(), False),
    "mnist": (load_mnist, True),
    "fashion_mnist": (load_fashion_mnist, True),
    "svhn": (load_svhn, True),
    "cifar10": (load_cifar10, True),
    "cifar100": (load_cifar100, True),
    "tinyimagenet": (load_tinyimagenet, True),
    "imagefolder": (load_folder_dataset, True),
}
# Readers whose class list can come from the data folder (``class_names: null`` in the data set's config):
# (data_dir, class_indices or None) -> class names.
CLASS_NAME_READERS: dict[str, Callable[[Path, list[int] | None], tuple[str, ...]]] = {
    "tinyimagenet": lambda data_dir, indices: tinyimagenet_class_names(data_dir),
    "imagefolder": folder_class_names,
}


def load_real_data(spec: DatasetSpec, data_dir: str | Path, cache_dir: str | Path | None) -> RealData:
    """Read the data set, through ``cache_dir`` (uint8 tensors, keyed by reader, folder and spec) if set."""
    if spec.reader not in READERS:
        raise ValueError(f"dataset.reader={spec.reader!r} is unknown; accepted: {', '.join(sorted(READERS))}")
    loader, cacheable = READERS[spec.reader]
    data_dir = Path(data_dir).expanduser()
    if not (cacheable and cache_dir):
        return loader(data_dir, spec)
    key = hashlib.sha1(repr((spec.reader, str(data_dir.resolve()), spec.class_names, spec.resolution,
                             spec.channels)).encode()).hexdigest()[:16]
    cache = Path(cache_dir).expanduser() / f"{spec.name}-{key}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return RealData(ImageSet(*blob["train"]), ImageSet(*blob["test"]))
        except Exception:  # a stale or truncated cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    data = loader(data_dir, spec)
    blob = {"train": (data.train.images, data.train.labels), "test": (data.test.images, data.test.labels)}
    atomic_write(cache, lambda tmp: torch.save(blob, tmp))
    return data
