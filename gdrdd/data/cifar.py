"""CIFAR-10 and CIFAR-100 in either of two layouts under ``data_dir``:

- the official python release: ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` or
  ``cifar-100-python/{train, test}`` (pickles, latin1; CIFAR-100 uses the 100 fine labels);
- class folders: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gdrdd.data.image_files import read_image_folder
from gdrdd.data.spec import DatasetSpec, ImageSet, RealData
from gdrdd.errors import DataNotFoundError


@dataclass(frozen=True)
class CifarRelease:
    title: str
    python_dir: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    source: str


CIFAR10 = CifarRelease("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                       "labels", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
CIFAR100 = CifarRelease("CIFAR-100", "cifar-100-python", ("train",), "test", "fine_labels",
                        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")


def find_layout(release: CifarRelease, data_dir: Path, spec: DatasetSpec) -> tuple[str, Path]:
    """Return ('python', dir) or ('folders', dir); raise DataNotFoundError naming what is expected."""
    for candidate in (data_dir / release.python_dir, data_dir):
        if all((candidate / f).is_file() for f in (*release.train_files, release.test_file)):
            return "python", candidate
    for candidate in (data_dir, data_dir / spec.name, data_dir / f"{spec.name}-jpeg"):
        if all((candidate / split / c).is_dir() for split in ("train", "test") for c in spec.class_names):
            return "folders", candidate
    files = ", ".join((*release.train_files, release.test_file))
    raise DataNotFoundError(
        f"{release.title} was not found under {data_dir}. Expected either the official python release, "
        f"{data_dir / release.python_dir}/{{{files}}} (download {release.source} and unpack it in {data_dir}), "
        f"or class folders {data_dir}/train/<class>/ and {data_dir}/test/<class>/ for the {spec.num_classes} "
        f"classes ({', '.join(spec.class_names[:10])}{', ...' if spec.num_classes > 10 else ''}). "
        f"Point paths.data_dir at the folder that holds them.")


def load_cifar(release: CifarRelease, data_dir: Path, spec: DatasetSpec) -> RealData:
    layout, root = find_layout(release, data_dir, spec)
    if layout == "python":
        return RealData(_read_pickles(release, root, release.train_files),
                        _read_pickles(release, root, (release.test_file,)))
    return RealData(*(read_image_folder(root / s, spec.class_names, spec.resolution, spec.channels)
                      for s in ("train", "test")))


def load_cifar10(data_dir: Path, spec: DatasetSpec) -> RealData:
    return load_cifar(CIFAR10, data_dir, spec)


def load_cifar100(data_dir: Path, spec: DatasetSpec) -> RealData:
    return load_cifar(CIFAR100, data_dir, spec)


def _read_pickles(release: CifarRelease, root: Path, names: tuple[str, ...]) -> ImageSet:
    images, labels = [], []
    for name in names:
        path = root / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[release.label_key])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            raise DataNotFoundError(f"{release.title} file {path} is unreadable or incomplete ({err!r}); "
                                    f"replace it with the file from {release.source}") from err
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long))
