"""Where DM's robust objective pulls each class's synthetic images, by true subgroup, on a shift benchmark.

    python bench/cvar_mass.py --data-dir ~/data --sets start RUN/distilled.pt ... [--experiment reduced_dm]
        [--settings cvar=default cvar=known "cvar=default cvar.alpha=0.95"] [--draws 40] [--seed 0]
        [--out outputs/bench/cvar_mass.json]

DM's per-group objective for class c, ``sum_g w_g || m_g - s ||^2`` (``m_g``: the mean embedding of group g's
real images, ``s``: the class's mean synthetic embedding, ``w_g``: the objective's effective group weight, the
mix of the mean's and the CVaR tail's), has the gradient in ``s`` of ``W || m_w - s ||^2`` with
``W = sum_g w_g`` and ``m_w = sum_g w_g m_g / W``: it pulls the synthetic mean toward the real embeddings, image
``i`` weighted ``w_g / n_g`` (``n_g``: group g's real images). Plain DM weighs every image of the batch alike, so
a subgroup's share of the pull is its share of the batch (about its kept size's share). This script draws real
batches as a run does (``method.batch_real`` per class, uniform) and a fresh network for each, groups and
weighs them with the setting's own matcher and risk measure (DSA included) against a given synthetic set, and
prints the share of the pull on each true subgroup, averaged over the classes it pulls (a CVaR tail alone can
leave a class out of a step; ``classes pulled``: the share of draws x classes with any pull). The risk
measure's weights depend on the synthetic set, so a set is named with each row: ``start`` (the seed's real
start, DM's initial images) or a ``distilled.pt`` file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_config, write_report  # noqa: E402

from gdrdd.jobs import build  # noqa: E402
from gdrdd.robust.grouping import Grouping, KnownGroups  # noqa: E402
from gdrdd.robust.objective import matching_objective  # noqa: E402


class RecordedGrouping:
    """A ``Grouping`` that keeps the ids ``(C, n)`` of the last batch it assigned."""

    def __init__(self, grouping: Grouping) -> None:
        self.grouping, self.ids = grouping, None

    def groups_per_class(self, ipc: int) -> int:
        return self.grouping.groups_per_class(ipc)

    def assign(self, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        self.ids = self.grouping.assign(real, synthetic)
        return self.ids


def pull_shares(ids: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, subgroups: torch.Tensor,
                count: int) -> torch.Tensor:
    """``(C, count)`` float64: each class's share of the pull on each true subgroup, from the group ids ``(C, n)``
    of a batch, the effective group weights and real-image counts ``(C * k,)`` and the images' subgroups ``(C, n)``
    (ids in ``[0, count)``). Image ``i`` of class ``c`` pulls ``weights[g] / counts[g]``, ``g = c * k + ids[c, i]``.
    A class the objective does not pull at all (no weight on any of its groups: the CVaR tail alone can leave
    classes out) has a row of NaN."""
    c, k = ids.shape[0], weights.numel() // ids.shape[0]
    per_image = (weights.double().view(c, k) / counts.double().view(c, k).clamp(min=1)).gather(1, ids)
    shares = torch.zeros(c, count, dtype=torch.float64).scatter_add_(1, subgroups, per_image)
    total = shares.sum(1, keepdim=True)
    return torch.where(total > 0, shares / total, torch.nan)


def synthetic_set(name: str, cfg, data, spec) -> torch.Tensor:
    """``(C, ipc, ch, H, W)`` network inputs: the seed's real start (``start``) or a ``distilled.pt``'s images."""
    if name == "start":
        torch.manual_seed(cfg.seed)
        images = build.initial_images(cfg, data, spec, build.parameterization(cfg, data))
    else:
        images = torch.load(name, map_location="cpu", weights_only=False)["images"]
    return images.view(spec.num_classes, cfg.ipc, *images.shape[1:])


def measure(cfg, data, spec, synthetic: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """``(draws, C, count)`` pull shares of the setting ``cfg`` against ``synthetic``, one per drawn batch."""
    grouping, risk = matching_objective(cfg, spec.num_classes)
    recorded = RecordedGrouping(grouping)
    matcher = build.matcher(cfg, data, spec)
    generator = torch.Generator().manual_seed(seed)
    shares = []
    for draw in range(draws):
        torch.manual_seed(seed * 100_003 + draw)  # the step's network and DSA draw
        real, subgroups = data.sample_real(cfg.method.batch_real, generator, uniform=True, with_subgroups=True)
        if isinstance(grouping, KnownGroups):
            grouping.set_batch(subgroups)
        matcher.start_iteration("cpu")
        with torch.no_grad():
            out = matcher.group_losses(real, synthetic, recorded)
            weights = risk(out.losses, out.counts).tail_weights
        shares.append(pull_shares(recorded.ids, weights, out.counts, subgroups, data.shift.subgroups))
    return torch.stack(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--experiment", default="reduced_dm")
    parser.add_argument("--sets", nargs="+", default=["start"], help="start, or distilled.pt files")
    parser.add_argument("--settings", nargs="+", default=["cvar=none", "cvar=default", "cvar=known"],
                        help="each a space-separated list of overrides")
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench/cvar_mass.json")
    args = parser.parse_args()

    base = [f"experiment={args.experiment}", f"paths.data_dir={args.data_dir}", f"seed={args.seed}",
            "method.compile=false"]
    cfg = compose_config(base)
    if cfg.method.name != "dm":
        parser.error(f"--experiment {args.experiment} distils with method {cfg.method.name}; this measurement "
                     "needs DM (the pull of a group-weighted mean embedding), e.g. --experiment reduced_dm")
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    if data.shift is None:
        parser.error(f"the data set of --experiment {args.experiment} has no known subgroups; use a "
                     "subpopulation-shift benchmark (dataset=cifar10_shift)")
    keep = [float(k) for k in data.shift.keep]
    rows = []
    for name in args.sets:
        synthetic = synthetic_set(name, cfg, data, spec)
        for setting in args.settings:
            setting_cfg = compose_config([*base, *setting.split()])
            shares = measure(setting_cfg, data, spec, synthetic, args.draws, args.seed)
            pulled = (~shares.isnan().any(2)).double().mean()  # the share of (draw, class) pairs pulled at all
            per_class = shares.nanmean(0)
            row = {"set": name, "setting": setting, "share": [round(float(v), 4) for v in shares.nanmean((0, 1))],
                   "share_per_class": [[round(float(v), 4) for v in c] for c in per_class],
                   "classes_pulled": round(float(pulled), 4)}
            rows.append(row)
            print(f"{name:48s} {setting:36s} share of the pull per subgroup (kept "
                  f"{', '.join(f'{k:g}' for k in keep)}): {row['share']}; classes pulled {row['classes_pulled']}")
    write_report(args.out, {"experiment": args.experiment, "keep": keep, "draws": args.draws, "seed": args.seed,
                            "rows": rows})


if __name__ == "__main__":
    main()
