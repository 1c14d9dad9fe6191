"""Where label-free rarity sampling puts the real batches' mass, on a subpopulation-shift benchmark.

    python bench/rarity_mass.py --data-dir ~/data [--dataset cifar10_shift] [--powers 0 4 8 16]
                                [--resolutions 8 16] [--neighbours 10 400] [--clusters 3 10 40]
                                [--kmeans-draws 20] [--errors 1 4] [--upweights 5 20 50]
                                [--starts herding kcenter --seeds 0 1 2 --width 32 --ipc 10]
                                [--out outputs/bench/rarity_mass.json]

For each setting of ``cvar.rarity`` (pooled-pixel resolution, k of ``--neighbours``, power) it prints, averaged
over classes, the share of a class's sampling weight on each true training subgroup (subgroup 0 is kept whole,
the others thinned; uniform sampling gives their kept sizes' shares, the oracle ``balanced_batches`` one over
the number of subgroups each), the effective batch fraction ``(sum w)^2 / (n * sum w^2)`` (1 for uniform
weights; smaller means the batches repeat fewer distinct images) and the total-variation distance between the
per-image sampling distribution and the oracle's (0 for the oracle). ``--features convnet`` measures distances in
a freshly initialised ConvNet's embedding (DM's feature family) instead of pooled pixels, for comparison.

``--clusters K ...`` also measures label-free *cluster-balanced* sampling in the same feature spaces: per class,
k-means with ``K`` clusters (k-means++, 3 restarts, seed 0), each cluster drawn equally often, as the oracle does
with the true subgroups (the "cluster, then balance" recipe of label-free group robustness). It is a measurement
only, not a ``cvar.sampling`` option.

``--kmeans-draws N`` measures the k-means real batch (``method.real_batch=kmeans``, the release's 128 of 256) in
the same feature spaces: per class, ``N`` random batches of 256, each image weighted by how often it is kept.

``--errors E ...`` measures label-free *error-set up-weighting* (the "train once, up-weight its mistakes" recipe
of label-free group robustness): a network of the run's architecture trained ``E`` epochs on the whole real
training set (``cvar.features=encoder``'s training), then each training image it misclassifies weighted
``U`` (``--upweights``) and every other image 1. It also prints that network's training error on each subgroup
(class-averaged). A measurement only, not a ``cvar.sampling`` option.

``--starts RULE ...`` measures the coreset starts (``method.init=kcenter``/``herding``): for each of ``--seeds``,
the ``--ipc`` images per class that the rule picks in the run's own fixed network (``model.width=--width``,
initialised with that seed, as ``train.py`` builds it), as each subgroup's share of the picks (class-averaged; a
random start's expected shares are the ``uniform`` row) and, per class, how many picks lie in the rarest kept
subgroup.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_config, write_report  # noqa: E402

from gdrdd.data.rarity import kth_neighbour_distance, pooled_pixels, weights_from_distances  # noqa: E402
from gdrdd.data.subpopulation import balanced_weights  # noqa: E402
from gdrdd.distill.coreset import SELECTIONS, features_of  # noqa: E402
from gdrdd.distill.kmeans_batch import kmeans, nearest_to_centres  # noqa: E402
from gdrdd.jobs import build  # noqa: E402


def cluster_balanced_weights(features: torch.Tensor, clusters: int) -> torch.Tensor:
    """``(n,)`` weights of one class's images that draw each of its k-means ``clusters`` equally often, from
    features ``(n, D)``."""
    from sklearn.cluster import KMeans

    ids = KMeans(n_clusters=min(clusters, len(features)), n_init=3, random_state=0).fit_predict(
        features.double().numpy())
    return balanced_weights(torch.from_numpy(ids).long())


def kmeans_batch_weights(features: torch.Tensor, draws: int, batch: int = 256, centres: int = 128) -> torch.Tensor:
    """``(n,)`` float64: how often each of one class's images (features ``(n, D)``) is kept by the k-means real batch
    (``method.real_batch=kmeans``: of ``batch`` random images, the one nearest each of ``centres`` k-means
    centres), over ``draws`` draws (global torch RNG)."""
    counts = torch.zeros(len(features), dtype=torch.float64)
    for _ in range(draws):
        drawn = torch.randperm(len(features))[:batch]
        points = features[drawn].float()
        kept = drawn[nearest_to_centres(points, kmeans(points, min(centres, len(drawn))))]
        counts.index_add_(0, kept, torch.ones(len(kept), dtype=torch.float64))
    return counts


def misclassified(net: torch.nn.Module, images: torch.Tensor, label: int) -> torch.Tensor:
    """``(n,)`` bool: which of one class's ``images`` ``(n, ch, H, W)`` (all of class ``label``) ``net`` gets wrong."""
    with torch.no_grad():
        return torch.cat([net(b).argmax(1) != label for b in images.split(512)])


