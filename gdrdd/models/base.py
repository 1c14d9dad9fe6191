"""The shape every gdrdd network has: ``features`` (images -> feature map), one linear ``classifier`` on the
flattened features; ``embed(x)`` gives the features ``(B, D)`` the robust grouping and DM use."""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    features: nn.Module
    classifier: nn.Linear

    def attach_classifier(self, channels: int, resolution: int, num_classes: int) -> None:
        """Size ``classifier`` from a dry run of ``features`` on a ``resolution``-pixel input."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            self.feature_dim = int(self.features(torch.zeros(1, channels, resolution, resolution)).flatten(1).shape[1])
        self.train(was_training)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features ``(B, feature_dim)``."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
