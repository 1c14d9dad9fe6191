"""The ``task=teacher`` job: train the teacher of ``eval.labels=teacher`` once and cache it
(``gdrdd.evaluation.teacher``). A teacher already in the cache is kept, not retrained."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from gdrdd.evaluation.teacher import load_teacher, save_teacher, teacher_description, teacher_path
from gdrdd.jobs import build, real_data
from gdrdd.models.fit import TrainSettings, train_network
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
        net = train_network(net, *data.training_set(), settings, build.augmentation(t.augment, spec),
                            torch.Generator().manual_seed(t.seed))
        save_teacher(path, net, teacher_description(cfg, spec))
    else:
        net = load_teacher(path, make_network, data.device, build.teacher_command())
    summary["test_accuracy"] = real_data.test_accuracy(net, data)
    write_json(out / "teacher.json", summary)
    print(f"\nteacher {'trained' if summary['trained_now'] else 'found'}: {path} "
          f"(test accuracy {summary['test_accuracy']:.2f} %)")
    return summary
