"""The robust objective's design options: mean/CVaR mix, minimum group count, alpha warm-up, shrinkage of small
groups, and groups formed in a fixed encoder's features or in an evaluation network of the synthetic set."""


import pytest
import torch
from torch import nn

from gdrdd.errors import ConfigError
from gdrdd.jobs.distill import run
from gdrdd.matchers import DistributionMatcher
from gdrdd.robust import CVaR, NearestSynthetic, cvar
from gdrdd.robust.grouping import shrink_to_pooled
from gdrdd.robust.objective import matching_objective

LOSSES = torch.tensor([1.0, 4.0, 2.0, 8.0], requires_grad=True)
COUNTS = torch.tensor([40.0, 30.0, 20.0, 10.0])


def test_mix_interpolates_between_the_mean_and_the_cvar():
    mean = (LOSSES * COUNTS / COUNTS.sum()).sum()
    tail = cvar(LOSSES, COUNTS, 0.8)
    assert float(CVaR(0.8, mix=0.0)(LOSSES, COUNTS).value) == pytest.approx(float(mean))
    assert float(CVaR(0.8, mix=1.0)(LOSSES, COUNTS).value) == pytest.approx(float(tail))
    out = CVaR(0.8, mix=0.25)(LOSSES, COUNTS)
    assert float(out.value) == pytest.approx(0.75 * float(mean) + 0.25 * float(tail))
    assert float(out.tail_weights.sum()) == pytest.approx(1.0)
    out.value.backward()
    assert LOSSES.grad.tolist() == pytest.approx(out.tail_weights.tolist())  # differentiable through the weights


def test_min_count_keeps_small_groups_out_of_the_tail():
    out = CVaR(0.8, min_count=15)(LOSSES.detach(), COUNTS)
    assert out.tail_weights[3] == 0  # the worst group has only 10 images
    assert float(out.value) == pytest.approx(4.0)  # the worst 20 % of the remaining mass: group 1 (loss 4)
    everything_small = CVaR(0.8, min_count=100)(LOSSES.detach(), COUNTS)
    assert float(everything_small.value) == pytest.approx(float(cvar(LOSSES.detach(), COUNTS, 0.8)))


def test_alpha_warms_up_linearly():
    risk = CVaR(0.8, warmup=10)
    values = []
    for iteration in (0, 5, 10, 50):
        risk.start_iteration(iteration)
        values.append(risk.current_alpha)
    assert values == pytest.approx([0.0, 0.4, 0.8, 0.8])
    risk.start_iteration(0)
    assert float(risk(LOSSES.detach(), COUNTS).value) == pytest.approx(float((LOSSES * COUNTS).sum() / COUNTS.sum()))


def test_shrinkage_pulls_small_groups_toward_the_pooled_mean():
    values = torch.tensor([[0.0], [10.0]])
    counts = torch.tensor([90, 10])
    assert torch.equal(shrink_to_pooled(values, counts, 0.0), values)
    shrunk = shrink_to_pooled(values, counts, 10.0)  # pooled mean 1
    assert shrunk[:, 0].tolist() == pytest.approx([(0 * 90 + 10 * 1) / 100, (10 * 10 + 10 * 1) / 20])
    assert shrink_to_pooled(values, counts, 1e9)[:, 0].tolist() == pytest.approx([1.0, 1.0])


class Brightness(nn.Module):
    """An 'encoder' whose one feature is the image's mean brightness."""

    def embed(self, x):
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


class ChannelSplit(nn.Module):
    """A stand-in step network whose features ignore brightness (the first channel's top-left pixel)."""

    def embed(self, x):
        return x[:, :1, 0, 0] * 0.0 + x[:, 1:2, 0, 0]

    def to(self, *args, **kwargs):
        return self

    def train(self, mode=True):
        return self


def test_groups_form_in_the_encoders_features_when_given():
    g = torch.Generator().manual_seed(0)
    real = torch.cat([torch.randn(1, 6, 2, 4, 4, generator=g) - 5, torch.randn(1, 2, 2, 4, 4, generator=g) + 5], 1)
    synthetic = torch.stack([torch.full((2, 4, 4), -5.0), torch.full((2, 4, 4), 5.0)])[None].requires_grad_(True)
    m = DistributionMatcher(lambda: ChannelSplit(), group_encoder=Brightness())
    m.start_iteration("cpu")
    out = m.group_losses(real, synthetic, NearestSynthetic())
    assert out.counts.tolist() == [6.0, 2.0]  # dark and bright, as the encoder sees them


