"""Reading a distilled set saved by gdrdd or by another tool, for ``evaluate.py``.

Formats (``format=auto`` tells them apart):

- ``gdrdd``: gdrdd's ``distilled.pt`` (a dict with ``images``, ``labels``, ``config``; maybe ``learned_lr``);
  it carries its data set, so no data set flag is needed.
- ``pair``: one file holding ``(images, labels)`` or ``(images, labels, lr)`` saved with ``torch.save``, or
  a folder of MTT's and DATM's saved sets, ``images_<tag>.pt``, ``labels_<tag>.pt`` and optionally
  ``lr_<tag>.pt``, the tag ``best`` or an iteration (``iteration`` picks one; default ``best`` if saved, else the
  last iteration). DATM's ``labels_<it>.pt`` are logits (``gdrdd.evaluation.labels``).
- ``dc``: the result file of the original DC/DSA/DM code, ``{"data": [[images, labels], ...], ...}`` with one
  pair per experiment (``exp`` picks one).
- ``idc``: IDC's ``data.pt``, ``[images, labels]`` with the images in ``[0, 1]`` pixel space and not yet decoded
  (``factor`` gives its multi-formation factor); never chosen by ``auto``, which reads such a list as ``pair``.
- ``hf``: a Hugging Face dataset folder (``gdrdd.export(..., format="hf")``, or another tool's, saved with
  ``save_to_disk`` or as data files ``datasets.load_dataset`` reads); ``imagefolder``: class folders of image
  files (``gdrdd.export``'s default, torchvision's ``ImageFolder`` layout). ``gdrdd.evaluation.image_datasets``.

Images are otherwise network inputs as the tool saved them (normalised, ZCA-whitened for MTT's ZCA runs): set
the data set and ``dataset.zca`` to match when the file does not carry them. Labels are class indices ``(N,)``
or soft labels ``(N, C)``, probabilities or logits (``label_kind``: gdrdd's files record it, others are read as
``labels`` says, ``auto`` by default). gdrdd's files record their multi-formation factor; for the others
``factor`` says it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdrdd.errors import DistilledFileError
from gdrdd.evaluation.image_datasets import is_hf_folder, is_imagefolder, read_hf, read_imagefolder
from gdrdd.evaluation.labels import resolve_kind

FORMATS = ("auto", "gdrdd", "pair", "dc", "idc", "hf", "imagefolder")
PAIR_FILES = ("images_best.pt", "labels_best.pt", "lr_best.pt")
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # NumPy 2 / NumPy 1
# NumPy scalars as pickled by NumPy 2 (numpy._core...) and by NumPy 1 (numpy.core..., as old DC result files hold).
NUMPY_SCALARS = [_NUMPY_CORE.multiarray.scalar, (_NUMPY_CORE.multiarray.scalar, "numpy.core.multiarray.scalar"),
                 np.dtype, *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)}]


@dataclass
class SavedSet:
    """A distilled set as a tool saved it: ``images`` ``(N, ch, H, W)`` network inputs, ``labels`` ``(N,)`` or
    ``(N, C)``, its learned ``lr`` if any; for gdrdd's files also the run ``config``, the ``zca`` state and the
    ``class_names``."""

    images: torch.Tensor
    labels: torch.Tensor
    lr: float | None = None
    config: dict[str, Any] | None = None  # gdrdd's resolved run config, when the file carries one
    format: str = "pair"
    zca: dict[str, Any] | None = None  # gdrdd's ZCA tensors (Preprocess.state), when the run whitened
    class_names: list[str] | None = None
    factor: int = 1  # multi-formation factor of the stored images (1: they train as they are)
    pixels: bool = False  # images in [0, 1] pixel space (IDC's data.pt), not network inputs
    label_kind: str = "auto"  # hard | probabilities | logits (gdrdd.evaluation.labels); auto: not recorded


def load_distilled(path: str | Path, fmt: str = "auto", exp: int = 0, factor: int = 1, labels: str = "auto",
                   iteration: str | int | None = None) -> SavedSet:
    """Read ``path`` with ``torch.load(weights_only=True)``: tensors, plain containers and NumPy scalars (which
    the DC result files hold) only, so a crafted pickle cannot run code. ``labels``: the kind of soft labels
    (``auto``, ``probabilities``, ``logits``; a file that records its kind keeps it unless this says otherwise);
    ``iteration``: which saved set of an MTT/DATM folder."""
    saved = _load(Path(path).expanduser(), fmt, exp, factor, iteration)
    declared = labels if labels != "auto" else saved.label_kind  # the command line, else what the file records
    return replace(saved, label_kind=resolve_kind(saved.labels, declared))


def _load(path: Path, fmt: str, exp: int, factor: int, iteration: str | int | None) -> SavedSet:
    if fmt not in FORMATS:
        raise DistilledFileError(f"format={fmt!r} is unknown; accepted: {', '.join(FORMATS)}")
    if path.is_dir():
        return replace(_folder(path, fmt, iteration), factor=factor)
    if not path.is_file():
        raise DistilledFileError(f"path={str(path)!r} does not exist; give a distilled.pt file, a saved "
                                 f"(images, labels[, lr]) file, a DC-style result file, or a folder with "
                                 f"{PAIR_FILES[0]} and {PAIR_FILES[1]}")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise DistilledFileError(f"{path} is not a readable distilled set: it is truncated, or it pickles more "
                                 f"than tensors, plain containers and NumPy scalars "
                                 f"({str(err).splitlines()[0]})") from err
    if isinstance(blob, dict) and "images" in blob and "labels" in blob and fmt in ("auto", "gdrdd"):
        saved = _checked(blob["images"], blob["labels"], blob.get("learned_lr"), blob.get("config"), "gdrdd", path)
        return replace(saved, zca=blob.get("zca"), class_names=blob.get("class_names"),
                       factor=int(blob.get("factor", 1)), label_kind=blob.get("label_kind", "auto"))
    if isinstance(blob, dict) and "data" in blob and fmt in ("auto", "dc"):
        runs = blob["data"]
        if not 0 <= exp < len(runs):
            raise DistilledFileError(f"exp={exp} is out of range: {path} holds {len(runs)} experiments "
                                     f"(0..{len(runs) - 1})")
        images, labels = runs[exp][:2]
        return replace(_checked(images, labels, None, None, "dc", path), factor=factor)
    if isinstance(blob, (list, tuple)) and len(blob) == 2 and fmt == "idc":
        return replace(_checked(blob[0], blob[1], None, None, "idc", path), factor=factor, pixels=True)
    if isinstance(blob, (list, tuple)) and len(blob) in (2, 3) and fmt in ("auto", "pair"):
        return replace(_checked(blob[0], blob[1], blob[2] if len(blob) == 3 else None, None, "pair", path),
                       factor=factor)
    raise DistilledFileError(f"{path} is not a distilled set in a known format (format={fmt}): expected gdrdd's "
                             "distilled.pt dict, an (images, labels[, lr]) sequence, or a DC-style dict with 'data'")


def _folder(folder: Path, fmt: str, iteration: str | int | None) -> SavedSet:
    """A folder: MTT/DATM's saved sets, a Hugging Face dataset, or class folders of images."""
    if fmt in ("auto", "pair") and saved_tags(folder):
        return _pair_folder(folder, iteration)
    if fmt in ("auto", "hf") and is_hf_folder(folder):
        return _checked_fields(read_hf(folder), "hf", folder)
    if fmt in ("auto", "imagefolder") and is_imagefolder(folder):
        return _checked_fields(read_imagefolder(folder), "imagefolder", folder)
    if fmt == "pair":
        return _pair_folder(folder, iteration)  # names the missing files
    raise DistilledFileError(f"folder {folder} is not a distilled set in a known layout (format={fmt}): expected "
                             f"{PAIR_FILES[0]} and {PAIR_FILES[1]} (MTT/DATM), a Hugging Face dataset (data files or "
                             "save_to_disk output), or class folders of images (ImageFolder)")


