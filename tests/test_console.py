"""What a run prints: one line per message, no Lightning tips or internal warnings on the terminal (the log file
keeps every record), the progress bars of distillation and evaluation, and the objective in the header."""

import io
import logging

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from gdrdd.distill.progress import DistillProgressBar
from gdrdd.jobs.distill import run
from gdrdd.robust.objective import describe
from gdrdd.utils.console import LIGHTNING_LOGGERS, ConsoleFormatter, quiet
from gdrdd.utils.progress import job_label


@pytest.fixture
def hydra_like_logging(tmp_path):
    """Root handlers as Hydra's job logging makes them (conf/hydra/default.yaml): console and file."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    console_stream = io.StringIO()
    console = logging.StreamHandler(console_stream)
    console.setFormatter(ConsoleFormatter("%(message)s"))
    file = logging.FileHandler(tmp_path / "run.log")
    root.handlers, root.level = [console, file], logging.INFO
    lightning = {name: logging.getLogger(name) for name in LIGHTNING_LOGGERS}
    lightning_state = {name: (logger.handlers[:], logger.propagate) for name, logger in lightning.items()}
    yield console_stream, tmp_path / "run.log"
    file.close()
    root.handlers, root.level = saved
    for name, (handlers, propagate) in lightning_state.items():
        lightning[name].handlers, lightning[name].propagate = handlers, propagate


def test_each_message_once_tips_only_in_the_log_file(hydra_like_logging):
    console, log_file = hydra_like_logging
    lightning_console = io.StringIO()
    logging.getLogger("lightning").addHandler(logging.StreamHandler(lightning_console))  # as Lightning does
    quiet()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.info("GPU available: False, used: False")
    rank_zero.info("💡 Tip: For seamless cloud logging, try installing an advertised package")
    rank_zero.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
    logging.getLogger("gdrdd.matchers.gradient").warning("cvar.target=network has no effect with outer_loop=1")
    assert console.getvalue().splitlines() == ["GPU available: False, used: False",
                                               "warning: cvar.target=network has no effect with outer_loop=1"]
    assert lightning_console.getvalue() == ""  # Lightning's own handler is gone: no second copy
    logged = log_file.read_text()
    assert "💡 Tip" in logged and "Trainer.fit" in logged and logged.count("GPU available") == 1


def test_a_run_shows_iteration_and_evaluation_bars_and_names_its_objective(tiny, capsys, caplog):
    caplog.set_level(logging.INFO)
    run(tiny("trainer.enable_progress_bar=true", "cvar=paper", "eval.baseline=true"))
    out = capsys.readouterr().out
    assert "distill 3/3" in out and "Epoch" not in out
    assert "eval distilled 1/1" in out and "eval random 1/1" in out
    assert "mnist_mini, method=dm, CVaR alpha 0.8, IPC 2," in out
    assert "weights_only" not in caplog.text  # checkpoints are saved with the whole state, said explicitly


def test_distillation_bar_says_distill_and_shows_only_the_loss():
    bar = DistillProgressBar()
    assert bar.train_description == "distill" and bar.BAR_FORMAT.startswith("{desc} {n_fmt}/{total_fmt}")

    class Trainer:
        progress_bar_metrics = {"distill/loss": 1.5, "robust/risk": 2.0}
        loggers = []

    assert bar.get_metrics(Trainer(), None) == {"loss": 1.5}


def test_multirun_jobs_label_their_bars(compose):
    cfg = compose(hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.job.num = 3
    HydraConfig.instance().set_config(cfg)
    try:
        assert job_label() == "job 3 | "
    finally:
        HydraConfig.instance().cfg = None
    assert job_label() == ""


def test_objective_names():
    assert describe({"name": "none"}) == "plain (cvar=none)"
    assert describe({"name": "cvar", "alpha": 0.8, "mix": 0.5, "target": "matching"}) == "CVaR alpha 0.8, mix 0.5"
    assert describe({"name": "cvar", "alpha": 0.95, "mix": 1.0, "target": "network", "groups": "known"}) == \
        "CVaR alpha 0.95, target network, known groups"
