"""A subpopulation-shift benchmark made from any labelled data set (``dataset.shift``).

Construction (deterministic for a given data set and ``seed``):

1. **Subgroups.** Each image is described by a coarse colour-layout thumbnail: its [0, 1] pixels averaged to
   4 x 4, flattened (``channels * 16`` values). Within each class, k-means (``subgroups`` clusters, 10 restarts,
   seeded) on the training thumbnails defines the visual subgroups; clusters are numbered by decreasing training
   size, so subgroup 0 is the class's largest mode. Every test image joins the nearest centre of its own class.
2. **Thinning.** In the training split only, subgroup ``s`` of every class keeps a seeded random fraction
   ``keep[s]`` of its images (at least one). The default ``keep = (1.0, 0.25, 0.05)`` leaves the largest mode
   whole and thins the others to 25 % and 5 %: common, rare and very rare subgroups.
3. **Evaluation.** The test split is unchanged and labelled by subgroup, so the evaluator reports accuracy per
   rarity level (``acc_kept<percent>``: over the test images of the subgroups kept at that fraction) and the
   worst class x subgroup cell (``worst_cell_acc``).
4. **Oracle control** (``balanced_batches``, off by default). The distillation's real batches are drawn with
   every training subgroup of a class equally likely (each image with probability proportional to one over
   its subgroup's kept size) instead of every image alike. It uses the benchmark's subgroup labels, which a
   robust method does not have. For DM, a CVaR over groups with the class-mean reference changes only the
   weights of the real images in each class's target mean (and the classes' step sizes), so this is the
   within-class reweighting such an objective would reach if its groups were the true subgroups: a reference
   point for that family, not a method. Initial and baseline real subsets stay uniform draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from gdrdd.data.spec import unit_pixels


@dataclass(frozen=True)
class Shift:
    """``keep[s]``: the fraction of subgroup ``s`` kept in training, for ``s`` in ``[0, subgroups)``;
    ``balanced_batches``: the oracle control (module docstring, 4)."""

    keep: tuple[float, ...] = (1.0, 0.25, 0.05)
    seed: int = 0
    balanced_batches: bool = False

    @classmethod
    def from_config(cls, shift) -> "Shift":
        """From a ``dataset.shift`` config node."""
        return cls(tuple(shift.keep), shift.seed, bool(shift.get("balanced_batches", cls.balanced_batches)))

    @property
    def subgroups(self) -> int:
        return len(self.keep)

    def __post_init__(self) -> None:
        if not self.keep or not all(0 < k <= 1 for k in self.keep):
            raise ValueError(f"dataset.shift.keep={list(self.keep)} is not valid; accepted: a non-empty list of "
                             "fractions in (0, 1], one per subgroup (largest subgroup first), e.g. [1.0, 0.25, 0.05]")


@dataclass
class ShiftedSplit:
    """Which training images stay (``train_keep`` ``(N_train,)`` bool), every image's subgroup
    (``train_subgroups`` ``(N_train,)``, ``test_subgroups`` ``(N_test,)``, values in ``[0, subgroups)``)."""

    train_keep: torch.Tensor
    train_subgroups: torch.Tensor
    test_subgroups: torch.Tensor


def balanced_weights(subgroups: torch.Tensor) -> torch.Tensor:
    """Sampling weights ``(n,)`` for one class's images with subgroup ids ``subgroups`` ``(n,)``: one over the
    image's subgroup size, so every subgroup present has the same total weight."""
    sizes = torch.bincount(subgroups)
    return 1.0 / sizes[subgroups].to(torch.float64)


def thumbnails(images: torch.Tensor) -> np.ndarray:
    """``(N, C * 16)`` float32: uint8 or [0, 1] images ``(N, C, H, W)`` averaged to 4 x 4 and flattened."""
    return F.adaptive_avg_pool2d(unit_pixels(images), 4).flatten(1).numpy().astype(np.float32)


def make_shift(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
               test_labels: torch.Tensor, shift: Shift) -> ShiftedSplit:
    """Subgroups of both splits and the thinning of the training split (see the module docstring)."""
    train_feats, test_feats = thumbnails(train_images), thumbnails(test_images)
    train_sub = torch.zeros(len(train_labels), dtype=torch.long)
    test_sub = torch.zeros(len(test_labels), dtype=torch.long)
    keep = torch.zeros(len(train_labels), dtype=torch.bool)
    generator = torch.Generator().manual_seed(shift.seed)
    for c in train_labels.unique().tolist():
        tr = (train_labels == c).nonzero().flatten()
        te = (test_labels == c).nonzero().flatten()
        k = min(shift.subgroups, len(tr))
        km = KMeans(n_clusters=k, n_init=10, random_state=shift.seed).fit(train_feats[tr.numpy()])
        rank = np.empty(k, dtype=np.int64)  # cluster id -> subgroup (by decreasing size)
        rank[np.argsort(-np.bincount(km.labels_, minlength=k), kind="stable")] = np.arange(k)
        train_sub[tr] = torch.from_numpy(rank[km.labels_])
        if len(te):
            test_sub[te] = torch.from_numpy(rank[km.predict(test_feats[te.numpy()])])
        for s in range(k):
            members = tr[train_sub[tr] == s]
            n = max(1, round(shift.keep[s] * len(members)))
            keep[members[torch.randperm(len(members), generator=generator)[:n]]] = True
    return ShiftedSplit(keep, train_sub, test_sub)
