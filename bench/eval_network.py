"""One evaluation network of the protocol, gdrdd against the original's ``evaluate_synset``, in one process.

    python bench/eval_network.py --reference-dir DIR [--images 100] [--epochs 300] [--test 10000] [--rounds 3]
                                 [--override eval.channels_last=true ...] [--out outputs/bench/eval_network.json]

``DIR`` is a local copy of VICO-UoE/DatasetCondensation (its ``utils.py`` and ``networks.py`` are imported, not
edited); run the script with a Python that has the original's dependencies (torch, torchvision, scipy) and gdrdd.

Both sides train a fresh ConvNet-3 (CIFAR-10 sizes, instance norm) on the same ``--images`` synthetic images (10
classes) with the DM/DSA evaluation protocol: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, per-sample
DSA (color_crop_cutout_flip_scale_rotate), the lr divided by 10 halfway; then test on ``--test`` images. The
original: ``utils.get_network`` + ``utils.evaluate_synset`` (which trains ``epochs + 1`` epochs and tests through a
DataLoader of batch 256); gdrdd: ``models.fit.train_network`` + ``predict`` with the settings of ``eval=default``
and any ``--override`` settings (``eval.precision=bf16-mixed``: gdrdd's training and test under bfloat16 autocast,
as its evaluator runs them; ``eval.compile=true``: both through ``torch.compile``, the first round including the
compilation; the original's stay eager, in float32). The corrupted test copies gdrdd's evaluator also scores
are not part of either. Speed does not depend on pixel values, so the images are random. Rounds alternate the two
(original first); the report has the median seconds of each, their ratio and the last round's test accuracy of both
(chance level on random data; printed only as a check that both ran).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import compose_config, write_report  # noqa: E402

from gdrdd.jobs import build  # noqa: E402
from gdrdd.models.fit import predict, train_network  # noqa: E402
from gdrdd.utils.runtime import autocast  # noqa: E402

CLASSES = 10
STRATEGY = "color_crop_cutout_flip_scale_rotate"


def synthetic_data(images: int, test: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random normalised CIFAR-sized train and test images with class-major train labels."""
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(images, 3, 32, 32, generator=g)
    train_labels = torch.arange(CLASSES).repeat_interleave(images // CLASSES)
    test_images = torch.randn(test, 3, 32, 32, generator=g)
    test_labels = torch.randint(CLASSES, (test,), generator=g)
    return train, train_labels, test_images, test_labels


def original_network(utils, epochs: int, images: torch.Tensor, labels: torch.Tensor,
                     test_loader: DataLoader) -> tuple[float, float]:
    """Seconds and test accuracy (%) of one ``evaluate_synset`` network, as the original scripts call it."""
    args = SimpleNamespace(lr_net=0.01, epoch_eval_train=epochs, batch_train=256, device="cpu", dsa=True,
                           dsa_strategy=STRATEGY, dsa_param=utils.ParamDiffAug(), dc_aug_param=None)
    start = time.perf_counter()
    net = utils.get_network("ConvNet", 3, CLASSES, (32, 32))
    _, _, acc = utils.evaluate_synset(0, net, images, labels, test_loader, args)
    return time.perf_counter() - start, 100 * float(acc)


def gdrdd_network(cfg, epochs: int, images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                  test_labels: torch.Tensor, seed: int) -> tuple[float, float]:
    """Seconds and test accuracy (%) of one network of gdrdd's evaluation protocol (``eval=default``)."""
    spec = build.dataset_spec(cfg)
    settings = replace(build.evaluation_settings(cfg), epochs=epochs)
    start = time.perf_counter()
    net = build.network_factory(cfg, spec)()
    with autocast("cpu", cfg.eval.precision):  # as the evaluator trains and tests (eval.precision)
        trained = train_network(net, images, labels, settings, build.augmentation(cfg.eval.augment, spec),
                                torch.Generator().manual_seed(seed))
        preds, _ = predict(trained, test_images, test_labels)
    return time.perf_counter() - start, 100 * float((preds == test_labels).double().mean())


def import_original(reference_dir: Path):
    """The original's ``utils`` module, imported from its copy's folder."""
    sys.path.insert(0, str(reference_dir.resolve()))
    import utils  # the original's module

    return utils


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--images", type=int, default=100, help="synthetic images (a multiple of 10)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--override", nargs="*", default=[], help="train.py settings for gdrdd's network")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/eval_network.json"))
    args = parser.parse_args()
    if args.images < CLASSES or args.images % CLASSES:
        parser.error(f"--images {args.images}: a positive multiple of {CLASSES} (the same number per class)")
    if not (args.reference_dir / "utils.py").is_file():
        parser.error(f"--reference-dir {args.reference_dir} has no utils.py: give a copy of "
                     "VICO-UoE/DatasetCondensation's files")
    utils = import_original(args.reference_dir)
    cfg = compose_config(["dataset=cifar10", "eval=default", "model=convnet", *args.override])
    images, labels, test_images, test_labels = synthetic_data(args.images, args.test)
    test_loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=256, shuffle=False, num_workers=0)
    seconds = {"original": [], "gdrdd": []}
    accuracy = {}
    for r in range(args.rounds):
        runs = {"original": partial(original_network, utils, args.epochs, images, labels, test_loader),
                "gdrdd": partial(gdrdd_network, cfg, args.epochs, images, labels, test_images, test_labels, r)}
        for name, network in runs.items():
            took, accuracy[name] = network()
            seconds[name].append(took)
        print(f"round {r + 1}/{args.rounds}: original {seconds['original'][-1]:.1f} s, "
              f"gdrdd {seconds['gdrdd'][-1]:.1f} s", flush=True)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    ratio = median["gdrdd"] / median["original"]
    print("| program | s / network (median) | test acc (%, random data) |\n|---|---|---|")
    for name in seconds:
        print(f"| {name} | {median[name]:.2f} | {accuracy[name]:.1f} |")
    print(f"gdrdd / original: x{ratio:.2f} ({args.images} images, {args.epochs} epochs, {args.test} test images, "
          f"{torch.get_num_threads()} threads)")
    write_report(args.out, {"images": args.images, "epochs": args.epochs, "test": args.test, "rounds": args.rounds,
                            "override": args.override,
                            "seconds": seconds, "median_seconds": median, "ratio": ratio, "accuracy": accuracy})


if __name__ == "__main__":
    main()
