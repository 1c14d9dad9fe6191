"""Coverage plots of saved runs, side by side:

    python -m gdrdd.jobs.coverage RUN_A [RUN_B] [--out compare.png] [--data-dir DIR] [--method pca|tsne]

draws one panel per run folder (``distilled.pt`` of one data set), in one shared projection
(``gdrdd.evaluation.coverage``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from gdrdd.evaluation.coverage import PROJECTIONS, coverage_panels, draw, fixed_network, run_title, sample_real
from gdrdd.jobs import build


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with distilled.pt) of one data set")
    parser.add_argument("--out", type=Path, default=Path("coverage_compare.png"))
    parser.add_argument("--data-dir", default=None, help="the data folder, if not the one the runs were made with")
    parser.add_argument("--method", default="pca", choices=PROJECTIONS)
    parser.add_argument("--real", type=int, default=2000, help="real images to draw")
    args = parser.parse_args(argv)
    blobs = [torch.load(run / "distilled.pt", map_location="cpu", weights_only=True) for run in args.runs]
    cfg = OmegaConf.create(blobs[0]["config"])
    if args.data_dir:
        cfg.paths.data_dir = args.data_dir
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    real, labels = sample_real(data.class_images, args.real, seed=0)
    sets = {f"{run.name}: {run_title(b['config'])}": (b["images"], b["labels"]) for run, b in zip(args.runs, blobs)}
    net = fixed_network(build.network_factory(cfg, spec), "cpu")
    path = draw(args.out, coverage_panels(net, real, labels, sets, spec.num_classes, args.method), spec.class_names)
    print(f"coverage plot: {path}")
    return path


if __name__ == "__main__":
    main()
