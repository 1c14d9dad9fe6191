"""A distilled set in your own code (continual learning, architecture search, teaching): ``gdrdd.load`` and
``gdrdd.export``.

    import gdrdd
    distilled = gdrdd.load("outputs/distill/runs/<run>/distilled.pt")    # [0, 1] pixels, class-index labels
    loader = torch.utils.data.DataLoader(distilled.as_dataset(), batch_size=64, shuffle=True)
    gdrdd.export("outputs/distill/runs/<run>/distilled.pt", "distilled_png")   # distilled_png/<class>/<i>.png
    gdrdd.export("outputs/distill/runs/<run>/distilled.pt", "distilled_hf", format="hf")  # datasets.load_dataset

``load`` returns the images in pixel space (the ``[0, 1]`` scale of the data set: normalisation, or ZCA for MTT's
ZCA runs, undone; not clamped, since distillation may move pixels past 0 and 1) or, with ``normalised=True``,
as the network inputs the run trained and evaluated on; the labels as class indices
``(N,)`` or soft labels ``(N, C)`` as the file holds them (``label_kind``: probabilities, or logits as DATM
learns them) or, with ``soft=True``, as ``(N, C)`` class probabilities (one-hot for hard labels, softmax of
logits); the learned evaluation learning rate (MTT) and the data set's facts (name, class names,
normalisation). Files are read with ``torch.load(weights_only=True)``, so a crafted file cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from gdrdd import __version__
from gdrdd.data.preprocess import Preprocess
from gdrdd.data.spec import DatasetSpec
from gdrdd.distill.parameterization import Parameterization
from gdrdd.errors import ConfigError, DistilledFileError
from gdrdd.evaluation.image_datasets import write_hf, write_imagefolder
from gdrdd.evaluation.labels import as_probabilities
from gdrdd.evaluation.saved_sets import SavedSet, load_distilled
from gdrdd.robust.objective import describe


@dataclass(frozen=True)
class DistilledSet:
    """``images`` ``(N, ch, H, W)`` float32 (pixels on the ``[0, 1]`` scale unless ``normalised``), ``labels``
    ``(N,)`` class indices or ``(N, C)`` soft labels of ``label_kind`` (``hard``, ``probabilities``, ``logits``;
    ``gdrdd.evaluation.labels``), in the file's (class-major) order, decoded when the run
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
    label_kind: str = "hard"

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
    return _distilled_set(*_decoded(path), normalised=normalised, soft=soft)


def _distilled_set(saved: SavedSet, spec: DatasetSpec, preprocess: Preprocess, inputs: torch.Tensor,
                   labels: torch.Tensor, normalised: bool, soft: bool) -> DistilledSet:
    """``load``'s result from a file's decoded pieces (``_decoded``)."""
    images = inputs if normalised else preprocess.inverse(inputs)
    kind = saved.label_kind
    if soft:
        labels, kind = as_probabilities(labels, kind, spec.num_classes), "probabilities"
    return DistilledSet(images, labels, spec.class_names, spec.name, spec.mean, spec.std, saved.lr, normalised,
                        saved.factor, saved.config, kind)


def _decoded(path: str | Path) -> tuple[SavedSet, DatasetSpec, Preprocess, torch.Tensor, torch.Tensor]:
    """gdrdd's file at ``path`` read once: what it records, its data set's facts and preprocessing, and its
    decoded network inputs ``(N, ch, H, W)`` with their labels."""
    saved = load_distilled(path, "auto")
    if saved.format != "gdrdd" or saved.config is None:
        raise DistilledFileError(f"{path} is a {saved.format!r} file, which does not carry its data set; gdrdd.load "
                                 "reads gdrdd's distilled.pt (it records the data set and its normalisation). Score "
                                 "other tools' files with evaluate.py, which takes dataset=... for them")
    spec = saved_spec(saved)
    preprocess = Preprocess.from_state(spec, saved.zca)
    inputs, labels = Parameterization(preprocess, factor=saved.factor).decode_set(saved.images, saved.labels)
    return saved, spec, preprocess, inputs, labels


