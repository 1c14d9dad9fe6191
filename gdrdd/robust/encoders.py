"""Fixed networks to form the robust groups in, instead of the matcher's own network (``cvar.features``).

- ``encoder`` (``train_real_data_encoder``): the run's architecture trained ``cvar.encoder_epochs`` epochs on the
  whole real training set once per run, then frozen.
- ``evaluation`` (``EvaluationFeatures``): every ``cvar.refresh`` iterations (from iteration 0) a fresh network
  of the run's architecture is trained on the synthetic set as it stands, with the evaluation protocol
  (``eval.*`` SGD settings and epochs, its augmentation), then frozen; until the next refresh the matcher forms
  its groups (each real image with its nearest synthetic image of its class) in that network's features. The
  network's initialisation and training draws are seeded by the run seed and the refresh iteration. Its weights
  and the iteration it was trained at are part of the checkpoint, so a resumed run forms the same groups as an
  uninterrupted one.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.models.fit import TrainSettings, train_network

log = logging.getLogger(__name__)


def train_real_data_encoder(make_network: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor,
                            settings: TrainSettings, augment: DSA | None, seed: int,
                            device: torch.device | None = None) -> nn.Module:
    """A network from ``make_network`` trained on the real ``images`` ``(N, ch, H, W)`` / ``labels`` ``(N,)`` with
    ``settings``, its initialisation and draws seeded by ``seed`` (the global RNG is left as it was); frozen. It
    trains on ``device`` (default: the images')."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_network().to(device or images.device)
        log.info("training the grouping encoder: %d epochs on %d real images", settings.epochs, len(images))
        train_network(net, images, labels, settings, augment, torch.Generator().manual_seed(seed))
    return net.eval().requires_grad_(False)


class EvaluationFeatures(L.Callback):
    """Keeps the matcher's ``group_encoder`` an evaluation network of the synthetic set, re-trained every
    ``refresh`` iterations. The module must expose ``training_set()`` (its training images and labels)
    and a ``matcher`` with a ``group_encoder`` attribute."""

    def __init__(self, make_network: Callable[[], nn.Module], settings: TrainSettings, augment: DSA | None,
                 seed: int, refresh: int) -> None:
        if refresh < 1:
            raise ValueError(f"refresh={refresh!r} must be a positive number of iterations")
        self.make_network, self.settings, self.augment = make_network, settings, augment
        self.seed, self.refresh = seed, refresh
        self.net: nn.Module | None = None
        self.trained_at: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        due = batch_idx - batch_idx % self.refresh
        if self.trained_at != due:
            self.net = self.train_on(*pl_module.training_set(), due)
            self.trained_at = due
        pl_module.matcher.group_encoder = self.net.to(pl_module.device)  # a restored network starts on the CPU

    def train_on(self, images: torch.Tensor, labels: torch.Tensor, iteration: int) -> nn.Module:
        """A frozen network trained with the evaluation protocol on ``images`` / ``labels``, seeded by ``iteration``."""
        net = self._network(images.device, seed=self._seed(iteration))
        log.info("iteration %d: training the grouping network on the synthetic set (%d epochs)", iteration,
                 self.settings.epochs)
        train_network(net, images, labels, self.settings, self.augment,
                      torch.Generator().manual_seed(self._seed(iteration)))
        return self._frozen(net)

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            return {}
        return {"trained_at": self.trained_at, "weights": {k: v.cpu() for k, v in self.net.state_dict().items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.trained_at = state_dict["trained_at"]
            self.net = self._frozen(self._network("cpu"), state_dict["weights"])

    def _seed(self, iteration: int) -> int:
        return 7_919 * (self.seed + 1) + iteration

    def _network(self, device: torch.device | str, seed: int = 0) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.make_network().to(device)

    @staticmethod
    def _frozen(net: nn.Module, weights: dict[str, torch.Tensor] | None = None) -> nn.Module:
        if weights is not None:
            net.load_state_dict(weights)
        return net.eval().requires_grad_(False)
