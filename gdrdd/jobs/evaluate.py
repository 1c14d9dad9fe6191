"""Scoring a saved distilled set (gdrdd's or another tool's) with the evaluation protocol: ``evaluate.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, open_dict

from gdrdd.config.checks import check_dataset, check_ddranking, check_evaluation, check_factor
from gdrdd.config.schema import check_types
from gdrdd.distill.parameterization import Parameterization
from gdrdd.errors import ConfigError
from gdrdd.evaluation.ddranking import Accuracies, scores
from gdrdd.evaluation.image_datasets import align_labels
from gdrdd.evaluation.labels import hard_labels, training_targets
from gdrdd.evaluation.saved_sets import load_distilled
from gdrdd.evaluation.tables import comparison_table
from gdrdd.evaluation.teacher import teacher_path
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
    check_ddranking(cfg)
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
    ranking = (ddranking(cfg, data, spec, images, labels, distilled.label_kind, lr, scored, len(distilled.images))
               if cfg.ddranking.enabled else None)
    result = {"path": str(cfg.path), "format": distilled.format, "labels": distilled.label_kind,
              "dataset": spec.name, "factor": distilled.factor,
              "images": distilled.images.shape[0], "decoded_images": len(images),
              "lr": lr if lr is not None else cfg.eval.lr, "scored": scored,
              **({"ddranking": ranking} if ranking is not None else {})}
    write_json(out / "metrics.json", result)
    table = comparison_table(scored) + ("" if ranking is None else "\n\n" + ranking_table(ranking))
    write_text(out / "table.md", table + "\n")
    print(f"\n{cfg.path} ({distilled.format}, {distilled.label_kind} labels, {spec.name}, "
          f"{distilled.images.shape[0]} images), "
          f"{cfg.eval.nets} evaluation nets x {cfg.eval.epochs} epochs\n{table}\nrun folder: {out}")
    return result


def ddranking(cfg: DictConfig, data, spec, images: torch.Tensor, labels: torch.Tensor, kind: str,
              lr: float | None, scored: dict[str, dict[str, float]], stored: int) -> dict[str, Any]:
    """DD-Ranking's scores (``gdrdd.evaluation.ddranking``) of the set already scored in ``scored["distilled"]``
    (under its own label rule: its labels, or the teacher's with ``eval.labels=teacher``): the set again with its
    hard labels and without augmentation (nor CutMix); a random real subset of the set's stored images per class
    (``stored`` in all; seeded by ``seed``) with and without augmentation under the same label rule, which for a
    soft-label set is the teacher's (``task=teacher``); the whole real training set with hard labels
    (``ddranking.real_accuracy`` if given: it costs a full training). The random subset and the real set train
    with the protocol's ``eval.lr``. Without the teacher a soft-label set gets its HLR and the reason."""
    def evaluator(rule: str, augment: bool):
        scoring = cfg.copy()
        scoring.eval.models, scoring.eval.labels = [], rule  # the run's network only: the scores compare sets
        if not augment:
            scoring.eval.augment, scoring.eval.cutmix = "none", 0.0
        return build.evaluator(scoring, data, spec)

    set_rule = cfg.eval.get("labels", "own")
    random_rule = "teacher" if kind != "hard" else set_rule
    hard = hard_labels(labels)
    own = evaluator("own", augment=True)
    syn_hard = (scored["distilled"]["acc"] if kind == "hard" and set_rule == "own"
                else own.evaluate(images, hard, lr=lr, name="hard labels")["acc"])
    real_hard = (cfg.ddranking.real_accuracy if cfg.ddranking.real_accuracy is not None
                 else own.evaluate(*data.training_set(), name="real")["acc"])
    accuracy = {"syn": scored["distilled"]["acc"], "syn_hard": syn_hard, "real_hard": real_hard}
    if random_rule == "teacher" and not teacher_path(cfg, spec).is_file():
        return {"accuracy": accuracy, "hlr": (real_hard - syn_hard) / 100,
                "missing": "IOR, LRS and ARS label the random subset with a teacher, as the set's labels are soft: "
                           f"train it first with {build.teacher_command()}"}
    random_images, random_labels = data.random_subset(max(1, stored // spec.num_classes),
                                                      torch.Generator().manual_seed(cfg.seed))
    accuracy.update(
        random=evaluator(random_rule, augment=True).evaluate(random_images, random_labels, name="random")["acc"],
        syn_no_aug=evaluator(set_rule, augment=False).evaluate(images, labels, lr=lr, name="no augmentation")["acc"],
        random_no_aug=evaluator(random_rule, augment=False).evaluate(random_images, random_labels,
                                                                    name="random")["acc"])
    return {"accuracy": accuracy, "random_labels": random_rule,
            **scores(Accuracies(**accuracy), cfg.ddranking.weight, cfg.ddranking.gamma)}


def ranking_table(ranking: dict[str, Any]) -> str:
    """DD-Ranking's scores as a Markdown table (accuracies in percent; HLR and IOR as fractions)."""
    rows = [f"| accuracy, {k.replace('_', ' ')} (%) | {v:.2f} |" for k, v in ranking["accuracy"].items()]
    rows += [f"| {k.upper().replace('_PERCENT_POINTS', ' (DD-Ranking 0.2.0 units)')} | {ranking[k]:.4g} |"
             for k in ("hlr", "ior", "lrs", "ars", "lrs_percent_points", "ars_percent_points") if k in ranking]
    if "missing" in ranking:
        rows.append(f"| not computed | {ranking['missing']} |")
    return "\n".join(["| DD-Ranking | value |", "|---|---|", *rows])