def error_set_weights(wrong: torch.Tensor, upweight: float) -> torch.Tensor:
    """``(n,)`` float64 weights of one class's images from ``wrong`` ``(n,)`` bool: ``upweight`` on the misclassified
    ones, 1 on the rest."""
    return 1.0 + (upweight - 1.0) * wrong.double()


def subgroup_sums(values: torch.Tensor, subgroups: torch.Tensor, count: int) -> torch.Tensor:
    """``(count,)`` float64: the sum of one class's per-image ``values`` ``(n,)`` over each of its ``subgroups``
    ``(n,)`` (ids in ``[0, count)``)."""
    return torch.zeros(count, dtype=torch.float64).index_add_(0, subgroups, values.double())


def start_picks(features: list[torch.Tensor], rule: str, ipc: int) -> list[torch.Tensor]:
    """Per class, ``(n_c,)`` float64: 1 for each of the ``ipc`` images that ``rule`` picks in that class's
    ``features`` ``(n_c, D)`` of the start's fixed network, 0 for the others (``gdrdd.distill.coreset``, as
    ``method.init=<rule>`` starts a run)."""
    picks = []
    for f in features:
        chosen = torch.zeros(len(f), dtype=torch.float64)
        chosen[SELECTIONS[rule](f, ipc)] = 1.0
        picks.append(chosen)
    return picks


