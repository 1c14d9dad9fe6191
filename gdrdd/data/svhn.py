"""SVHN (cropped digits) as released: ``train_32x32.mat`` and ``test_32x32.mat`` under ``data_dir`` or
``data_dir/svhn``. Each holds ``X`` ``(32, 32, 3, N)`` uint8 and ``y`` ``(N, 1)`` with labels 1..10, where
10 is the digit 0 (mapped to label 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gdrdd.data.spec import DatasetSpec, ImageSet, RealData
from gdrdd.errors import DataNotFoundError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SOURCE = "http://ufldl.stanford.edu/housenumbers/"


def load_svhn(data_dir: Path, spec: DatasetSpec) -> RealData:
    from scipy.io import loadmat

    root = next((r for r in (data_dir, data_dir / "svhn") if all((r / f).is_file() for f in FILES.values())), None)
    if root is None:
        raise DataNotFoundError(
            f"SVHN was not found under {data_dir}. Expected {', '.join(FILES.values())} in {data_dir} or "
            f"{data_dir}/svhn; download them from {SOURCE} (format 2, cropped digits). "
            f"Point paths.data_dir at the folder that holds them.")
    sets = []
    for name in FILES.values():
        try:
            mat = loadmat(root / name)
            images = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1), dtype=np.uint8)
            labels = mat["y"].reshape(-1).astype(np.int64) % 10
        except (OSError, KeyError, ValueError) as err:
            raise DataNotFoundError(f"SVHN file {root / name} is unreadable or incomplete ({err!r}); "
                                    f"download it again from {SOURCE}") from err
        sets.append(ImageSet(torch.from_numpy(images), torch.from_numpy(labels)))
    return RealData(*sets)
