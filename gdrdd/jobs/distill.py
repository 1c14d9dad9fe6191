"""One distillation run from a composed config: distil, evaluate against a random subset, write outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gdrdd.config.checks import validate
from gdrdd.config.setting import run_setting
from gdrdd.distill.checkpoints import IterationCheckpoint, refuse_finished_run, resumed_config
from gdrdd.distill.group_stats import GroupStatsLogger
from gdrdd.distill.outputs import save_distilled, save_image_grid
from gdrdd.distill.progress import DistillProgressBar
from gdrdd.distill.timer import StepTimer
from gdrdd.errors import NonFiniteError
from gdrdd.evaluation import coverage
from gdrdd.evaluation.callback import EvaluationCallback
from gdrdd.evaluation.tables import comparison_table, write_tables
from gdrdd.jobs import build
from gdrdd.matchers.registry import Method, method
from gdrdd.robust.objective import describe
from gdrdd.utils.files import write_json, write_text


def run(cfg: DictConfig) -> dict[str, Any]:
    """Distil, evaluate and write the outputs of the run ``cfg`` describes (``resume=<folder>``: continue that
    run); return what was written to ``metrics.json``.

    Writes to ``cfg.paths.output_dir``: ``config.yaml`` (resolved), ``run.json`` (at the start),
    ``eval_during.jsonl`` (``eval.at``, ``eval.every``), ``distilled.pt``, ``distilled.png``, ``coverage.png``,
    ``metrics.json``, ``table.md``, ``comparison.csv``, ``group_accuracy.csv``, ``cell_accuracy.csv`` (shift
    benchmarks), ``group_stats.jsonl`` and the logs of the configured loggers (``csv/metrics.csv`` always).
    """
    cfg, checkpoint = resumed_config(cfg)
    validate(cfg)
    entry = method(cfg.method.name)
    if entry.reference_iterations and cfg.iterations < entry.reference_iterations and rank_zero_only.rank == 0:
        print(short_budget_notice(cfg.iterations, entry, experiment_choice()), flush=True)
    build.fetch_data(cfg)
    out = Path(cfg.paths.output_dir)
    refuse_finished_run(out, resuming=checkpoint is not None)
    out.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        write_text(out / "config.yaml", OmegaConf.to_yaml(config))
    L.seed_everything(cfg.seed, workers=False, verbose=False)

    spec = build.dataset_spec(cfg)
    identity = run_identity(cfg, config, spec.name, list(spec.class_names))
    if rank_zero_only.rank == 0:
        write_json(out / "run.json", identity)  # with eval_during.jsonl: what gdrdd.report reads of a run in progress
    data = build.datamodule(cfg, spec)
    data.setup()  # reads the data (a missing folder fails here, before any work)
    loggers = [hydra.utils.instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []
    timer = StepTimer()
    evaluation = EvaluationCallback(build.evaluator(cfg, data, spec), every=cfg.eval.every, at=list(cfg.eval.at),
                                    run_dir=out)
    # The checkpoint callback first: the final checkpoint is on disk before the (long) final evaluation.
    callbacks = [timer, IterationCheckpoint(out, cfg.checkpoint.every), evaluation,
                 GroupStatsLogger(out, spec.class_names, cfg.dashboard.group_stats_every)]
    grouping_network = build.evaluation_features(cfg, spec)
    if grouping_network is not None:
        callbacks.insert(0, grouping_network)  # trains before the step timer starts
    if cfg.trainer.enable_progress_bar:
        callbacks.insert(0, DistillProgressBar())  # first, so its bar is closed before the final evaluation's
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    data.to(trainer.strategy.root_device)

    scored: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}
    if cfg.method.name == "random":
        images, labels = data.random_subset(cfg.ipc)
        training, label_kind = (images, labels), "hard"
        scored["random"] = evaluation.evaluator.evaluate(images, labels, name="random")
        _log_metrics(loggers, {f"eval/{k}": v for k, v in scored["random"].items()}, 0)
    else:
        module = build.distill_module(cfg, data, spec)
        extra["factor"] = module.parameterization.factor
        try:
            trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
        except NonFiniteError:  # keep the last good synthetic set beside the last good checkpoint
            labels, label_kind = module.stored_labels()
            save_distilled(out / "distilled.pt", module.stored_inputs(), labels, spec, config,
                           {**extra, **data.preprocess.state()}, label_kind=label_kind)
            raise
        if not trainer.is_global_zero:
            return {}  # in a distributed run, rank 0 evaluates and writes
        images = module.stored_inputs()  # stored (compact), as network inputs
        labels, label_kind = module.stored_labels()
        training = module.training_set()  # decoded: what networks train on
        if module.evaluation_lr() is not None:
            extra["learned_lr"] = module.evaluation_lr()
        # With zero iterations Lightning stops before on_train_end, so score the initial set here.
        scored["distilled"] = (evaluation.final_metrics
                               or evaluation.evaluator.evaluate(*training, lr=module.evaluation_lr()))
        if cfg.eval.baseline:
            baseline = data.random_subset(cfg.ipc, torch.Generator().manual_seed(cfg.seed))
            scored["random"] = evaluation.evaluator.evaluate(*baseline, name="random")
            _log_metrics(loggers, {f"baseline/{k}": v for k, v in scored["random"].items()}, trainer.global_step)

    save_distilled(out / "distilled.pt", images, labels, spec, config, {**extra, **data.preprocess.state()},
                   label_kind=label_kind)
    grid = save_image_grid(out / "distilled.png", data.preprocess.inverse(images), per_row=cfg.ipc)
    figures = {"distill/synthetic_images": grid}
    if cfg.eval.coverage:
        figures["eval/coverage"] = coverage.plot_run(out / "coverage.png", data, build.network_factory(cfg, spec),
                                                     *training, coverage.run_title(config), spec.class_names)
    for logger in loggers:
        if hasattr(logger, "log_image"):
            for key, path in figures.items():
                logger.log_image(key=key, images=[str(path)])
    result = {**identity, **timer.summary(), "scored": scored,
              "during": [{"iteration": n, "metrics": m} for n, m in evaluation.during().items()]}
    write_json(out / "metrics.json", result)
    write_tables(out, loggers, scored, evaluation.evaluator.group_sizes(), evaluation.evaluator.cells())
    header = (f"{spec.name}, method={cfg.method.name}, {describe(cfg.cvar)}, IPC {cfg.ipc}, "
              f"{iterations_run(cfg.iterations, entry)}, {cfg.eval.nets} evaluation nets x {cfg.eval.epochs} epochs")
    table = comparison_table(scored)
    write_text(out / "table.md", f"{header}\n\n{table}\n")
    print(f"\n{header}\n{table}\nrun folder: {out}")
    for logger in loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # flush and close, so each run of a multirun is its own W&B run
    return result


def run_identity(cfg: DictConfig, config: dict[str, Any], dataset: str, class_names: list[str]) -> dict[str, Any]:
    """What names a run in ``run.json`` and ``metrics.json``: method, data set, IPC, seed, budget, the start, and
    ``setting`` (every config value that can change the result: the report's key)."""
    return {"method": cfg.method.name, "dataset": dataset, "ipc": cfg.ipc, "seed": cfg.seed,
            "setting": run_setting(config, class_names), "cvar": config["cvar"],
            "shift": config["dataset"].get("shift"), "iterations": cfg.iterations,
            "init": {k: cfg.method[k] for k in ("init", "init_epochs") if k in cfg.method}}


def iterations_run(iterations: int, entry: Method) -> str:
    """``80 / 20,000 iterations (below the reference)``: the run's budget against its method's reference."""
    if not entry.reference_iterations:
        return f"{iterations:,} iterations"
    below = " (below the reference)" if iterations < entry.reference_iterations else ""
    return f"{iterations:,} / {entry.reference_iterations:,} iterations{below}"


def short_budget_notice(iterations: int, entry: Method, experiment: str | None) -> str:
    """The first line of a run shorter than its method's reference: how much shorter, and how to run the
    reference (``experiment``: the preset Hydra composed, if known)."""
    share = 100 * iterations / entry.reference_iterations
    source = f"the budget of experiment={experiment}" if experiment else "a budget below the reference"
    return (f"budget: {iterations_run(iterations, entry)}, {share:.3g} % of method={entry.name}'s reference, "
            f"{source}; for the reference set iterations={entry.reference_iterations} or use a preset such as "
            f"experiment={entry.name}_cifar10_ipc10 (conf/experiment/).")


def experiment_choice() -> str | None:
    """The ``experiment`` preset Hydra composed (``None`` outside a Hydra run, or with ``experiment=null``)."""
    return HydraConfig.get().runtime.choices.get("experiment") if HydraConfig.initialized() else None


def _log_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