def mass_and_size(weights: list[torch.Tensor], subgroups: list[torch.Tensor], count: int) -> dict:
    """Class-averaged share of weight per subgroup, effective batch fraction, and total-variation distance to the
    oracle's per-image weights (0: the oracle's sampling; it also counts how unevenly a subgroup's own images
    are weighted, which the shares do not show)."""
    shares, fractions, distances = [], [], []
    for w, s in zip(weights, subgroups):
        w = w.double() / w.double().sum()
        oracle = balanced_weights(s) / len(s.unique())
        shares.append(subgroup_sums(w, s, count))
        fractions.append(float(1.0 / (w ** 2).sum() / len(w)))
        distances.append(float(0.5 * (w - oracle).abs().sum()))
    mean = lambda values: round(sum(values) / len(values), 4)  # noqa: E731
    return {"subgroup_share": [round(float(v), 4) for v in torch.stack(shares).mean(0)],
            "effective_fraction": mean(fractions), "oracle_distance": mean(distances)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="cifar10_shift")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--features", choices=("pixels", "convnet"), default="pixels")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--powers", type=float, nargs="+", default=[0, 4, 8, 16])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[10])
    parser.add_argument("--clusters", type=int, nargs="*", default=[])
    parser.add_argument("--kmeans-draws", type=int, default=0)
    parser.add_argument("--errors", type=int, nargs="*", default=[])
    parser.add_argument("--upweights", type=float, nargs="+", default=[5, 20, 50])
    parser.add_argument("--starts", nargs="*", choices=sorted(SELECTIONS), default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--out", default="outputs/bench/rarity_mass.json")
    args = parser.parse_args()

    cfg = compose_config([f"dataset={args.dataset}", f"paths.data_dir={args.data_dir}",
                          f"paths.cache_dir={args.cache_dir}" if args.cache_dir else "paths.cache_dir=null"])
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    subgroups = data.class_subgroups
    count = data.shift.subgroups

    rows = {"uniform": mass_and_size([torch.ones(len(s)) for s in subgroups], subgroups, count),
            "oracle balanced_batches": mass_and_size([balanced_weights(s) for s in subgroups], subgroups, count)}
    if args.features == "convnet":
        torch.manual_seed(0)
        net = build.network_factory(cfg, spec)().eval()
        with torch.no_grad():
            spaces = {"convnet": [torch.cat([net.embed(b).flatten(1) for b in x.split(512)])
                                  for x in data.class_images]}
    else:
        spaces = {f"pixels {r}x{r}": [pooled_pixels(x, r) for x in data.class_images] for r in args.resolutions}
    for name, features in spaces.items():
        for k in args.neighbours:
            distances = [kth_neighbour_distance(f, k) for f in features]
            for power in args.powers:
                weights = [weights_from_distances(d, power) for d in distances]
                rows[f"{name}, k {k}, power {power:g}"] = mass_and_size(weights, subgroups, count)
        for k in args.clusters:
            weights = [cluster_balanced_weights(f, k) for f in features]
            rows[f"{name}, {k} clusters balanced"] = mass_and_size(weights, subgroups, count)
        if args.kmeans_draws:
            torch.manual_seed(0)
            weights = [kmeans_batch_weights(f, args.kmeans_draws) for f in features]
            rows[f"{name}, k-means batch 128 of 256"] = mass_and_size(weights, subgroups, count)
    for epochs in args.errors:
        net = build.real_data_encoder(cfg, data, spec, epochs)
        wrong = [misclassified(net, x, c) for c, x in enumerate(data.class_images)]
        error = torch.stack([subgroup_sums(w, s, count) / torch.bincount(s, minlength=count).clamp(min=1)
                             for w, s in zip(wrong, subgroups)])
        error_per_subgroup = [round(float(v), 4) for v in error.mean(0)]
        print(f"network trained {epochs} epochs: training error per subgroup {error_per_subgroup}")
        for up in args.upweights:
            weights = [error_set_weights(w, up) for w in wrong]
            rows[f"errors of {epochs} epochs, up-weight {up:g}"] = {
                **mass_and_size(weights, subgroups, count), "training_error_per_subgroup": error_per_subgroup}
    rarest = count - 1
    for seed in args.seeds if args.starts else []:
        run_cfg = compose_config([f"dataset={args.dataset}", f"model.width={args.width}", f"seed={seed}",
                                  "paths.data_dir=unused"])
        net = build.coreset_network(run_cfg, data, spec)
        features = [features_of(net, x) for x in data.class_images]
        for rule in args.starts:
            picks = start_picks(features, rule, args.ipc)
            rarest_per_class = [int(subgroup_sums(p, s, count)[rarest]) for p, s in zip(picks, subgroups)]
            rows[f"start {rule}, width {args.width}, seed {seed}"] = {
                **mass_and_size(picks, subgroups, count), "rarest_picks_per_class": rarest_per_class}
    for name, row in rows.items():
        print(f"{name:36s} share per subgroup {row['subgroup_share']}  effective fraction "
              f"{row['effective_fraction']}  distance to the oracle {row['oracle_distance']}"
              + (f"  rarest-subgroup picks per class {row['rarest_picks_per_class']}"
                 if "rarest_picks_per_class" in row else ""))
    write_report(args.out, {"dataset": args.dataset, "features": args.features,
                            "keep": list(data.shift.keep), "rows": rows})


if __name__ == "__main__":
    main()
