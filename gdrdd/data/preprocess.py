"""Pixels <-> network inputs: per-channel normalisation, then optional ZCA whitening (MTT's preprocessing).

``Preprocess(pixels)`` maps uint8 or [0, 1] images ``(N, ch, H, W)`` to network inputs; ``inverse`` maps
inputs back to [0, 1] pixels (not clamped). ZCA (kornia ``ZCAWhitening``, eps 0.1 as in MTT) is fitted on the
normalised training images and applied to training, synthetic and test images alike.
"""

from __future__ import annotations

import torch
from kornia.enhance import ZCAWhitening

from gdrdd.data.spec import DatasetSpec

ZCA_EPS = 0.1


class Preprocess:
    def __init__(self, spec: DatasetSpec, zca: ZCAWhitening | None = None) -> None:
        self.spec, self.zca = spec, zca

    @classmethod
    def fit(cls, spec: DatasetSpec, train_pixels: torch.Tensor, zca: bool) -> "Preprocess":
        """Normalisation only, or normalisation plus ZCA fitted on ``train_pixels`` ``(N, ch, H, W)``."""
        if not zca:
            return cls(spec)
        whitening = ZCAWhitening(eps=ZCA_EPS, compute_inv=True)
        whitening.fit(spec.normalise(train_pixels))
        return cls(spec, whitening)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.spec.normalise(pixels)
        return x if self.zca is None else self._zca_on(x)(x)

    def inverse(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs if self.zca is None else self._zca_on(inputs).inverse_transform(inputs)
        return self.spec.denormalise(x)

    def state(self) -> dict[str, object]:
        """What a user of saved images needs to map them back to pixels: the ZCA tensors, if any."""
        if self.zca is None:
            return {"zca": None}
        z = self.zca
        return {"zca": {"eps": ZCA_EPS, "mean": z.mean_vector.cpu(), "matrix": z.transform_matrix.cpu(),
                        "inverse": z.transform_inv.cpu()}}

    def _zca_on(self, like: torch.Tensor) -> ZCAWhitening:
        """The fitted transform on ``like``'s device (moved once)."""
        if self.zca.mean_vector.device != like.device:
            self.zca = self.zca.to(like.device)
        return self.zca
