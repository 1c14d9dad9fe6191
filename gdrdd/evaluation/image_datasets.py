"""Distilled sets shared as image datasets, written and read: a torchvision ``ImageFolder`` tree and a Hugging Face
dataset folder.

- ``imagefolder``: ``<folder>/<class name>/<index>.png`` (index within the class, from 0), 8-bit pixels clamped to
  ``[0, 1]``; soft labels go to their most probable class. torchvision's ``ImageFolder`` reads it (it numbers the
  class folders alphabetically: map them with its ``class_to_idx``; gdrdd's reader maps them by name).
- ``hf``: ``<folder>/data/train-00000-of-00001.parquet``, a ``README.md`` dataset card (its front matter names the
  data files, so ``datasets.load_dataset(<folder>)`` reads the split ``train``) and ``gdrdd.json``. Columns:
  ``image`` (PNG, as ``imagefolder``), ``label`` (a ``ClassLabel`` with the class names; soft labels: the most
  probable class), ``soft_label`` (the ``(C,)`` probabilities, softmax of logits, only for a set with soft
  labels) and ``inputs``
  (the exact float32 network inputs the run trained and scored on, so a round trip loses nothing).
  ``gdrdd.json`` records the data set group, the learned learning rate and the gdrdd version.

Reading (``evaluate.py``): a gdrdd ``hf`` folder gives its exact ``inputs`` and data set; another tool's Hugging
Face dataset, saved with ``save_to_disk`` or as Parquet data files (``data/train-*.parquet``), and an
``ImageFolder`` tree give ``[0, 1]`` pixels (``SavedSet.pixels``), labelled by the class names they carry
(``align_labels``). The ``datasets`` package is needed for ``hf`` only (``pip install "gdrdd[hf]"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gdrdd.errors import DistilledFileError
from gdrdd.evaluation.labels import hard_labels
from gdrdd.utils.files import atomic_write, write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
HF_PARQUET = "data/train-00000-of-00001.parquet"
GDRDD_META = "gdrdd.json"
CARD_FRONT_MATTER = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
tags:
- dataset-distillation
- gdrdd
---
"""


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """One image ``(ch, H, W)`` on the ``[0, 1]`` scale as an 8-bit PIL image (clamped, rounded)."""
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array))


def from_pil(image: Image.Image) -> torch.Tensor:
    """``(ch, H, W)`` float32 pixels in ``[0, 1]``: 1 channel for grey images, 3 for any other mode."""
    image = image.convert("L" if image.mode in ("L", "1", "I;16", "I") else "RGB")
    array = torch.from_numpy(np.array(image, dtype=np.uint8)).float().div(255)
    return array.unsqueeze(0) if array.dim() == 2 else array.permute(2, 0, 1)


def write_imagefolder(folder: Path, pixels: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]) -> Path:
    """``folder/<class name>/<index>.png`` for ``pixels`` ``(N, ch, H, W)`` on the ``[0, 1]`` scale."""
    counts: dict[int, int] = {}
    for image, label in zip(pixels, hard_labels(labels).tolist()):
        index = counts.get(label, 0)
        counts[label] = index + 1
        png = to_pil(image)
        atomic_write(folder / class_names[label] / f"{index:04d}.png", lambda tmp, png=png: png.save(tmp, format="PNG"))
    return folder


def write_hf(folder: Path, pixels: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
             class_names: tuple[str, ...], meta: dict[str, Any], card: str) -> Path:
    """The ``hf`` folder (module docstring) of ``pixels`` (``[0, 1]`` scale) and ``inputs`` (network inputs), both
    ``(N, ch, H, W)``; ``meta`` goes to ``gdrdd.json``, ``card`` below the card's front matter."""
    datasets = _datasets()
    columns: dict[str, Any] = {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names)),
                               "inputs": datasets.Array3D(shape=tuple(inputs.shape[1:]), dtype="float32")}
    rows: dict[str, list] = {"image": [to_pil(x) for x in pixels], "label": hard_labels(labels).tolist(),
                             "inputs": list(inputs.float().numpy())}
    if labels.dim() == 2:
        columns["soft_label"] = datasets.List(datasets.Value("float32"))
        rows["soft_label"] = labels.float().tolist()
    table = datasets.Dataset.from_dict(rows, features=datasets.Features(columns))
    target = folder / HF_PARQUET
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: table.to_parquet(str(tmp)))
    write_text(folder / GDRDD_META, json.dumps(meta, indent=2) + "\n")
    write_text(folder / "README.md", CARD_FRONT_MATTER + card)
    return folder


def is_hf_folder(folder: Path) -> bool:
    """A folder ``datasets`` reads: ``save_to_disk`` output, or data files with a card or under ``data/``."""
    return any((folder / name).is_file() for name in ("state.json", "dataset_dict.json")) or \
        any(folder.glob("data/*.parquet")) or any(folder.glob("*.parquet"))


def is_imagefolder(folder: Path) -> bool:
    """Class folders holding image files."""
    return any(p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()) for p in folder.iterdir())