def saved_spec(saved: SavedSet) -> DatasetSpec:
    """The data set facts a gdrdd file records (its class names, and its run config's ``dataset`` group)."""
    d = saved.config["dataset"]
    names = saved.class_names or d["class_names"]
    return DatasetSpec(name=d["name"], reader=d["reader"], channels=d["channels"], resolution=d["resolution"],
                       class_names=tuple(str(c) for c in names), mean=tuple(d["mean"]), std=tuple(d["std"]),
                       dsa_strategy=d["dsa_strategy"])


EXPORT_FORMATS = ("imagefolder", "hf")


def export(path: str | Path, folder: str | Path, format: str = "imagefolder") -> Path:
    """Write the distilled set at ``path`` for sharing (``gdrdd.evaluation.image_datasets``): ``imagefolder``,
    PNG class folders ``folder/<class name>/<index>.png`` (index within the class, from 0; soft labels: the most
    probable class; pixels rounded to 8 bits) that torchvision's ``ImageFolder`` reads; ``hf``, a folder that
    ``datasets.load_dataset(folder)`` reads (image, label and, for soft labels, soft_label columns, the exact
    network inputs, a dataset card with the method, IPC, objective, data set and scores). ``folder`` must be new
    or empty: nothing already there is overwritten. Returns ``folder``."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format={format!r} is not valid; accepted: {', '.join(EXPORT_FORMATS)}")
    folder = Path(folder).expanduser()
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"folder={str(folder)!r} is not empty; gdrdd.export writes only into a new or empty folder, "
                          "so nothing already there is overwritten. Give another folder")
    decoded = _decoded(path)
    distilled = _distilled_set(*decoded, normalised=False, soft=False)
    if format == "imagefolder":
        return write_imagefolder(folder, distilled.images, distilled.labels, distilled.class_names)
    inputs = decoded[3]  # the exact network inputs (pixels mapped back would differ in the last bits)
    labels = as_probabilities(distilled.labels, distilled.label_kind, distilled.num_classes) \
        if distilled.label_kind != "hard" else distilled.labels
    meta = {"dataset": distilled.config["dataset"], "lr": distilled.lr, "gdrdd_version": __version__,
            "labels": "hard" if labels.dim() == 1 else "probabilities",
            "inputs": "the network inputs the run trained and scored on (its normalisation), decoded"}
    return write_hf(folder, distilled.images, inputs, labels, distilled.class_names, meta,
                    dataset_card(distilled, Path(path).expanduser().parent / "table.md"))


def dataset_card(distilled: DistilledSet, table: Path) -> str:
    """The Markdown body of a shared set's dataset card: what it is, how it was made, and its scores (the run's
    ``table.md`` when it is beside the file)."""
    config = distilled.config
    per_class = len(distilled) // max(distilled.num_classes, 1)
    scores = table.read_text() if table.is_file() else "Not scored with the run (no table.md beside the file).\n"
    return (f"# {distilled.dataset}, distilled by gdrdd ({config['method']['name']}, IPC {config['ipc']})\n\n"
            f"A distilled image set: {len(distilled)} synthetic images ({per_class} per class"
            f"{f', decoded from multi-formation factor {distilled.factor}' if distilled.factor > 1 else ''}) of the "
            f"{distilled.num_classes} classes of {distilled.dataset}, made by gdrdd {__version__}.\n\n"
            f"- method: {config['method']['name']}\n- images per class (IPC): {config['ipc']}\n"
            f"- objective: {describe(config['cvar'])}\n- data set: {distilled.dataset}\n"
            f"- iterations: {config.get('iterations')}\n"
            f"- learned evaluation learning rate: {distilled.lr if distilled.lr is not None else 'none'}\n\n"
            "Columns: `image` (8-bit PNG), `label` (class), `inputs` (the exact float32 network inputs the run "
            "trained and scored on)" + (", `soft_label` (class probabilities)" if distilled.labels.dim() == 2 else "")
            + ".\n\n## Scores\n\n" + scores)
