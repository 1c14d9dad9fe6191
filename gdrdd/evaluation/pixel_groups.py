"""Test subgroups of the robust-DD paper: k-means on the flattened test pixels."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans


def pixel_kmeans_groups(images01: torch.Tensor, k: int = 10, seed: int = 0) -> torch.Tensor:
    """Cluster ids ``(N,)`` in ``[0, k)`` from k-means (k-means++, 10 restarts, fixed seed) on the flattened
    pixels of ``images01`` ``(N, C, H, W)``, so the groups are the same for every run on a data set."""
    flat = images01.detach().cpu().flatten(1).numpy().astype(np.float32)
    ids = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(flat)
    return torch.from_numpy(ids.astype(np.int64))
