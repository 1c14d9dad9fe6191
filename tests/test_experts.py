"""Expert trajectories: training, the cache (key, resume, atomic files), robust experts, and method=mtt end to end."""

import json

import pytest
import torch
import torch.nn.functional as F

from gdrdd.cli import train as run
from gdrdd.data import DatasetSpec
from gdrdd.errors import ExpertsNotFoundError
from gdrdd.experts.cache import run_cache
from gdrdd.experts.trajectory import ExpertSettings, train_expert
from gdrdd.jobs import build
from gdrdd.robust import CVaR, NearestSynthetic
from gdrdd.robust.network import GroupRobustLoss

EXPERTS = ["task=experts", "experts.num=1", "experts.epochs=2", "experts.augment=none", "model.width=8"]
MTT = ["method.syn_steps=3", "method.expert_epochs=1", "method.max_start_epoch=2", "experts.epochs=2",
       "experts.augment=none", "model.width=8", "iterations=2"]


def cache_of(cfg):
    return run_cache(cfg, build.dataset_spec(cfg))


def test_expert_keeps_parameters_after_every_epoch(tiny_net_factory):
    torch.manual_seed(0)
    images, labels = torch.randn(12, 3, 16, 16), torch.arange(3).repeat(4)
    trajectory = train_expert(tiny_net_factory, images, labels, ExpertSettings(epochs=3, batch_size=4), seed=7)
    assert len(trajectory) == 4
    assert set(trajectory[0]) == {n for n, _ in tiny_net_factory().named_parameters()}
    weights = [params["classifier.weight"] for params in trajectory]
    assert all(not torch.equal(a, b) for a, b in zip(weights, weights[1:]))
    again = train_expert(tiny_net_factory, images, labels, ExpertSettings(epochs=3, batch_size=4), seed=7)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(trajectory, again) for k in a)


def test_group_robust_loss_at_alpha_zero_is_cross_entropy_and_robust_at_high_alpha(tiny_net_factory):
    torch.manual_seed(0)
    net = tiny_net_factory()
    images, labels = torch.randn(30, 3, 16, 16), torch.randint(0, 3, (30,))
    synthetic = torch.randn(3, 2, 3, 16, 16)
    plain = F.cross_entropy(net(images), labels)
    mean = GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.0))(net, images, labels)
    tail = GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.9))(net, images, labels)
    assert float(mean) == pytest.approx(float(plain), rel=1e-5)
    assert float(tail) > float(plain)
    tail.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_experts_task_saves_resumes_and_is_found_by_key(tmp_path, tiny):
    cfg = tiny(*EXPERTS, f"paths.cache_dir={tmp_path / 'cache'}", out=tmp_path / "run1")
    first = run(cfg)
    cache = cache_of(cfg)
    assert first["experts_in_cache"] == 1 and cache.count() == 1
    assert json.loads((cache.folder / "key.json").read_text())["experts"]["epochs"] == 2
    trajectory = cache.load(0)
    assert len(trajectory) == 3 and "classifier.weight" in trajectory[0]
    saved = cache.path(0).read_bytes()
    (cache.folder / ".expert_0001.pt.tmp123").write_bytes(b"half-written")  # an interrupted write
    more = tiny(*EXPERTS, "experts.num=2", f"paths.cache_dir={tmp_path / 'cache'}", out=tmp_path / "run2")
    second = run(more)
    assert second["trained_now"] == 1 and cache_of(more).count() == 2
    assert cache.path(0).read_bytes() == saved  # the finished expert is kept, not retrained
    assert json.loads((tmp_path / "run2" / "experts.json").read_text())["experts_in_cache"] == 2
    other = tiny(*EXPERTS, "experts.lr=0.02", f"paths.cache_dir={tmp_path / 'cache'}", out=tmp_path / "run3")
    assert cache_of(other).folder != cache.folder and cache_of(other).count() == 0
    robust = tiny(*EXPERTS, "cvar.target=network", f"paths.cache_dir={tmp_path / 'cache'}", out=tmp_path / "run4")
    assert cache_of(robust).folder != cache.folder
    assert cache_of(tiny(*EXPERTS, "cvar=none", out=tmp_path / "run5")).description["robust"] is None


def test_cache_key_covers_the_shift_benchmark_but_not_how_distillation_batches_are_drawn(tmp_path, compose):
    """Experts of one thinning of a benchmark are not reused for another; the oracle's balanced batches and the
    download flag do not change the experts' training set, so they share the cache."""
    def folder(*overrides):
        cfg = compose("dataset=cifar10_shift", "method=mtt", f"paths.output_dir={tmp_path}", *overrides)
        spec = DatasetSpec("cifar10_shift", "cifar10", 3, 32, tuple(cfg.dataset.class_names), (0.5,) * 3, (0.5,) * 3,
                           "flip")
        return run_cache(cfg, spec).folder

    base = folder()
    assert folder("dataset.shift.keep=[1.0,0.5,0.1]") != base
    assert folder("dataset.shift.seed=1") != base
    assert folder("dataset.dsa_strategy=crop_flip") != base
    assert folder("dataset.shift.balanced_batches=true") == base
    assert folder("dataset.download=true") == base
    assert folder("experts.num=7") == base and folder("experts.batch_size=128") != base


