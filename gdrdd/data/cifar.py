"""CIFAR-10 in either of two layouts under ``data_dir``:

- the official python release: ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (pickles, latin1);
- class folders: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from gdrdd.data.errors import DataNotFoundError
from gdrdd.data.image_folder import read_image_folder
from gdrdd.data.spec import DatasetSpec, ImageSet, RealData

PYTHON_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def find_cifar10_layout(data_dir: Path, spec: DatasetSpec) -> tuple[str, Path]:
    """Return ('python', dir) or ('folders', dir); raise DataNotFoundError naming what is expected."""
    for candidate in (data_dir / PYTHON_DIR, data_dir):
        if all((candidate / f).is_file() for f in (*TRAIN_BATCHES, TEST_BATCH)):
            return "python", candidate
    for candidate in (data_dir, data_dir / "cifar10", data_dir / "cifar10-jpeg"):
        if all((candidate / split / c).is_dir() for split in ("train", "test") for c in spec.class_names):
            return "folders", candidate
    raise DataNotFoundError(
        f"CIFAR-10 was not found under {data_dir}. Expected either the official python release, "
        f"{data_dir / PYTHON_DIR}/{{{', '.join(TRAIN_BATCHES)}, {TEST_BATCH}}} (download {SOURCE} and "
        f"unpack it in {data_dir}), or class folders {data_dir}/train/<class>/ and {data_dir}/test/<class>/ "
        f"for the classes {', '.join(spec.class_names)}. Point paths.data_dir at the folder that holds them."
    )


def load_cifar10(data_dir: Path, spec: DatasetSpec) -> RealData:
    layout, root = find_cifar10_layout(data_dir, spec)
    if layout == "python":
        return RealData(_read_batches(root, TRAIN_BATCHES), _read_batches(root, (TEST_BATCH,)))
    return RealData(*(read_image_folder(root / s, spec.class_names, spec.resolution, spec.channels)
                      for s in ("train", "test")))


def _read_batches(root: Path, names: tuple[str, ...]) -> ImageSet:
    images, labels = [], []
    for name in names:
        path = root / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch["labels"])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            raise DataNotFoundError(f"CIFAR-10 batch file {path} is unreadable or incomplete ({err!r}); "
                                    f"replace it with the file from {SOURCE}") from err
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long))
