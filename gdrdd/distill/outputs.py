"""The distilled set on disk: ``distilled.pt`` and its image grid ``distilled.png``, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from gdrdd import __version__
from gdrdd.data.spec import DatasetSpec
from gdrdd.utils.files import atomic_write


def save_distilled(path: str | Path, images: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec,
                   config: dict[str, Any], extra: dict[str, Any] | None = None, label_kind: str = "hard") -> Path:
    """``distilled.pt``: the stored images as network inputs ``(N, ch, H, W)`` (with multi-formation the compact
    ones: ``extra['factor']`` > 1, decoded by ``gdrdd.distill.parameterization``), labels ``(N,)`` class indices or
    ``(N, C)`` soft labels and their ``label_kind`` (``hard``, ``probabilities``, ``logits``;
    ``gdrdd.evaluation.labels``), the normalisation, class names, the resolved config and the gdrdd version. Only
    tensors and plain containers, so it loads with ``torch.load(path, weights_only=True)``."""
    soft = labels.dim() == 2
    if (label_kind == "hard") == soft:
        raise ValueError(f"label_kind={label_kind!r} does not fit labels of shape {tuple(labels.shape)}")
    blob = {
        "images": images.detach().cpu().float(),
        "labels": labels.detach().cpu().float() if soft else labels.detach().cpu().long(),
        "label_kind": label_kind,
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