def _checked_fields(fields: dict[str, Any], fmt: str, source: Path) -> SavedSet:
    saved = _checked(fields["images"], fields["labels"], fields.get("lr"), fields.get("config"), fmt, source)
    return replace(saved, class_names=fields.get("class_names"), pixels=fields.get("pixels", False),
                   label_kind=fields.get("label_kind", "auto"))


def saved_tags(folder: Path) -> list[str]:
    """The tags ``<tag>`` of the ``images_<tag>.pt`` files in ``folder`` that have ``labels_<tag>.pt`` beside them:
    ``best`` first, then the iterations in increasing order."""
    tags = [f.stem[len("images_"):] for f in folder.glob("images_*.pt")]
    tags = [t for t in tags if (folder / f"labels_{t}.pt").is_file()]
    return sorted(tags, key=lambda t: (t != "best", int(t) if t.isdigit() else -1, t))


def _pair_folder(folder: Path, iteration: str | int | None = None) -> SavedSet:
    tags = saved_tags(folder)
    if not tags:
        raise DistilledFileError(f"folder {folder} lacks {PAIR_FILES[0]} and {PAIR_FILES[1]} (MTT/DATM layout: "
                                 "images_<best or iteration>.pt with labels_<same>.pt)")
    tag = str(iteration) if iteration is not None else "best" if "best" in tags else tags[-1]
    if tag not in tags:
        raise DistilledFileError(f"iteration={iteration} is not saved in {folder}; accepted: {', '.join(tags)}")
    images, labels, lr = (folder / f"{kind}_{tag}.pt" for kind in ("images", "labels", "lr"))

    def load(path: Path) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise DistilledFileError(f"{path} is unreadable ({str(err).splitlines()[0]})") from err

    return _checked(load(images), load(labels), load(lr) if lr.is_file() else None, None, "pair", folder)


def _checked(images: Any, labels: Any, lr: Any, config: dict | None, fmt: str, source: Path) -> SavedSet:
    if not (isinstance(images, torch.Tensor) and images.dim() == 4):
        raise DistilledFileError(f"{source}: images must be a (N, ch, H, W) tensor, got {type(images).__name__}"
                                 + (f" {tuple(images.shape)}" if isinstance(images, torch.Tensor) else ""))
    if not (isinstance(labels, torch.Tensor) and labels.shape[0] == images.shape[0] and labels.dim() in (1, 2)):
        raise DistilledFileError(f"{source}: labels must be (N,) class indices or (N, C) soft labels for "
                                 f"{images.shape[0]} images")
    labels = labels.long() if labels.dim() == 1 else labels.float()
    lr_value = float(lr) if lr is not None else None
    return SavedSet(images.detach().float(), labels, lr_value, config, fmt)
