"""The ``task=teacher`` job: train the teacher of ``eval.labels=teacher`` once and cache it
(``gdrdd.evaluation.teacher``). A teacher already in the cache is kept, not retrained."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from gdrdd.evaluation.teacher import save_teacher, teacher_path
from gdrdd.experts.cache import training_description
from gdrdd.jobs import build, real_data
from gdrdd.models.fit import TrainSettings, predict, train_network
from gdrdd.utils.files import write_json


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the teacher of ``cfg``'s data set and model with the ``teacher`` settings (SGD, a step of x0.1 at
    each milestone, per-sample augmentation, seeded by ``teacher.seed``) on the whole real training set; write it
    to the cache and ``teacher.json`` (its path and test accuracy) to the run folder."""
    out, spec, data = real_data.start(cfg)
    path = teacher_path(cfg, spec)
    make_network = build.network_factory(cfg, spec)
    summary: dict[str, Any] = {"teacher": str(path), "trained_now": not path.is_file()}
    if summary["trained_now"]:
        t = cfg.teacher
        settings = TrainSettings(epochs=t.epochs, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                 batch_size=t.batch_size, milestones=tuple(t.milestones), gamma=0.1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed)
            net = make_network().to(data.device)
        train_network(net, *data.training_set(), settings, build.augmentation(t.augment, spec),
                      torch.Generator().manual_seed(t.seed))
        save_teacher(path, net, {**training_description(cfg, spec),
                                 "teacher": OmegaConf.to_container(cfg.teacher, resolve=True)})
    net = make_network().to(data.device)
    net.load_state_dict(torch.load(path, map_location=data.device, weights_only=True))
    preds, _ = predict(net.eval(), data.test_images, data.test_labels)
    summary["test_accuracy"] = float((preds == data.test_labels).float().mean() * 100)
    write_json(out / "teacher.json", summary)
    print(f"\nteacher {'trained' if summary['trained_now'] else 'found'}: {path} "
          f"(test accuracy {summary['test_accuracy']:.2f} %)")
    return summary