def test_strong_shrinkage_makes_every_group_loss_the_class_loss():
    g = torch.Generator().manual_seed(1)
    real, synthetic = torch.randn(2, 12, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    m = DistributionMatcher(lambda: ChannelSplit(), shrink=1e9)
    m.start_iteration("cpu")
    out = m.group_losses(real, synthetic, NearestSynthetic())
    class_loss = ((real[:, :, 1, 0, 0].mean(1) - synthetic[:, :, 1, 0, 0].mean(1)) ** 2)
    nonempty = out.counts.view(2, 3) > 0
    assert torch.allclose(out.losses.view(2, 3)[nonempty], class_loss[:, None].expand(2, 3)[nonempty], rtol=1e-4)


@pytest.mark.parametrize("override,key", [("cvar.mix=1.5", "cvar.mix"), ("cvar.features=pixels", "cvar.features"),
                                          ("cvar.shrink=-1", "cvar.shrink"), ("cvar.warmup=-3", "cvar.warmup"),
                                          ("cvar.encoder_epochs=0", "cvar.encoder_epochs"),
                                          ("cvar.refresh=0", "cvar.refresh")])
def test_bad_design_choices_are_refused(tmp_path, override, key, compose):
    cfg = compose(override, f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(cfg)


def test_encoder_features_are_refused_for_trajectory_matching(tmp_path, compose):
    cfg = compose("method=mtt", "cvar.features=encoder", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"cvar\.features='encoder'.*method=mtt"):
        run(cfg)


def test_a_run_with_every_option_trains_the_encoder_and_finishes(tmp_path, tiny):
    cfg = tiny("eval.coverage=false", "eval.baseline=false", "cvar.features=encoder", "cvar.encoder_epochs=1",
               "cvar.shrink=4", "cvar.mix=0.5", "cvar.warmup=2", "cvar.min_count=2")
    result = run(cfg)
    assert result["cvar"]["features"] == "encoder" and (tmp_path / "distilled.pt").is_file()


class _Module:
    """What EvaluationFeatures reads of the LightningModule."""

    def __init__(self, images, labels):
        self.images, self.labels, self.device = images, labels, torch.device("cpu")
        self.matcher = DistributionMatcher(lambda: ChannelSplit())

    def training_set(self):
        return self.images, self.labels


def _tiny_classifier():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def test_evaluation_features_retrain_on_the_current_synthetic_set_every_refresh_iterations():
    from gdrdd.models.fit import TrainSettings
    from gdrdd.robust.encoders import EvaluationFeatures

    torch.manual_seed(0)
    module = _Module(torch.randn(4, 3, 4, 4), torch.tensor([0, 0, 1, 1]))
    refresher = EvaluationFeatures(_tiny_classifier, TrainSettings(epochs=5), None, seed=3, refresh=3)
    networks, snapshots = [], []
    for iteration in range(7):
        snapshots.append(module.images)
        refresher.on_train_batch_start(None, module, None, iteration)
        networks.append(module.matcher.group_encoder)
        module.images = module.images + 1.0  # the synthetic set moves every iteration
    assert [n is networks[0] for n in networks] == [True, True, True, False, False, False, False]
    assert networks[3] is networks[5] and networks[6] is not networks[3]
    assert not any(p.requires_grad for p in networks[6].parameters()) and not networks[6].training
    # The network of iteration 3 is the evaluation protocol run on the synthetic set as it stood at iteration 3.
    again = refresher.train_on(snapshots[3], module.labels, 3)
    for a, b in zip(again.parameters(), networks[3].parameters()):
        assert torch.equal(a, b)
    # A resumed run restores the network of the last refresh instead of training one on the current images.
    state = refresher.state_dict()
    resumed = EvaluationFeatures(_tiny_classifier, TrainSettings(epochs=5), None, seed=3, refresh=3)
    resumed.load_state_dict(state)
    resumed.on_train_batch_start(None, module, None, 7)
    for a, b in zip(module.matcher.group_encoder.parameters(), networks[6].parameters()):
        assert torch.equal(a, b)


def test_a_run_with_evaluation_features_finishes_and_checkpoints_its_grouping_network(tmp_path, tiny):
    cfg = tiny("iterations=4", "eval.coverage=false", "eval.baseline=false", "cvar.features=evaluation",
               "cvar.refresh=2", "checkpoint.every=1")
    assert run(cfg)["cvar"]["features"] == "evaluation"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    saved = [v for k, v in state["callbacks"].items() if "EvaluationFeatures" in k]
    assert saved and saved[0]["trained_at"] == 2 and saved[0]["weights"]


@pytest.mark.parametrize("preset,mix", [("default", 0.5), ("paper", 1.0)])
def test_default_preset_is_half_mean_half_cvar_and_paper_is_cvar_alone(preset, mix, compose):
    cfg = compose(f"cvar={preset}", "paths.output_dir=unused")
    _, risk = matching_objective(cfg, num_classes=2)
    expected = 2 * ((1 - mix) * (LOSSES * COUNTS / COUNTS.sum()).sum() + mix * cvar(LOSSES, COUNTS, 0.8))
    assert float(risk(LOSSES.detach(), COUNTS).objective) == pytest.approx(float(expected))
