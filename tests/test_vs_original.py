"""The side-by-side harness (bench/vs_original.py, bench/run_original.py): the settings it gives gdrdd are valid,
the originals' timing leaves evaluations out, their printed accuracy is read, and the runtime patch for
self-overlapping assignment computes what older PyTorch did."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdrdd.config import CONFIG_DIR as CONF
from gdrdd.config.checks import validate
from gdrdd.config.schema import check_types

BENCH = CONF.parent / "bench"
sys.path.insert(0, str(BENCH))
import run_original  # noqa: E402
import vs_original  # noqa: E402


def harness_args(matcher: str, ipc: int) -> argparse.Namespace:
    return argparse.Namespace(matcher=matcher, ipc=ipc, data_dir=Path("/data"), iterations=200, inner_loop=2,
                              factor=2, n_data=2000, seed=0, eval_epochs=300, original_eval_nets=1, experts=2,
                              expert_epochs=3, work=Path("/work"))


@pytest.mark.parametrize("matcher", sorted(vs_original.ORIGINALS))
@pytest.mark.parametrize("ipc", [1, 10])
def test_the_harness_gives_train_py_only_valid_settings(matcher, ipc, compose):
    cfg = compose(*vs_original.gdrdd_overrides(harness_args(matcher, ipc)))
    check_types(cfg)
    validate(cfg)
    assert cfg.method.name == matcher and cfg.ipc == ipc and cfg.cvar.name == "none"


def test_the_condensation_scripts_run_the_same_number_of_updates_as_gdrdd():
    args = harness_args("dm", 10)
    given = vs_original.ORIGINALS["dm"].arguments(args)
    assert given[given.index("--Iteration") + 1] == "199"  # it updates Iteration + 1 times
    assert "iterations=200" in vs_original.gdrdd_overrides(args)
    assert vs_original.ORIGINALS["dsa"].result(args, Path("w")) == Path("w/result/res_DSA_CIFAR10_ConvNet_10ipc.pt")


def test_iteration_seconds_leave_out_intervals_with_an_evaluation():
    events = [("network", 0.0), ("network", 1.0), ("network", 3.0),  # two iterations: 1 s, 2 s
              ("evaluation", 3.5), ("end of evaluation", 9.5),         # an evaluation network, built at 3.0
              ("network", 10.0), ("network", 14.0)]                    # the last iteration (4 s), then the end
    assert run_original.iteration_seconds(events) == [1.0, 2.0, 4.0]
    assert run_original.evaluation_seconds(events) == [6.0]


def test_set_up_networks_are_not_iterations():
    events = [("network", 0.0), ("network", 5.0),  # DATM's two set-up networks (start images, labels)
              ("network", 20.0), ("network", 21.0), ("network", 23.0)]  # two iterations, then the end
    assert run_original.iteration_seconds(events, setup=2) == [1.0, 2.0]


def test_datm_runs_at_the_presets_settings_with_the_types_its_config_reader_wants(tmp_path):
    import yaml

    args = harness_args("datm", 10)  # preset: 80 steps, window [0, 10 -> 20) by 1000, lr_img 100, lr_y 2
    vs_original.write_datm_config(args, tmp_path / "datm.yaml")
    given = yaml.safe_load((tmp_path / "datm.yaml").read_text())
    assert (given["syn_steps"], given["expert_epochs"], given["Iteration"], given["eval_it"]) == (80, 2, 199, 201)
    assert (given["max_start_epoch"], given["current_max_start_epoch"]) == (2, 2)  # cut to 3-epoch experts
    assert given["Sequential_Generation"] is True and given["expansion_end_epoch"] == 1000
    assert given["lr_img"] == 100 and isinstance(given["lr_img"], int) and given["lr_y"] == 2.0
    assert given["zca"] is False and given["pix_init"] == "samples_predicted_correctly"
    overrides = vs_original.gdrdd_overrides(args)
    assert {"method.max_start_epoch=2", "method.current_max_start_epoch=2", "experts.epochs=3"} <= set(overrides)
    vs_original.write_datm_config(harness_args("datm", 1), tmp_path / "one.yaml")
    fixed = yaml.safe_load((tmp_path / "one.yaml").read_text())
    assert fixed["Sequential_Generation"] is False and fixed["threshold"] == 1.1


def test_the_images_per_class_come_from_the_command_line_or_datms_config_file(tmp_path):
    (tmp_path / "datm.yaml").write_text("ipc: 10\nsyn_steps: 80\n")
    assert run_original.images_per_class(["--ipc", "3", "--dsa", "True"]) == 3
    assert run_original.images_per_class(["--cfg", str(tmp_path / "datm.yaml")]) == 10


def test_datms_final_set_keeps_its_learned_logits(tmp_path, monkeypatch):
    from gdrdd.evaluation.saved_sets import load_distilled

    monkeypatch.setattr(torch.optim, "SGD", torch.optim.SGD)
    built = []
    run_original.record_optimisers(built)
    images, logits = torch.randn(4, 3, 4, 4, requires_grad=True), torch.randn(4, 2, requires_grad=True)
    lr = torch.tensor(0.01, requires_grad=True)
    for tensor in (images, lr, logits):  # DATM's order: images, step size, labels
        torch.optim.SGD([tensor], lr=1.0)
    run_original.save_final_set(built, ipc=2, folder=tmp_path / "final")
    saved = load_distilled(tmp_path / "final")
    assert torch.equal(saved.labels, logits.detach()) and saved.label_kind == "logits"


def test_the_accuracy_an_original_prints_is_read(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("iter = 0190\nEvaluate 3 random ConvNet, mean = 0.4512 std = 0.0061\n-----\n")
    assert vs_original.own_evaluation(log) == pytest.approx({"nets": 3, "acc": 45.12, "acc_std": 0.61})
    log.write_text("Evaluate 0 random ConvNet, mean = nan std = nan\n")
    assert vs_original.own_evaluation(log) is None


def test_overlapping_assignment_patch_gives_the_broadcast_copy():
    # In a subprocess: the patch replaces Tensor.__setitem__ for the whole process.
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import run_original\n"
            "x = torch.arange(6.).reshape(3, 2)\n"
            "try:\n    x[:] = x[0]\nexcept RuntimeError:\n    refused = True\nelse:\n    refused = False\n"
            "run_original.patch_overlapping_assignment()\n"
            "x[:] = x[0]; y = torch.zeros(2); y[:] = torch.ones(2)\n"
            "print(refused, x.tolist(), y.tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 1)[1].strip() == "[[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]] [1.0, 1.0]"


def test_mtt_runs_both_programs_at_the_presets_settings_within_the_experts_epochs():
    args = harness_args("mtt", 10)  # preset: 30 steps, M 2, max_start_epoch 20, lr_img 100, lr_lr 1e-5, lr 0.001
    given = vs_original.ORIGINALS["mtt"].arguments(args)
    settings = dict(zip(given[::2], given[1::2]))
    assert settings["--Iteration"] == "199" and settings["--eval_it"] == "199"  # evaluates at 0 and 199 only
    assert (settings["--syn_steps"], settings["--expert_epochs"], settings["--lr_teacher"]) == ("30", "2", "0.001")
    assert settings["--max_start_epoch"] == "2"  # 3-epoch experts: starts 0 and 1 have their target 2 epochs on
    overrides = vs_original.gdrdd_overrides(args)
    assert {"method.max_start_epoch=2", "dataset.zca=false", "experts.num=2", "experts.epochs=3"} <= set(overrides)


class OriginalConvNet(torch.nn.Module):
    """The original ConvNet-3's module layout (conv, instance norm as GroupNorm, ReLU, pooling; linear classifier)."""

    def __init__(self):
        super().__init__()
        layers = []
        for d in range(3):
            layers += [torch.nn.Conv2d(3 if d == 0 else 128, 128, 3, padding=1), torch.nn.GroupNorm(128, 128),
                       torch.nn.ReLU(), torch.nn.AvgPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Linear(128 * 4 * 4, 10)


def test_gdrdd_experts_become_a_replay_buffer_in_the_originals_parameter_order(tmp_path, compose):
    from gdrdd.experts.cache import ExpertCache
    from gdrdd.jobs import build

    cfg = compose("dataset=cifar10", "model=convnet")
    net = build.network_factory(cfg, build.dataset_spec(cfg))()
    trajectory = [{k: torch.full_like(v, epoch) for k, v in net.named_parameters()} for epoch in range(3)]
    cache = ExpertCache(tmp_path, "cifar10", {"test": 1})
    for i in range(2):
        cache.save(i, trajectory)
    out = tmp_path / "buffer" / "replay_buffer_0.pt"
    vs_original.write_replay_buffer(cache.folder, out)
    experts = torch.load(out, weights_only=True)
    original = [p.shape for p in OriginalConvNet().parameters()]
    assert len(experts) == 2 and all(len(expert) == 3 for expert in experts)
    assert [p.shape for p in experts[1][2]] == original
    assert all(torch.all(p == 2) for p in experts[1][2])


def test_the_wandb_stand_in_gives_back_the_settings_it_was_given():
    wandb = run_original.wandb_stand_in()
    wandb.init(project="p", config=argparse.Namespace(ipc=10, lr_img=100.0))
    assert wandb.config._items == {"ipc": 10, "lr_img": 100.0} and wandb.run.name
    wandb.log({"loss": 1.0}, step=3)
    wandb.Histogram(torch.zeros(2))
    wandb.finish()


def test_mtts_final_set_is_recorded_from_its_optimisers_and_read_by_evaluate(tmp_path, monkeypatch):
    from gdrdd.evaluation.saved_sets import load_distilled

    monkeypatch.setattr(torch.optim, "SGD", torch.optim.SGD)  # restored after the test
    built = []
    run_original.record_optimisers(built)
    images = torch.randn(6, 3, 4, 4, requires_grad=True)
    lr = torch.tensor(0.02, requires_grad=True)
    torch.optim.SGD([images], lr=100, momentum=0.5)
    torch.optim.SGD([lr], lr=1e-5, momentum=0.5)
    torch.optim.SGD(OriginalConvNet().parameters(), lr=0.01)  # an evaluation network's
    with torch.no_grad():
        images += 1  # the script's updates act on the recorded tensors
    run_original.save_final_set(built, ipc=2, folder=tmp_path / "final")
    saved = load_distilled(tmp_path / "final")
    assert torch.equal(saved.images, images.detach()) and saved.lr == pytest.approx(0.02)
    assert saved.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_mtt_experts_shorter_than_the_presets_target_are_refused_before_any_run(tmp_path):
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "mtt").mkdir()
    (tmp_path / "mtt" / "distill.py").write_text("")
    proc = subprocess.run([sys.executable, str(BENCH / "vs_original.py"), "--matcher", "mtt", "--reference-dir",
                           str(tmp_path / "mtt"), "--data-dir", str(tmp_path / "data"), "--expert-epochs", "1",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--expert-epochs 1" in proc.stderr and not (tmp_path / "work").exists()


ORIGINAL_LIKE_SCRIPT = """import sys, torch
from utils import get_network
images = torch.randn(4, 3, 2, 2, requires_grad=True)  # the script's own random start
lr = torch.tensor(0.01, requires_grad=True)
optimizer_lr = torch.optim.SGD([lr], lr=1.0)
optimizer_img = torch.optim.SGD([images], lr=0.1, momentum=0.5)
get_network()
torch.save(images.detach(), sys.argv[-1])
"""


def run_with_start(tmp_path, start):
    (tmp_path / "utils.py").write_text("def get_network():\n    return None\n\ndef evaluate_synset():\n    pass\n")
    (tmp_path / "main.py").write_text(ORIGINAL_LIKE_SCRIPT)
    torch.save(start, tmp_path / "start.pt")
    return subprocess.run([sys.executable, str(BENCH / "run_original.py"), str(tmp_path), "main.py",
                           str(tmp_path / "timing.json"), "--start", str(tmp_path / "start.pt"), "--ipc", "2",
                           str(tmp_path / "out.pt")], cwd=tmp_path, capture_output=True, text=True)


def test_the_original_starts_from_the_given_set_and_its_start_is_recorded_as_a_scorable_pair(tmp_path):
    start = torch.arange(48.0).reshape(4, 3, 2, 2)
    proc = run_with_start(tmp_path, start)
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(torch.load(tmp_path / "out.pt"), start)  # the images' optimiser got it, not the lr's
    images, labels = torch.load(tmp_path / "start_set.pt")
    assert torch.equal(images, start) and labels.tolist() == [0, 0, 1, 1]  # --ipc 2, class-major


def test_a_start_of_another_shape_stops_the_original_before_its_first_network(tmp_path):
    proc = run_with_start(tmp_path, torch.zeros(5, 3, 2, 2))
    assert proc.returncode != 0 and "(5, 3, 2, 2)" in proc.stderr
    assert not (tmp_path / "out.pt").exists()


def parse(tmp_path, monkeypatch, *extra):
    """``vs_original.parse_args`` on ``extra``, with a reference folder holding every original's script."""
    (tmp_path / "cifar-10-batches-py").mkdir(exist_ok=True)
    for original in vs_original.ORIGINALS.values():
        (tmp_path / original.script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / original.script).touch()
    monkeypatch.setattr(sys, "argv", ["vs_original.py", "--reference-dir", str(tmp_path), "--data-dir",
                                      str(tmp_path), *extra])
    return vs_original.parse_args()


@pytest.mark.parametrize("extra,named", [
    (["--matcher", "idc", "--same-start"], "--same-start"),
    (["--matcher", "dsa", "--same-start", "--original-run", "x"], "--same-start with --original-run"),
    (["--matcher", "dsa", "--same-start", "--score-starts"], "--score-starts"),
    (["--matcher", "mtt", "--score-starts"], "--score-starts"),
    (["--matcher", "dm", "--score-starts", "--original-run", "x"], "--score-starts"),
])
def test_start_options_are_refused_where_they_cannot_pair_or_score_the_starts(tmp_path, monkeypatch, capsys,
                                                                              extra, named):
    with pytest.raises(SystemExit) as exit_info:
        parse(tmp_path, monkeypatch, *extra)
    assert exit_info.value.code == 2 and named in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--matcher", "mtt", "--same-start"], ["--matcher", "dc", "--same-start"],
                                   ["--matcher", "dm", "--score-starts"]])
def test_start_options_are_accepted_where_they_apply(tmp_path, monkeypatch, extra):
    args = parse(tmp_path, monkeypatch, *extra)
    assert args.same_start or args.score_starts
