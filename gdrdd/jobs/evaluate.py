"""Scoring a saved distilled set (gdrdd's or another tool's) with the evaluation protocol: ``evaluate.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from gdrdd.config.checks import check_dataset, check_evaluation, check_factor
from gdrdd.config.schema import check_types
from gdrdd.distill.parameterization import Parameterization
from gdrdd.errors import ConfigError
from gdrdd.evaluation.image_datasets import align_labels
from gdrdd.evaluation.labels import training_targets
from gdrdd.evaluation.saved_sets import load_distilled
from gdrdd.evaluation.tables import comparison_table
from gdrdd.jobs import build
from gdrdd.utils.checks import require
from gdrdd.utils.files import write_json, write_text
from gdrdd.utils.runtime import make_deterministic


def run(cfg: DictConfig) -> dict[str, Any]:
    """Load ``cfg.path``, score it, print the table, write ``metrics.json`` and ``table.md`` to the run folder."""
    distilled = load_distilled(cfg.path, cfg.format, cfg.exp, cfg.factor, labels=cfg.labels,
                               iteration=cfg.iteration)  # DistilledFileError is a ConfigError
    if distilled.config is not None:  # gdrdd's own file: its data set (and preprocessing) decide, whole
        require(cfg.factor == 1 or cfg.factor == distilled.factor, "factor", cfg.factor,
                f"1 (the default) for gdrdd's distilled.pt, which records its own factor ({distilled.factor})")
        with open_dict(cfg):  # replaced, not merged: its keys (shift, download, ...) need not be in the default's
            cfg.dataset = distilled.config["dataset"]
    check_types(cfg)
    check_dataset(cfg)
    check_evaluation(cfg)
    check_factor("factor", distilled.factor, cfg.dataset)
    build.fetch_data(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, verbose=False)
    make_deterministic(cfg.trainer.get("deterministic"))
    spec = build.dataset_spec(cfg)
    expected = (spec.channels, spec.resolution, spec.resolution)
    if tuple(distilled.images.shape[1:]) != expected:
        raise ConfigError(f"the images in {cfg.path} are {tuple(distilled.images.shape[1:])}, but dataset="
                          f"{spec.name} has {expected}; choose the data set they were distilled from")
    labels = align_labels(distilled.labels, distilled.class_names, spec.class_names, str(cfg.path))
    top = int(labels.max()) + 1 if labels.dim() == 1 else labels.shape[1]
    if top > spec.num_classes or (labels.dim() == 1 and int(labels.min()) < 0):
        raise ConfigError(f"the labels in {cfg.path} need {top} classes, but dataset={spec.name} has "
                          f"{spec.num_classes}; choose the data set they were distilled from")
    require(distilled.format != "idc" or len(labels) % spec.num_classes == 0, "path", str(cfg.path),
            f"an IDC data.pt with the same number of images for each of the {spec.num_classes} classes of "
            f"{spec.name}; it holds {len(labels)} images")
    data = build.datamodule(cfg, spec)
    data.setup()
    device = build.device(cfg)
    data.to(device)
    lr = cfg.lr if cfg.lr is not None else distilled.lr
    evaluator = build.evaluator(cfg, data, spec)
    decoding = Parameterization(data.preprocess, factor=distilled.factor, pixels=distilled.pixels)
    images, labels = decoding.decode_set(distilled.images.to(device), labels.to(device))
    labels = training_targets(labels, distilled.label_kind)  # logits: networks train on softmax(logits)
    scored = {"distilled": evaluator.evaluate(images, labels, lr=lr)}
    result = {"path": str(cfg.path), "format": distilled.format, "labels": distilled.label_kind,
              "dataset": spec.name, "factor": distilled.factor,
              "images": distilled.images.shape[0], "decoded_images": len(images),
              "lr": lr if lr is not None else cfg.eval.lr, "scored": scored}
    write_json(out / "metrics.json", result)
    table = comparison_table(scored)
    write_text(out / "table.md", table + "\n")
    print(f"\n{cfg.path} ({distilled.format}, {distilled.label_kind} labels, {spec.name}, "
          f"{distilled.images.shape[0]} images), "
          f"{cfg.eval.nets} evaluation nets x {cfg.eval.epochs} epochs\n{table}\nrun folder: {out}")
    return result
