"""The reduced converged protocol's presets (experiment=reduced_dm|dsa|idc): they compose with the settings
docs/robust.md states, and run end to end on the embedded shift data set with a tiny budget (DM in the default run;
DSA and IDC, a few minutes on 2 cores, with -m slow); DM's preset also runs on a standard data set (the paper's own
protocol: accuracy, the worst of the k-means test groups, noise, blur, inverted)."""

import pytest

from gdrdd.cli import train as run
from gdrdd.config.checks import check_evaluation, validate
from gdrdd.errors import ConfigError
from gdrdd.jobs import build

TINY_BUDGET = {"dm": ["method.compile=false"],  # compiled passes: tests/test_compile.py (seconds to compile here)
               "dsa": ["method.outer_loop=2", "method.inner_loop=1"],
               "idc": ["method.inner_loop=1", "method.n_data=32"]}


@pytest.mark.parametrize("method", ["dm", "dsa", "idc"])
def test_reduced_presets_compose_with_their_settings(tmp_path, method, compose):
    cfg = compose(f"experiment=reduced_{method}", f"paths.output_dir={tmp_path}")
    validate(cfg)
    assert (cfg.method.name, cfg.dataset.name, cfg.ipc, cfg.model.width) == (method, "cifar10_shift", 10, 32)
    assert (cfg.eval.nets, cfg.eval.epochs) == (3, 300)
    assert cfg.iterations == {"dm": 20000, "dsa": 1000, "idc": 2000}[method]
    assert all(0 < n < cfg.iterations for n in cfg.eval.at) and cfg.checkpoint.every > 0
    assert cfg.method.get("compile", False) == (method == "dm")  # DM's narrow step is norm-bound: compiled
    spec = build.dataset_spec(cfg)
    assert build.network_factory(cfg, spec)().feature_dim == 32 * 4 * 4  # evaluation builds the same network


def test_compiling_without_a_cpp_compiler_is_refused_before_any_work(tmp_path, compose, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for preset, key in (("experiment=reduced_dm", "method.compile"), ("eval.compile=true", "eval.compile")):
        refusal = (rf"{key}=True is not valid; accepted: false on this machine: torch\.compile on a CPU builds "
                   r"C\+\+ kernels")
        with pytest.raises(ConfigError, match=refusal):
            run(compose(preset, f"paths.output_dir={tmp_path / 'out'}"))
    with pytest.raises(ConfigError, match=r"eval\.compile=True is not valid"):  # evaluate.py's checks too
        check_evaluation(compose("eval.compile=true"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["dm", pytest.param("dsa", marks=pytest.mark.slow),
                                    pytest.param("idc", marks=pytest.mark.slow)])
def test_reduced_presets_run_end_to_end_on_the_embedded_shift_data(tmp_path, method, tiny):
    out = tmp_path / method
    run(tiny(f"experiment=reduced_{method}", "dataset=mnist_mini_shift", "iterations=2", "eval.at=[1]",
             "eval.nets=1", "checkpoint.every=1", *TINY_BUDGET[method], method=method, out=out))
    assert (out / "distilled.pt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert "eval/acc" in (out / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_the_reduced_dm_preset_on_a_standard_data_set_reports_the_papers_robustness_scores(tmp_path, tiny):
    out = tmp_path / "standard"
    run(tiny("experiment=reduced_dm", "dataset=mnist_mini", "iterations=2", "eval.at=[1]", "eval.nets=1",
             *TINY_BUDGET["dm"], out=out))
    header = set((out / "csv" / "metrics.csv").read_text().splitlines()[0].split(","))
    paper = {f"eval/{m}" for m in ("acc", "worst_group_acc", "acc_noise", "acc_blur", "acc_invert")}
    assert paper <= header, paper - header
    assert not any("kept" in h or "cell" in h for h in header)  # no subgroups on a standard data set
