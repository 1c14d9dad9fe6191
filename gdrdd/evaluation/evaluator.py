"""Scores a training set (distilled or a random real subset) by training fresh networks on it.

Reports, as mean and std over ``nets`` networks (the same network seeds for every set scored, so
comparisons are paired): test accuracy; worst- and mean-group accuracy over the paper's groups (k-means
with ``num_groups`` clusters on the flattened test pixels); accuracy under Gaussian noise, Gaussian blur
and colour inversion; and the CVaR at ``cvar_alpha`` of the groups' mean test losses. The accuracy of
each group ``g`` is also reported, as ``group<g>_acc`` (NaN for an empty group).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Callable

import torch
from torch import nn

from gdrdd.augment.dsa import DSA
from gdrdd.data.preprocess import Preprocess
from gdrdd.data.spec import DatasetSpec
from gdrdd.evaluation.corruptions import corruptions
from gdrdd.evaluation.metrics import accuracy, group_accuracies, group_loss_cvar, summarise
from gdrdd.evaluation.pixel_groups import pixel_kmeans_groups
from gdrdd.models.fit import LossFn, TrainSettings, predict, train_network
from gdrdd.utils.progress import bar, job_label
from gdrdd.utils.runtime import autocast, release_free_memory

METRICS = ("acc", "worst_group_acc", "mean_group_acc", "acc_noise", "acc_blur", "acc_invert", "test_cvar")


class Evaluator:
    def __init__(self, spec: DatasetSpec, test_images: torch.Tensor, test_labels: torch.Tensor,
                 make_network: Callable[[], nn.Module], settings: TrainSettings, nets: int = 3,
                 augment: DSA | None = None, num_groups: int = 10, cvar_alpha: float = 0.8, seed: int = 0,
                 preprocess: Preprocess | None = None,
                 architectures: dict[str, Callable[[], nn.Module]] | None = None, precision: str = "32-true",
                 test_subgroups: torch.Tensor | None = None, subgroup_keep: tuple[float, ...] | None = None,
                 progress: bool = False, loss_fn: LossFn | None = None) -> None:
        """``test_images`` are network inputs; ``preprocess`` maps pixels to inputs (default: normalisation);
        ``architectures``: further networks to score the set with (cross-architecture evaluation), whose
        metrics are reported as ``<name>/<metric>``; ``precision``: ``32-true``, or ``bf16-mixed`` to train and
        test the networks under bfloat16 autocast. ``test_subgroups`` ``(N_test,)`` and ``subgroup_keep`` (the
        training fraction kept of each subgroup) of a subpopulation-shift data set add ``acc_kept<percent>`` per
        rarity level, ``cell<c>_<s>_acc`` per class ``c`` x subgroup ``s`` cell and ``worst_cell_acc`` (the
        worst cell). ``progress``: a bar per scored set (``eval distilled 2/3``, epochs, time left). ``loss_fn``:
        the networks' training loss instead of the protocol's (``eval.labels=teacher``: the teacher's targets,
        which ignore the set's labels)."""
        self.spec, self.make_network, self.settings, self.loss_fn = spec, make_network, settings, loss_fn
        self.progress = progress
        self.architectures = architectures or {}
        self.precision = precision
        preprocess = preprocess or Preprocess(spec)
        self.nets, self.augment, self.num_groups = nets, augment, num_groups
        self.cvar_alpha, self.seed = cvar_alpha, seed
        self.preprocess = preprocess
        self.test_images, self.test_labels = test_images, test_labels
        self.test_subgroups, self.subgroup_keep = test_subgroups, subgroup_keep

    # The test groups and corrupted copies are made at their first use, so a run's distillation does not hold
    # them (three more copies of the test set) or add the k-means' and blur's temporaries to its peak memory.
    @cached_property
    def groups(self) -> torch.Tensor:
        """``(N_test,)`` the k-means group of each test image (over its pixels)."""
        groups = pixel_kmeans_groups(self._test_pixels(), self.num_groups, self.seed).to(self.test_labels.device)
        release_free_memory()  # the k-means' temporaries
        return groups

    @cached_property
    def test_sets(self) -> dict[str, torch.Tensor]:
        """The test set as network inputs, clean and under each corruption: name -> ``(N_test, ch, H, W)``."""
        pixels = self._test_pixels()
        sets = {"clean": self.test_images}
        for name, corrupt in corruptions(self.seed).items():  # one at a time: one copy's temporaries at once
            sets[name] = self.preprocess(corrupt(pixels))
        release_free_memory()
        return sets

    def _test_pixels(self) -> torch.Tensor:
        return self.preprocess.inverse(self.test_images).clamp(0, 1)

    def group_sizes(self) -> list[int]:
        """Test images in each of the ``num_groups`` groups."""
        return torch.bincount(self.groups.cpu(), minlength=self.num_groups).tolist()

    def cells(self) -> list[tuple[int, int, float, int]] | None:
        """``(class, subgroup, training fraction kept, test images)`` of every class x subgroup cell of a
        subpopulation-shift data set, class-major (``None`` without test subgroups)."""
        if self.test_subgroups is None:
            return None
        k = len(self.subgroup_keep)
        cells = cell_ids(self.test_labels, self.test_subgroups, k).cpu()
        sizes = torch.bincount(cells, minlength=self.spec.num_classes * k)
        return [(i // k, i % k, self.subgroup_keep[i % k], int(n)) for i, n in enumerate(sizes.tolist())]

    def _move_test_data(self, device: torch.device) -> None:
        """Keep the test tensors on the device of the sets being scored (moved once)."""
        if self.test_labels.device != device:
            self.test_labels, self.groups = self.test_labels.to(device), self.groups.to(device)
            if self.test_subgroups is not None:
                self.test_subgroups = self.test_subgroups.to(device)
            self.test_sets = {name: x.to(device) for name, x in self.test_sets.items()}

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor, lr: float | None = None,
                 name: str = "distilled") -> dict[str, float]:
        """Train ``nets`` fresh networks on ``images`` / ``labels`` and return the summarised metrics.
        ``lr`` replaces the protocol's learning rate (MTT evaluates with its learned step size); ``name`` labels
        the progress bar."""
        self._move_test_data(images.device)
        settings = self.settings if lr is None else replace(self.settings, lr=lr)
        with autocast(images.device, self.precision):
            metrics = self._evaluate_with(self.make_network, images, labels, settings, name)
            for architecture, make_network in self.architectures.items():
                scored = self._evaluate_with(make_network, images, labels, settings, f"{name} [{architecture}]")
                metrics.update({f"{architecture}/{k}": v for k, v in scored.items()})
        return metrics

    def _evaluate_with(self, make_network: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor,
                       settings: TrainSettings, name: str) -> dict[str, float]:
        per_net = []
        with bar(f"eval {name} 1/{self.nets}", self.nets * settings.epochs, "epoch", self.progress) as progress:
            for i in range(self.nets):
                if i > 0:
                    progress.set_description(f"{job_label()}eval {name} {i + 1}/{self.nets}")
                net_seed = 1_000_003 * (self.seed + 1) + i
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(net_seed)
                    net = make_network().to(images.device)
                generator = torch.Generator().manual_seed(net_seed)
                trained = train_network(net, images, labels, settings, self.augment, generator, loss_fn=self.loss_fn,
                                        on_epoch=lambda _: progress.update(1))
                per_net.append(self.score(trained))
        return summarise(per_net)

    def score(self, net: nn.Module) -> dict[str, float]:
        """Metrics of one trained network."""
        c = self.spec.num_classes
        preds, losses = predict(net, self.test_sets["clean"], self.test_labels)
        per_group = group_accuracies(preds, self.test_labels, self.groups, self.num_groups)
        metrics = {
            "acc": accuracy(preds, self.test_labels, c),
            "worst_group_acc": float(per_group.nan_to_num(float("inf")).min()),
            "mean_group_acc": float(per_group.nanmean()),
            **{f"group{g}_acc": float(a) for g, a in enumerate(per_group)},
        }
        for name in ("noise", "blur", "invert"):
            corrupted_preds = predict(net, self.test_sets[name], self.test_labels)[0]
            metrics[f"acc_{name}"] = accuracy(corrupted_preds, self.test_labels, c)
        metrics["test_cvar"] = group_loss_cvar(losses, self.groups, self.num_groups, self.cvar_alpha)
        if self.test_subgroups is not None:
            metrics.update(subgroup_metrics(preds, self.test_labels, self.test_subgroups, self.subgroup_keep, c))
        return metrics


def subgroup_metrics(preds: torch.Tensor, labels: torch.Tensor, subgroups: torch.Tensor, keep: tuple[float, ...],
                     num_classes: int) -> dict[str, float]:
    """Accuracy over the test images of the subgroups kept at each training fraction (``acc_kept<percent>``),
    of every class ``c`` x subgroup ``s`` cell (``cell<c>_<s>_acc``, NaN for a cell without test images) and of
    the worst cell (``worst_cell_acc``), in percent."""
    correct = (preds == labels).double()
    kept = torch.tensor(keep, device=subgroups.device)[subgroups]
    out = {}
    for fraction in sorted(set(keep), reverse=True):
        mask = kept == fraction
        out[f"acc_kept{kept_percent(fraction)}"] = 100.0 * float(correct[mask].mean()) if mask.any() else float("nan")
    k = len(keep)
    cells = group_accuracies(preds, labels, cell_ids(labels, subgroups, k), num_classes * k)
    out.update({f"cell{i // k}_{i % k}_acc": float(a) for i, a in enumerate(cells)})
    out["worst_cell_acc"] = float(cells.nan_to_num(float("inf")).min())
    return out


def cell_ids(labels: torch.Tensor, subgroups: torch.Tensor, subgroups_per_class: int) -> torch.Tensor:
    """Class x subgroup cell of each image, ``label * subgroups_per_class + subgroup`` (class-major)."""
    return labels * subgroups_per_class + subgroups


def kept_percent(fraction: float) -> str:
    """``0.25`` -> ``'25'``, ``0.025`` -> ``'2.5'``: the name part of ``acc_kept<percent>``."""
    return f"{100 * fraction:g}"
