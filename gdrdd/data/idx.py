"""MNIST and Fashion-MNIST in the IDX format of their releases, under ``data_dir`` or ``data_dir/<name>``
(``MNIST/raw`` as torchvision lays it out also works): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gdrdd.data.spec import DatasetSpec, ImageSet, RealData
from gdrdd.errors import DataNotFoundError

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


@dataclass(frozen=True)
class IdxRelease:
    title: str
    folders: tuple[str, ...]
    source: str


MNIST = IdxRelease("MNIST", ("mnist", "MNIST/raw"), "https://ossci-datasets.s3.amazonaws.com/mnist/")
FASHION_MNIST = IdxRelease("Fashion-MNIST", ("fashion_mnist", "FashionMNIST/raw"),
                           "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")


def _find(release: IdxRelease, data_dir: Path) -> dict[str, Path]:
    for root in (data_dir, *(data_dir / f for f in release.folders)):
        found = {}
        for name in (n for pair in FILES.values() for n in pair):
            candidates = [root / name, root / f"{name}.gz"]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                break
            found[name] = path
        else:
            return found
    names = ", ".join(n for pair in FILES.values() for n in pair)
    raise DataNotFoundError(
        f"{release.title} was not found under {data_dir}. Expected the four IDX files {names} (optionally .gz) "
        f"in {data_dir} or {data_dir}/{release.folders[0]}; download them from {release.source}. "
        f"Point paths.data_dir at the folder that holds them.")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array of one IDX file (uint8 payload); raise DataNotFoundError if the file is not what it claims."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        header = np.frombuffer(raw[:4], dtype=">i4")[0]
        dims = header & 0xFF
        if header != magic:
            raise ValueError(f"magic number {header}, expected {magic}")
        shape = tuple(np.frombuffer(raw[4:4 + 4 * dims], dtype=">i4"))
        data = np.frombuffer(raw[4 + 4 * dims:], dtype=np.uint8)
        if data.size != int(np.prod(shape)):
            raise ValueError(f"{data.size} values for shape {shape}")
    except (OSError, EOFError, ValueError, IndexError) as err:
        raise DataNotFoundError(f"IDX file {path} is unreadable or incomplete ({err}); download it again") from err
    return data.reshape(shape)


def load_idx(release: IdxRelease, data_dir: Path, spec: DatasetSpec) -> RealData:
    paths = _find(release, data_dir)
    sets = []
    for images_name, labels_name in FILES.values():
        images = read_idx(paths[images_name], IMAGES_MAGIC)
        labels = read_idx(paths[labels_name], LABELS_MAGIC)
        sets.append(ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    return RealData(*sets)


def load_mnist(data_dir: Path, spec: DatasetSpec) -> RealData:
    return load_idx(MNIST, data_dir, spec)


def load_fashion_mnist(data_dir: Path, spec: DatasetSpec) -> RealData:
    return load_idx(FASHION_MNIST, data_dir, spec)
