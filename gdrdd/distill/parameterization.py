"""How the learnable tensors become training images: multi-formation (IDC, Kim et al. 2022) and the space the
tensors are stored in.

Multi-formation with factor ``f``: each stored image ``(ch, H, W)`` is split into ``f x f`` tiles of
``ceil(H / f)`` pixels (the image padded at its bottom and right with grey, 0.5 in pixel space, when ``f`` does
not divide ``H``), and every tile is resized back to ``H x W`` (bilinear), so the IPC stored images of a class
train as ``IPC * f^2`` images of that class. ``f = 1`` leaves the images as they are. Decoded images are
tile-major within a class (every stored image's tile (0, 0), then every tile (0, 1), ...), as IDC orders them.

Storage: ``pixels=True`` keeps the learnable tensors in ``[0, 1]`` pixel space (IDC's; the synthetic learning
rate then acts on pixels, and ``project_`` clamps them to ``[0, 1]``), mapped to network inputs by the data set's
preprocessing before decoding; otherwise they are network inputs already (the other methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdrdd.data.preprocess import Preprocess

GREY = 0.5  # pixel value of the padding when the factor does not divide the image size
MIN_TILE = 4  # pixels: smaller tiles are refused


def tile_size(size: int, factor: int) -> int:
    return math.ceil(size / factor)


def decode(images: torch.Tensor, factor: int, pad: torch.Tensor | float = GREY) -> torch.Tensor:
    """``(N, ch, H, W)`` stored images -> ``(f^2 * N, ch, H, W)`` decoded, tile-major. ``pad`` is the padding value
    in the images' space (a ``(ch,)`` tensor for network inputs: the preprocessed grey)."""
    if factor == 1:
        return images
    n, ch, h, w = images.shape
    s = tile_size(h, factor)
    missing = s * factor - h
    if missing:
        canvas = images.new_empty(n, ch, s * factor, s * factor)
        canvas[:] = torch.as_tensor(pad, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
        canvas[:, :, :h, :w] = images
        images = canvas
    tiles = [images[:, :, i * s:(i + 1) * s, j * s:(j + 1) * s] for i in range(factor) for j in range(factor)]
    return F.interpolate(torch.cat(tiles), size=(h, w), mode="bilinear", align_corners=False)


def decode_labels(labels: torch.Tensor, factor: int) -> torch.Tensor:
    """The labels of ``decode``'s output: ``labels`` repeated ``f^2`` times, tile-major."""
    return labels.repeat(factor ** 2, *[1] * (labels.dim() - 1))


def mosaic(sources: torch.Tensor, factor: int) -> torch.Tensor:
    """IDC's initialisation for ``f > 1``: ``(f^2 * n, ch, H, W)`` real images -> ``(n, ch, H, W)`` stored images,
    tile ``k`` (row-major) of stored image ``i`` being source ``k * n + i`` shrunk (nearest) to the tile. Tiles are
    ``H // f`` pixels, the first ``H % f`` rows and columns of tiles one pixel more."""
    if factor == 1:
        return sources
    total, ch, h, w = sources.shape
    n = total // factor ** 2
    out = sources.new_empty(n, ch, h, w)
    sizes = [h // factor + (1 if i < h % factor else 0) for i in range(factor)]
    starts = [sum(sizes[:i]) for i in range(factor)]
    for k in range(factor ** 2):
        i, j = divmod(k, factor)
        part = F.interpolate(sources[k * n:(k + 1) * n], size=(sizes[i], sizes[j]), mode="nearest")
        out[:, :, starts[i]:starts[i] + sizes[i], starts[j]:starts[j] + sizes[j]] = part
    return out


@dataclass
class Parameterization:
    """The map from the stored tensors ``(C, ipc, ch, H, W)`` (class-major) to training images
    ``(C, ipc * f^2, ch, H, W)`` network inputs."""

    preprocess: Preprocess | None = None  # needed for pixel storage and for f > 1 (the grey padding)
    factor: int = 1
    pixels: bool = False

    def __post_init__(self) -> None:
        if (self.pixels or self.factor > 1) and self.preprocess is None:
            raise ValueError("pixel storage and multi-formation need the data set's preprocessing")
        if self.factor > 1 and self.preprocess.zca is not None:
            raise ValueError("multi-formation needs per-channel normalisation: ZCA whitening mixes pixels across "
                             "the tiles; use dataset.zca=false or factor 1")

    def per_class(self, ipc: int) -> int:
        """Training images per class from ``ipc`` stored ones."""
        return ipc * self.factor ** 2

    def inputs(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored tensors ``(N, ch, H, W)`` as network inputs, not decoded."""
        return self.preprocess(stored) if self.pixels else stored

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """``(C, ipc, ch, H, W)`` stored -> ``(C, ipc * f^2, ch, H, W)`` network inputs (differentiable)."""
        c, ipc = stored.shape[:2]
        x = self.inputs(stored.flatten(0, 1))
        if self.factor == 1:
            return x.unflatten(0, (c, ipc))
        decoded = decode(x, self.factor, self._grey(x)).unflatten(0, (self.factor ** 2, c, ipc))
        return decoded.transpose(0, 1).flatten(1, 2)

    def decode_set(self, stored: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A saved set: ``(N, ch, H, W)`` stored and ``(N,)`` or ``(N, C)`` labels -> the ``N * f^2`` network inputs
        and their labels, class by class (in order of the hard label, ``argmax`` of soft ones), tile-major within
        a class: for a class-major set of IPC per class, ``decode``'s order exactly."""
        x = self.inputs(stored)
        if self.factor == 1:
            return x, labels
        hard = labels if labels.dim() == 1 else labels.argmax(1)
        parts = [(decode(x[hard == c], self.factor, self._grey(x)), decode_labels(labels[hard == c], self.factor))
                 for c in hard.unique().tolist()]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _grey(self, like: torch.Tensor) -> torch.Tensor:
        """The padding grey as network inputs, ``(ch,)``."""
        return self.preprocess(torch.full((1, like.shape[1], 1, 1), GREY, device=like.device)).flatten()

    def project_(self, stored: torch.Tensor) -> None:
        """Keep pixel-space tensors in ``[0, 1]`` (in place; nothing for network-input storage)."""
        if self.pixels:
            with torch.no_grad():
                stored.clamp_(0, 1)
