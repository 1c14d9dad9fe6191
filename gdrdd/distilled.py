"""A distilled set in your own code (continual learning, architecture search, teaching): ``gdrdd.load`` and
``gdrdd.export``.

    import gdrdd
    distilled = gdrdd.load("outputs/distill/runs/<run>/distilled.pt")    # [0, 1] pixels, class-index labels
    loader = torch.utils.data.DataLoader(distilled.as_dataset(), batch_size=64, shuffle=True)
    gdrdd.export("outputs/distill/runs/<run>/distilled.pt", "distilled_png")   # distilled_png/<class>/<i>.png

``load`` returns the images in pixel space (the ``[0, 1]`` scale of the data set: normalisation, or ZCA for MTT's
ZCA runs, undone; not clamped, since distillation may move pixels past 0 and 1) or, with ``normalised=True``,
as the network inputs the run trained and evaluated on; the labels as class indices
``(N,)`` or, with ``soft=True``, as ``(N, C)`` class probabilities (one-hot for hard labels); the learned
evaluation learning rate (MTT) and the data set's facts (name, class names, normalisation). Files are read with
``torch.load(weights_only=True)``, so a crafted file cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from gdrdd.data.preprocess import Preprocess
from gdrdd.data.spec import DatasetSpec
from gdrdd.distill.parameterization import Parameterization
from gdrdd.errors import ConfigError, DistilledFileError
from gdrdd.evaluation.saved_sets import SavedSet, load_distilled
from gdrdd.utils.files import atomic_write


@dataclass(frozen=True)
class DistilledSet:
    """``images`` ``(N, ch, H, W)`` float32 (pixels on the ``[0, 1]`` scale unless ``normalised``), ``labels``
    ``(N,)`` class indices or ``(N, C)`` probabilities, in the file's (class-major) order, decoded when the run
    used multi-formation (``factor`` > 1: each stored image gives ``factor^2`` training images); ``lr``: the
    learned evaluation learning rate (MTT), else ``None``; ``config``: the run's resolved config."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    dataset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    lr: float | None
    normalised: bool
    factor: int
    config: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def as_dataset(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Dataset:
        """A ``torch.utils.data.Dataset`` of ``(image, label)`` pairs; ``transform`` is applied to each image."""
        return _TensorPairs(self.images, self.labels, transform)


class _TensorPairs(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (image if self.transform is None else self.transform(image)), self.labels[index]


def load(path: str | Path, normalised: bool = False, soft: bool = False) -> DistilledSet:
    """The distilled set of gdrdd's ``distilled.pt`` at ``path`` (see the module docstring)."""
    saved = load_distilled(path, "auto")
    if saved.format != "gdrdd" or saved.config is None:
        raise DistilledFileError(f"{path} is a {saved.format!r} file, which does not carry its data set; gdrdd.load "
                                 "reads gdrdd's distilled.pt (it records the data set and its normalisation). Score "
                                 "other tools' files with evaluate.py, which takes dataset=... for them")
    spec = saved_spec(saved)
    preprocess = Preprocess.from_state(spec, saved.zca)
    inputs, labels = Parameterization(preprocess, factor=saved.factor).decode_set(saved.images, saved.labels)
    images = inputs if normalised else preprocess.inverse(inputs)
    if soft and labels.dim() == 1:
        labels = F.one_hot(labels, spec.num_classes).float()
    return DistilledSet(images, labels, spec.class_names, spec.name, spec.mean, spec.std, saved.lr, normalised,
                        saved.factor, saved.config)


def saved_spec(saved: SavedSet) -> DatasetSpec:
    """The data set facts a gdrdd file records (its class names, and its run config's ``dataset`` group)."""
    d = saved.config["dataset"]
    names = saved.class_names or d["class_names"]
    return DatasetSpec(name=d["name"], reader=d["reader"], channels=d["channels"], resolution=d["resolution"],
                       class_names=tuple(str(c) for c in names), mean=tuple(d["mean"]), std=tuple(d["std"]),
                       dsa_strategy=d["dsa_strategy"])


def export(path: str | Path, folder: str | Path) -> Path:
    """Write the distilled set at ``path`` as PNG files, ``folder/<class name>/<index>.png`` (index within the
    class, from 0; soft labels: the most probable class), pixels rounded to 8 bits. ``folder`` must be new or
    empty: nothing already there is overwritten. Returns ``folder``."""
    folder = Path(folder).expanduser()
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"folder={str(folder)!r} is not empty; gdrdd.export writes only into a new or empty folder, "
                          "so nothing already there is overwritten. Give another folder")
    distilled = load(path)
    classes = distilled.labels if distilled.labels.dim() == 1 else distilled.labels.argmax(1)
    pixels = (distilled.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    counts: dict[int, int] = {}
    for array, label in zip(pixels, classes.tolist()):
        index = counts.get(label, 0)
        counts[label] = index + 1
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array))
        target = folder / distilled.class_names[label] / f"{index:04d}.png"
        atomic_write(target, lambda tmp, image=image: image.save(tmp, format="PNG"))
    return folder
