"""The real data: class-wise training tensors resident on the run's device, and the test set."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from gdrdd.data.preprocess import Preprocess
from gdrdd.data.rarity import Rarity, rarity_weights
from gdrdd.data.readers import load_real_data
from gdrdd.data.spec import DatasetSpec, class_major_labels
from gdrdd.data.subpopulation import Shift, balanced_weights, make_shift
from gdrdd.utils.checks import require
from gdrdd.utils.distributed import rank_slice
from gdrdd.utils.runtime import release_free_memory, to_device

log = logging.getLogger(__name__)


def check_batch_weights(shift: Shift | None, rarity: Rarity | None) -> None:
    """The real batches have one set of sampling weights at most: the oracle's balanced subgroups or rarity."""
    require(rarity is None or shift is None or not shift.balanced_batches, "dataset.shift.balanced_batches", True,
            "false with cvar.sampling=rarity (both set the real batches' sampling weights)")


class RealDataModule(L.LightningDataModule):
    """Holds preprocessed real images per class (normalised; ZCA-whitened too with ``zca``) and samples
    class-balanced batches without a DataLoader.

    The Lightning training loop iterates over step indices (``train_dataloader``); the DistillModule draws
    its real batch from ``sample_real`` on the device the images were moved to with ``to``.

    With ``shift``, the training split is thinned by subgroup (``gdrdd.data.subpopulation``) and
    ``test_subgroups`` ``(N_test,)`` labels every test image's subgroup; otherwise it is ``None``. With
    ``shift.balanced_batches`` (an oracle control), ``sample_real`` draws every training subgroup of a class
    equally often. With ``rarity`` (``cvar.sampling=rarity``), it draws each image with its label-free rarity
    weight (``gdrdd.data.rarity``). The two are exclusive.
    """

    def __init__(self, spec: DatasetSpec, data_dir: str | Path, cache_dir: str | Path | None = None,
                 iterations: int = 1, zca: bool = False, shift: Shift | None = None,
                 rarity: Rarity | None = None) -> None:
        super().__init__()
        check_batch_weights(shift, rarity)
        self.spec, self.data_dir, self.cache_dir, self.iterations, self.zca = spec, data_dir, cache_dir, iterations, zca
        self.shift, self.rarity = shift, rarity
        self.preprocess = Preprocess(spec)
        self.class_images: list[torch.Tensor] = []
        self.test_images: torch.Tensor | None = None
        self.test_labels: torch.Tensor | None = None
        self.test_subgroups: torch.Tensor | None = None
        self.batch_weights: list[torch.Tensor] | None = None  # per class, (n_c,): balanced_batches or rarity
        self.class_subgroups: list[torch.Tensor] | None = None  # per class, (n_c,): shift only
        self._device: torch.device | None = None  # where batches go (``to``); None: where the images are

    def setup(self, stage: str | None = None) -> None:
        if self.class_images:
            return
        data = load_real_data(self.spec, self.data_dir, self.cache_dir)
        train_images, train_labels = data.train.images, data.train.labels
        if self.shift is not None:
            split = make_shift(train_images, train_labels, data.test.images, data.test.labels, self.shift)
            train_images, train_labels = train_images[split.train_keep], train_labels[split.train_keep]
            self.test_subgroups = split.test_subgroups
            kept_subgroups = split.train_subgroups[split.train_keep]
            self.class_subgroups = [kept_subgroups[train_labels == c] for c in range(self.spec.num_classes)]
            if self.shift.balanced_batches:
                self.batch_weights = [balanced_weights(s) for s in self.class_subgroups]
        self.preprocess = Preprocess.fit(self.spec, train_images, self.zca)
        # class by class, so the whole float training set exists once (preprocessing acts on each image alone)
        self.class_images = [self.preprocess(train_images[train_labels == c]) for c in range(self.spec.num_classes)]
        empty = [self.spec.class_names[c] for c, x in enumerate(self.class_images) if len(x) == 0]
        if empty:
            raise ValueError(f"data set {self.spec.name!r} has no training images for classes {empty}")
        if self.rarity is not None:
            self.batch_weights = [rarity_weights(x, self.rarity) for x in self.class_images]
        self.test_images = self.preprocess(data.test.images)
        self.test_labels = data.test.labels
        del data, train_images
        release_free_memory()  # the reading's temporaries

    def to(self, device: torch.device | str) -> "RealDataModule":
        """Make ``device`` the one batches are delivered on. The training set moves there when it fits in half
        of that device's free memory (once per run, so sampling needs no transfers); otherwise it stays in
        pinned host memory and each batch is gathered on the host and copied without blocking (a warning says
        so). The test set always moves."""
        device = torch.device(device)
        self._device = device
        if fits_on(device, sum(x.nelement() * x.element_size() for x in self.class_images)):
            self.class_images = [x.to(device) for x in self.class_images]
            if self.class_subgroups is not None:
                self.class_subgroups = [s.to(device) for s in self.class_subgroups]
        elif self.class_images[0].device.type == "cpu":
            log.warning("the training set of %s does not fit in half the free memory of %s: it stays in pinned host "
                        "memory and every real batch is copied as it is drawn (slower)", self.spec.name, device)
            self.class_images = [pinned(x) for x in self.class_images]
        self.test_images, self.test_labels = self.test_images.to(device), self.test_labels.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where batches, labels and the test set are delivered (``to``); the training set may stay on the host."""
        return self._device or self.class_images[0].device

    def sample_real(self, n: int, generator: torch.Generator | None = None, split: bool = False,
                    uniform: bool = False, with_subgroups: bool = False,
                    classes: list[int] | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(C, m, ch, H, W)`` random real images per class (without replacement), ``m = min(n, smallest class
        size)``; ``classes``: only these classes, in this order (``(len(classes), m, ...)``). With ``split``, in a
        distributed run, this rank's slice of that batch (every rank draws the same batch). Images are equally
        likely unless ``batch_weights`` are set (``shift.balanced_batches`` or ``rarity``) and ``uniform`` is
        False. ``with_subgroups`` (shift benchmarks only): also the images' known subgroup ids, sliced alike."""
        classes = list(range(len(self.class_images))) if classes is None else classes
        m = min(n, *(len(x) for x in self.class_images))
        weights = self.batch_weights if not uniform else None
        weights = weights or [None] * len(self.class_images)
        stored = self.class_images[0].device  # the device's, or the host's when the set did not fit there
        picks = to_device(torch.stack([draw(len(self.class_images[c]), m, weights[c], generator) for c in classes]),
                          stored)  # drawn on the host (seeded generators), copied in one transfer
        batch = to_device(torch.stack([self.class_images[c][i] for c, i in zip(classes, picks)]), self.device)
        batch = rank_slice(batch, dim=1) if split else batch
        if not with_subgroups:
            return batch
        if self.class_subgroups is None:
            raise ValueError("known subgroups need a subpopulation-shift data set (dataset.shift)")
        ids = to_device(torch.stack([self.class_subgroups[c][i] for c, i in zip(classes, picks)]), self.device)
        return batch, rank_slice(ids, dim=1) if split else ids

    def first_images(self, n: int) -> torch.Tensor:
        """``(C, m, ch, H, W)`` the first ``m = min(n, smallest class size)`` training images of each class, in the
        data set's order."""
        m = min(n, *(len(x) for x in self.class_images))
        return to_device(torch.stack([x[:m] for x in self.class_images]), self.device)

    def random_subset(self, ipc: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``ipc`` random real images per class, flattened: images ``(C*ipc, ch, H, W)``, labels ``(C*ipc,)``."""
        images = self.sample_real(ipc, generator, uniform=True).flatten(0, 1).clone()
        return images, self.synthetic_labels(len(images) // self.spec.num_classes)

    def synthetic_labels(self, ipc: int) -> torch.Tensor:
        """Labels ``(C*ipc,)`` in class-major order, on the data's device."""
        return class_major_labels(self.spec.num_classes, ipc, self.device)

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training images ``(N, ch, H, W)`` (class-major) and labels ``(N,)``."""
        images = torch.cat(self.class_images)
        sizes = torch.tensor([len(x) for x in self.class_images], device=images.device)
        return images, torch.arange(len(sizes), device=images.device).repeat_interleave(sizes)

    @property
    def training_size(self) -> int:
        """The number of training images (all classes)."""
        return sum(len(x) for x in self.class_images)

    def training_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at ``indices`` ``(n,)`` of the class-major training set (``training_set``'s
        order), gathered from the per-class tensors without concatenating them."""
        sizes = torch.tensor([len(x) for x in self.class_images], device=indices.device)
        starts = torch.cumsum(sizes, 0) - sizes
        labels = torch.searchsorted(starts, indices, right=True) - 1
        stored = self.class_images[0].device
        images = torch.empty(len(indices), *self.class_images[0].shape[1:], device=stored,
                             dtype=self.class_images[0].dtype)
        for c in labels.unique().tolist():  # host tensors: no device synchronisation
            positions = (labels == c).nonzero().squeeze(1)
            local = to_device(indices[positions] - starts[c], stored)
            images.index_copy_(0, to_device(positions, stored), self.class_images[c].index_select(0, local))
        return to_device(images, self.device), to_device(labels, self.device)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(self.iterations), batch_size=None, shuffle=False)


def fits_on(device: torch.device, size: int) -> bool:
    """``size`` bytes fit in half the free memory of a CUDA ``device`` (leaving the rest to the networks); any
    other device is taken to hold them (host memory, or ``meta`` in the tests)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return size <= free // 2


def pinned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in page-locked host memory where a CUDA device can copy from it without blocking."""
    return tensor.pin_memory() if torch.cuda.is_available() else tensor


def draw(n: int, m: int, weights: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """``m`` distinct indices in ``[0, n)``: a random permutation's first ``m``, or, with ``weights`` ``(n,)``,
    a weighted draw without replacement."""
    if weights is None:
        return torch.randperm(n, generator=generator)[:m]
    return torch.multinomial(weights, m, replacement=False, generator=generator)
