"""Coverage plots: where the synthetic images sit among the real data.

Real training images and the synthetic set are embedded by one fixed network (a randomly initialised network
of the run's architecture with a fixed seed, the view DM distils in, identical for every run of a data set so
plots compare), projected to 2-D (PCA fitted on the real features; ``tsne`` optional), and drawn coloured by
class; each synthetic image is a large marker labelled with the size of its group (the real images of its
class nearer to it than to any other synthetic image of the class).

``python -m gdrdd.jobs.coverage RUN_A [RUN_B]`` draws one panel per run folder, in one shared projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from gdrdd.robust.grouping import NearestSynthetic, assign_labelled
from gdrdd.robust.objective import describe
from gdrdd.utils.figures import pyplot, save_png

NETWORK_SEED = 12345
PROJECTIONS = ("pca", "tsne")


@dataclass
class CoveragePanel:
    title: str
    real_xy: np.ndarray        # (n, 2)
    real_labels: np.ndarray    # (n,)
    synthetic_xy: np.ndarray   # (m, 2)
    synthetic_labels: np.ndarray
    group_sizes: np.ndarray    # (m,) real images per synthetic image


def fixed_network(make_network: Callable[[], nn.Module], device: torch.device | str) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NETWORK_SEED)
        return make_network().to(device).eval()


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([net.embed(images[i:i + batch]) for i in range(0, len(images), batch)])


def group_sizes(real_features: torch.Tensor, real_labels: torch.Tensor, synthetic_features: torch.Tensor,
                synthetic_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Real images per synthetic image ``(m,)`` (synthetic set class-major, ``ipc`` per class)."""
    ipc = len(synthetic_labels) // num_classes
    ids = assign_labelled(NearestSynthetic(), real_features, real_labels,
                          synthetic_features.view(num_classes, ipc, -1))
    return torch.bincount(ids, minlength=len(synthetic_labels))


def project(real_features: torch.Tensor, others: list[torch.Tensor], method: str = "pca",
            seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """2-D coordinates of the real features and of each tensor in ``others`` in one projection."""
    if method not in PROJECTIONS:
        raise ValueError(f"projection {method!r} is unknown; accepted: {', '.join(PROJECTIONS)}")
    if method == "pca":
        mean = real_features.mean(0, keepdim=True)
        _, _, v = torch.pca_lowrank(real_features - mean, q=2, center=False, niter=4)
        to_2d = lambda f: ((f - mean) @ v[:, :2]).cpu().numpy()  # noqa: E731
        return to_2d(real_features), [to_2d(o) for o in others]
    from sklearn.manifold import TSNE

    stacked = torch.cat([real_features, *others]).cpu().numpy()
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(stacked) - 1))
    xy = tsne.fit_transform(stacked)
    sizes = np.cumsum([len(real_features), *(len(o) for o in others)])
    return xy[:sizes[0]], [xy[a:b] for a, b in zip(sizes[:-1], sizes[1:])]


def sample_real(class_images: list[torch.Tensor], limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """About ``limit`` real images (each class in proportion to its size) and their labels, drawn with a fixed
    seed from the per-class tensors, without copying the whole training set."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(len(x) for x in class_images)
    picks, labels = [], []
    for c, x in enumerate(class_images):
        k = min(len(x), max(1, round(limit * len(x) / total)))
        picks.append(x[torch.randperm(len(x), generator=generator)[:k].to(x.device)])
        labels.append(torch.full((k,), c, dtype=torch.long, device=x.device))
    return torch.cat(picks), torch.cat(labels)


def coverage_panels(net: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
                    sets: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                    method: str = "pca") -> list[CoveragePanel]:
    """One panel per synthetic set in ``sets`` (title -> images, labels), all in one projection."""
    real_f = embed(net, real)
    set_f = [embed(net, images.to(real.device)) for images, _ in sets.values()]
    real_xy, set_xy = project(real_f, set_f, method)
    panels = []
    for (title, (_, labels)), features, xy in zip(sets.items(), set_f, set_xy):
        sizes = group_sizes(real_f, real_labels, features, labels.to(real.device), num_classes)
        panels.append(CoveragePanel(title, real_xy, real_labels.cpu().numpy(), xy, labels.cpu().numpy(),
                                    sizes.cpu().numpy()))
    return panels


def draw(path: str | Path, panels: list[CoveragePanel], class_names: tuple[str, ...]) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, p in zip(axes[0], panels):
        c = [colours(int(label) % colours.N) for label in p.real_labels]
        ax.scatter(p.real_xy[:, 0], p.real_xy[:, 1], c=c, s=4, alpha=0.25, linewidths=0)
        ax.scatter(p.synthetic_xy[:, 0], p.synthetic_xy[:, 1],
                   c=[colours(int(label) % colours.N) for label in p.synthetic_labels], s=90, edgecolors="black",
                   linewidths=1.2, marker="*")
        for (x, y), size in zip(p.synthetic_xy, p.group_sizes):
            ax.annotate(str(int(size)), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{p.title}\nstars: synthetic images (number: real images in its group)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours(i % colours.N), label=name)
               for i, name in enumerate(class_names[:20])]
    axes[0][-1].legend(handles=handles, fontsize=6, loc="best")
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def plot_run(path: str | Path, data, make_network: Callable[[], nn.Module], images: torch.Tensor, labels: torch.Tensor,
             title: str, class_names: tuple[str, ...], real_limit: int = 2000) -> Path:
    """The coverage plot of one run's synthetic set against (up to ``real_limit``) real training images of
    ``data`` (a set-up RealDataModule)."""
    real, real_labels = sample_real(data.class_images, real_limit, seed=0)
    net = fixed_network(make_network, real.device)
    panels = coverage_panels(net, real, real_labels, {title: (images, labels)}, len(class_names))
    return draw(path, panels, class_names)


def run_title(config: dict) -> str:
    """``method, IPC, objective`` of a run's resolved config, for plot titles."""
    return f"{config['method']['name']}, IPC {config['ipc']}, {describe(config['cvar'])}"
