"""Pixels <-> network inputs: per-channel normalisation, or ZCA whitening instead of it (MTT's preprocessing).

``Preprocess(pixels)`` maps uint8 or [0, 1] images ``(N, ch, H, W)`` to network inputs; ``inverse`` maps
inputs back to [0, 1] pixels (not clamped). With ZCA (kornia ``ZCAWhitening``, eps 0.1) the [0, 1] pixels are
whitened directly, without the mean/std normalisation, as MTT's data loading does (ToTensor, then ZCA fitted on
the training set); the same transform serves training, synthetic and test images alike.
"""

from __future__ import annotations

import torch
from kornia.enhance import ZCAWhitening

from gdrdd.data.spec import DatasetSpec, unit_pixels

ZCA_EPS = 0.1


class Preprocess:
    def __init__(self, spec: DatasetSpec, zca: ZCAWhitening | None = None) -> None:
        self.spec, self.zca = spec, zca

    @classmethod
    def fit(cls, spec: DatasetSpec, train_pixels: torch.Tensor, zca: bool) -> "Preprocess":
        """Normalisation, or ZCA fitted on the [0, 1] ``train_pixels`` ``(N, ch, H, W)``."""
        if not zca:
            return cls(spec)
        whitening = ZCAWhitening(eps=ZCA_EPS, compute_inv=True)
        whitening.fit(unit_pixels(train_pixels))
        return cls(spec, whitening)

    @classmethod
    def from_state(cls, spec: DatasetSpec, zca: dict[str, torch.Tensor] | None) -> Preprocess:
        """The preprocessing a saved ``state()`` describes (the ``zca`` entry of ``distilled.pt``)."""
        if zca is None:
            return cls(spec)
        whitening = ZCAWhitening(eps=float(zca["eps"]), compute_inv=True)
        whitening.mean_vector, whitening.transform_matrix = zca["mean"], zca["matrix"]
        whitening.transform_inv, whitening.fitted = zca["inverse"], True
        return cls(spec, whitening)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.zca is None:
            return self.spec.normalise(pixels)
        x = unit_pixels(pixels)
        return self._zca_on(x)(x)

    def inverse(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.zca is None:
            return self.spec.denormalise(inputs)
        return self._zca_on(inputs).inverse_transform(inputs)

    def state(self) -> dict[str, object]:
        """What a user of saved images needs to map them back to pixels: the ZCA tensors, if any."""
        if self.zca is None:
            return {"zca": None}
        z = self.zca
        return {"zca": {"eps": ZCA_EPS, "mean": z.mean_vector.cpu(), "matrix": z.transform_matrix.cpu(),
                        "inverse": z.transform_inv.cpu()}}

    def _zca_on(self, like: torch.Tensor) -> ZCAWhitening:
        """The fitted transform on ``like``'s device (moved once). Its three tensors are moved one by one: kornia
        releases before 0.9 keep them as plain attributes, which ``Module.to`` would leave on the CPU."""
        z = self.zca
        if z.mean_vector.device != like.device:
            for name in ("mean_vector", "transform_matrix", "transform_inv"):
                setattr(z, name, getattr(z, name).to(like.device))
        return z
