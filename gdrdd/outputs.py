"""What a run writes: the distilled set, its image grid, metrics. Every file is written atomically
(temporary file, then rename), so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from PIL import Image

from gdrdd import __version__

if TYPE_CHECKING:  # gdrdd.data imports this module (atomic writes of its caches)
    from gdrdd.data.spec import DatasetSpec


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_distilled(path: str | Path, images: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec,
                   config: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """``distilled.pt``: normalised images ``(N, ch, H, W)``, labels ``(N,)``, the normalisation, class names,
    the resolved config and the gdrdd version. Only tensors and plain containers, so it loads with
    ``torch.load(path, weights_only=True)``."""
    blob = {
        "images": images.detach().cpu().float(),
        "labels": labels.detach().cpu().long(),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "dataset": spec.name,
        "class_names": list(spec.class_names),
        "config": config,
        "gdrdd_version": __version__,
        **(extra or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def save_image_grid(path: str | Path, images01: torch.Tensor, per_row: int, pad: int = 2, scale: int = 2) -> Path:
    """PNG grid of ``images01`` ``(N, ch, H, W)`` in [0, 1], ``per_row`` images a row (one class per row)."""
    x = images01.detach().cpu().clamp(0, 1)
    n, ch, h, w = x.shape
    rows = (n + per_row - 1) // per_row
    grid = torch.ones(ch, rows * (h + pad) + pad, per_row * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, per_row)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    array = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(array[..., 0] if ch == 1 else array)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