def test_missing_experts_stop_mtt_before_any_step_with_the_command(tmp_path, tiny):
    cfg = tiny(*MTT, f"paths.cache_dir={tmp_path / 'empty'}", method="mtt", out=tmp_path / "out")
    with pytest.raises(ExpertsNotFoundError, match="task=experts") as err:
        run(cfg)
    assert str(cache_of(cfg).folder) in str(err.value)
    assert not (tmp_path / "out" / "distilled.pt").exists()


def test_mtt_after_experts_end_to_end_evaluates_with_the_learned_lr(tmp_path, monkeypatch, tiny):
    cache_dir = f"paths.cache_dir={tmp_path / 'cache'}"
    from gdrdd.evaluation.evaluator import Evaluator

    run(tiny(*EXPERTS, cache_dir, out=tmp_path / "experts"))
    seen_lrs = []
    original = Evaluator.evaluate
    def recording(self, images, labels, lr=None, name="distilled"):
        seen_lrs.append(lr)
        return original(self, images, labels, lr, name)

    monkeypatch.setattr(Evaluator, "evaluate", recording)
    result = run(tiny(*MTT, cache_dir, "cvar.alpha=0.5", method="mtt", out=tmp_path / "mtt"))
    blob = torch.load(tmp_path / "mtt" / "distilled.pt", weights_only=True)
    assert blob["learned_lr"] > 0 and blob["learned_lr"] != 0.001 and blob["zca"] is None
    assert seen_lrs[0] == pytest.approx(blob["learned_lr"]) and seen_lrs[1] is None  # distilled set, then baseline
    log = (tmp_path / "mtt" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "distill/base_loss" in log and "distill/learned_lr" in log and "robust/risk" in log
    assert 0 <= result["scored"]["distilled"]["acc"] <= 100


def test_invalid_segment_is_refused_before_work(tmp_path, tiny):
    from gdrdd.errors import ConfigError

    cfg = tiny(*MTT, "method.max_start_epoch=3", method="mtt")
    with pytest.raises(ConfigError, match="max_start_epoch"):
        run(cfg)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "tinyimagenet"])
@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_mtt_presets_compose_and_validate(tmp_path, dataset, ipc, compose):
    """The MTT presets (the base-method presets dc_/dsa_/dm_* are checked in test_end_to_end)."""
    from gdrdd.config.checks import validate

    cfg = compose(f"experiment=mtt_{dataset}_ipc{ipc}", f"paths.output_dir={tmp_path}")
    validate(cfg)
    names = tuple(cfg.dataset.class_names or (f"n{i:03d}" for i in range(200)))  # TinyImageNet reads wnids.txt
    spec = DatasetSpec(dataset, cfg.dataset.reader, 3, cfg.dataset.resolution, names, (0.5,) * 3, (0.5,) * 3, "flip")
    assert run_cache(cfg, spec).description["dataset"]["classes"] == list(names)
    assert cfg.method.name == "mtt" and cfg.dataset.name == dataset and cfg.ipc == ipc and cfg.eval.epochs == 1000
    assert cfg.method.max_start_epoch + cfg.method.expert_epochs <= cfg.experts.epochs + 1


def test_robust_experts_are_trained_and_matched_with_target_network(tmp_path, tiny):
    cache_dir = f"paths.cache_dir={tmp_path / 'cache'}"
    robust = ["cvar.target=network", "cvar.alpha=0.8"]
    made = run(tiny(*EXPERTS, cache_dir, *robust, out=tmp_path / "experts"))
    assert made["description"]["robust"] == {"alpha": 0.8, "weighting": "mass", "ipc": 2}
    plain_cache = cache_of(tiny(*EXPERTS, cache_dir, "cvar=none", out=tmp_path / "x"))
    assert plain_cache.count() == 0  # robust experts live under their own key
    result = run(tiny(*MTT, cache_dir, *robust, method="mtt", out=tmp_path / "mtt"))
    assert result["cvar"]["target"] == "network"
    log = (tmp_path / "mtt" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "distill/base_loss" in log and "robust/risk" not in log  # no risk term: the experts carry the robustness


def test_batch_norm_networks_are_refused_for_mtt(tmp_path, tiny):
    from gdrdd.errors import ConfigError

    with pytest.raises(ConfigError, match="model.norm='batchnorm'"):
        run(tiny(*MTT, "model=convnet_bn", method="mtt"))