def read_imagefolder(folder: Path) -> dict[str, Any]:
    """An ``ImageFolder`` tree as ``SavedSet`` fields: ``[0, 1]`` pixels, labels indexing ``class_names`` (the class
    folders, sorted)."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels = [], []
    for index, name in enumerate(classes):
        for file in sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(file) as image:
                images.append(from_pil(image))
            labels.append(index)
    if not images:
        raise DistilledFileError(f"{folder} holds no images in class folders (<class>/<image>{IMAGE_SUFFIXES[0]})")
    return {"images": _stacked(images, folder), "labels": torch.tensor(labels), "class_names": classes, "pixels": True,
            "label_kind": "hard"}


def read_hf(folder: Path) -> dict[str, Any]:
    """A Hugging Face dataset folder as ``SavedSet`` fields: gdrdd's own (``gdrdd.json`` beside it) gives its exact
    network inputs, learned lr and data set; another tool's gives the ``[0, 1]`` pixels of its image column."""
    table = _load_table(folder)
    image_column = _column(table, "image", ("image", "img"), "Image")
    label_column = _column(table, "label", ("label", "labels"), "ClassLabel")
    feature = table.features[label_column]
    class_names = list(feature.names) if hasattr(feature, "names") else None
    labels, kind = torch.tensor(table[label_column]), "hard"
    if "soft_label" in table.column_names:  # written as probabilities (gdrdd's export); another tool's: inferred
        labels, kind = torch.tensor(np.array(table["soft_label"], dtype=np.float32)), "auto"
    meta_file = folder / GDRDD_META
    if meta_file.is_file() and "inputs" in table.column_names:
        meta = json.loads(meta_file.read_text())
        inputs = torch.from_numpy(np.array(table.with_format("numpy")["inputs"], dtype=np.float32))
        return {"images": inputs, "labels": labels, "lr": meta.get("lr"), "config": {"dataset": meta["dataset"]},
                "class_names": class_names, "label_kind": meta.get("labels", kind)}
    images = _stacked([from_pil(image) for image in table[image_column]], folder)
    return {"images": images, "labels": labels, "class_names": class_names, "pixels": True, "label_kind": kind}


def align_labels(labels: torch.Tensor, names: list[str] | None, dataset_names: tuple[str, ...],
                 source: str) -> torch.Tensor:
    """Labels indexing the file's class ``names`` re-indexed to the data set's class order, matched by name (a
    file whose names are the class indices ``0, 1, ...`` keeps them). Soft labels ``(N, C)`` are reordered too."""
    if names is None or list(names) == list(dataset_names):
        return labels
    if all(n.isdigit() for n in names):
        order = [int(n) for n in names]
    else:
        unknown = [n for n in names if n not in dataset_names]
        if unknown:
            raise DistilledFileError(f"{source} names classes {unknown[:5]} that the data set does not have; "
                                     f"accepted: its class names ({', '.join(dataset_names[:10])}"
                                     f"{', ...' if len(dataset_names) > 10 else ''}) or the class indices")
        order = [dataset_names.index(n) for n in names]
    if labels.dim() == 1:
        return torch.tensor(order)[labels]
    aligned = labels.new_zeros(len(labels), len(dataset_names))
    aligned[:, order] = labels
    return aligned


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DistilledFileError("the Hugging Face format needs the datasets package; install it with "
                                 "pip install \"gdrdd[hf]\" (or pip install datasets)") from None
    datasets.disable_progress_bars()
    return datasets


def _load_table(folder: Path):
    """The split ``train`` (else the first) of the dataset in ``folder``: ``save_to_disk`` output through
    ``load_from_disk``; data files (Parquet) read directly, not through ``load_dataset``'s cache, which can serve an
    earlier folder of the same name."""
    datasets = _datasets()
    try:
        if any((folder / name).is_file() for name in ("state.json", "dataset_dict.json")):
            table = datasets.load_from_disk(str(folder))
            if isinstance(table, datasets.DatasetDict):
                table = table["train" if "train" in table else next(iter(table))]
            return table
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted(folder.glob("data/*.parquet")) or sorted(folder.glob("*.parquet"))
        files = [f for f in files if f.name.startswith("train")] or files
        return datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))
    except Exception as err:  # the package's own errors differ by version; name the folder and the cause
        raise DistilledFileError(f"{folder} is not a readable Hugging Face dataset ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from err


def _column(table, role: str, names: tuple[str, ...], feature_type: str) -> str:
    """The column of ``role``: the first with one of ``names``, else the first of ``feature_type``."""
    for name in names:
        if name in table.column_names:
            return name
    for name, feature in table.features.items():
        if type(feature).__name__ == feature_type:
            return name
    raise DistilledFileError(f"the Hugging Face dataset has no {role} column (columns: "
                             f"{', '.join(table.column_names)}; accepted: {' or '.join(names)}, or a {feature_type} "
                             "feature)")


def _stacked(images: list[torch.Tensor], source: Path) -> torch.Tensor:
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1:
        raise DistilledFileError(f"{source} holds images of several sizes {sorted(shapes)[:3]}; a distilled set "
                                 "has one size")
    return torch.stack(images)
