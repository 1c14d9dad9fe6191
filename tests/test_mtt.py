"""Trajectory matching: the loss, the learnable step size, the memory-bounded unroll, the robust risk term."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gdrdd.augment import DSA
from gdrdd.experts import ExpertCache
from gdrdd.experts.trajectory import parameters_of
from gdrdd.matchers.mtt import TrajectoryMatcher, parameter_distance
from gdrdd.models import ConvNet
from gdrdd.robust import ByClass, CVaR, NearestSynthetic, SumOverGroups

C, IPC, STEPS, LR = 3, 2, 4, 0.05


def tiny_net():
    return ConvNet(3, C, 16, width=8, depth=2)


def make_matcher(tmp_path, **options) -> TrajectoryMatcher:
    cache = ExpertCache(tmp_path, "toy", {"test": True})
    torch.manual_seed(0)
    net = tiny_net()
    start = parameters_of(net)
    cache.save(0, [{k: v + epoch for k, v in start.items()} for epoch in range(4)])  # epoch e: start + e
    defaults = dict(syn_steps=STEPS, expert_epochs=1, max_start_epoch=1, lr_student=LR, lr_lr=1e-3)
    return TrajectoryMatcher(tiny_net, cache, **{**defaults, **options})


def synthetic_set():
    torch.manual_seed(1)
    return torch.randn(C, IPC, 3, 16, 16, requires_grad=True)


def test_loss_is_zero_when_the_student_retraces_the_expert(tmp_path):
    matcher = make_matcher(tmp_path)
    torch.manual_seed(0)
    net = tiny_net()
    start = parameters_of(net)
    images = synthetic_set()
    x, y = images.detach().flatten(0, 1), torch.arange(C).repeat_interleave(IPC)
    # The expert segment: exactly the student's full-batch SGD steps with the student's step size.
    params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    for _ in range(STEPS):
        grads = torch.autograd.grad(F.cross_entropy(functional_call(net, params, (x,)), y), list(params.values()))
        params = {k: (v - LR * g).detach().requires_grad_(True) for (k, v), g in zip(params.items(), grads)}
    matcher.set_segment(start, params)
    out = matcher.group_losses(torch.randn(C, 4, 3, 16, 16), images, ByClass())
    assert out.losses.numel() == 0 and out.groups_per_class == 0  # cvar=none: plain MTT, no group losses
    assert float(out.base) < 1e-8
    # A different step size no longer retraces it.
    with torch.no_grad():
        matcher.syn_lr.mul_(2)
    assert float(matcher.group_losses(torch.randn(C, 4, 3, 16, 16), images, ByClass()).base) > 1e-3


def test_each_iteration_matches_epochs_t_and_t_plus_m_with_t_below_max_start(tmp_path):
    matcher = make_matcher(tmp_path, expert_epochs=2, max_start_epoch=2)
    torch.manual_seed(0)
    reference = tiny_net().classifier.bias  # the saved snapshots are this network's parameters + epoch
    starts = set()
    for seed in range(12):
        torch.manual_seed(seed)
        matcher.start_iteration("cpu")
        t = round(float((matcher.start["net.classifier.bias"] - reference)[0]))
        assert torch.allclose(matcher.target["net.classifier.bias"], reference + t + 2)
        starts.add(t)
    assert starts == {0, 1}


def test_loss_is_the_normalised_parameter_distance(tmp_path):
    matcher = make_matcher(tmp_path, syn_steps=1)
    start = {"classifier.weight": torch.zeros(2, 2)}
    target = {"classifier.weight": torch.ones(2, 2)}
    matcher.set_segment(start, target)
    final = {"net.classifier.weight": torch.full((2, 2), 0.5)}
    assert float(matcher.trajectory_loss(final)) == 0.25
    assert float(parameter_distance(final, matcher.target)) == 1.0


def test_step_size_and_images_receive_gradients(tmp_path):
    matcher = make_matcher(tmp_path)
    torch.manual_seed(3)
    matcher.start_iteration("cpu")
    images = synthetic_set()
    target = {k: v + 0.01 * torch.randn_like(v) for k, v in matcher.start.items()}
    matcher.target = target
    matcher.group_losses(torch.randn(C, 4, 3, 16, 16), images, ByClass()).base.backward()
    assert matcher.syn_lr.grad is not None and float(matcher.syn_lr.grad.abs()) > 0
    assert float(images.grad.abs().sum()) > 0


def gradients(matcher, images, risk, grouping, seed=5):
    torch.manual_seed(seed)
    images = images.detach().clone().requires_grad_(True)
    matcher.syn_lr.grad = None
    out = matcher.group_losses(torch.randn(C, 6, 3, 16, 16), images, grouping)
    objective = risk(out.losses, out.counts).objective + out.base
    objective.backward()
    return images.grad.clone(), matcher.syn_lr.grad.clone()


def perturbed_target(matcher):
    torch.manual_seed(4)
    matcher.target = {k: v + 0.02 * torch.randn_like(v) for k, v in matcher.start.items()}


def test_checkpointed_unroll_gives_the_plain_gradient(tmp_path):
    plain = make_matcher(tmp_path, augment=DSA("color_crop_flip"), batch_syn=4)
    bounded = make_matcher(tmp_path, augment=DSA("color_crop_flip"), batch_syn=4, checkpoint=True)
    for m in (plain, bounded):
        m.start_iteration("cpu")
        perturbed_target(m)
    images = synthetic_set()
    for risk_term in (False, True):
        plain.risk_term = bounded.risk_term = risk_term
        risk, grouping = (CVaR(0.5, scale=0.3), NearestSynthetic()) if risk_term else (SumOverGroups(), ByClass())
        g_plain, lr_plain = gradients(plain, images, risk, grouping)
        g_bounded, lr_bounded = gradients(bounded, images, risk, grouping)
        assert torch.allclose(g_plain, g_bounded, rtol=1e-4, atol=1e-7)
        assert torch.allclose(lr_plain, lr_bounded, rtol=1e-4)


def test_risk_term_with_weight_zero_is_plain_mtt_and_otherwise_changes_the_gradient(tmp_path):
    matcher = make_matcher(tmp_path)
    matcher.start_iteration("cpu")
    perturbed_target(matcher)
    images = synthetic_set()
    g_plain, lr_plain = gradients(matcher, images, SumOverGroups(), ByClass())
    matcher.risk_term = True
    g_zero, lr_zero = gradients(matcher, images, CVaR(0.8, scale=0.0), NearestSynthetic())
    assert torch.allclose(g_plain, g_zero, atol=1e-8) and torch.allclose(lr_plain, lr_zero)
    g_robust, _ = gradients(matcher, images, CVaR(0.8, scale=1.0), NearestSynthetic())
    assert not torch.allclose(g_plain, g_robust, atol=1e-6)


def test_risk_term_groups_are_the_student_s_nearest_synthetic_images(tmp_path):
    matcher = make_matcher(tmp_path, risk_term=True)
    matcher.start_iteration("cpu")
    out = matcher.group_losses(torch.randn(C, 6, 3, 16, 16), synthetic_set(), NearestSynthetic())
    assert out.losses.shape == (C * IPC,) and out.groups_per_class == IPC
    assert out.counts.view(C, IPC).sum(1).tolist() == [6.0] * C
    assert bool((out.losses[out.counts > 0] > 0).all())


def test_student_batches_cover_the_set_before_repeating(tmp_path):
    matcher = make_matcher(tmp_path, syn_steps=5, batch_syn=4)
    batches = matcher._batches(6, torch.device("cpu"))
    assert [len(b) for b in batches] == [4, 2, 4, 2, 4]
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(6))


def test_a_non_positive_learned_lr_falls_back_to_the_protocol_lr(tmp_path):
    from gdrdd.distill.module import DistillModule

    matcher = make_matcher(tmp_path)
    module = DistillModule(torch.randn(C * IPC, 3, 16, 16), torch.arange(C).repeat_interleave(IPC), matcher,
                           ByClass(), SumOverGroups(), lr_img=1.0)
    assert module.evaluation_lr() == pytest.approx(LR)
    assert not matcher.uses_real  # plain MTT draws no real batch
    with torch.no_grad():
        matcher.syn_lr.fill_(-0.01)
    assert module.evaluation_lr() is None
    groups = module.configure_optimizers().param_groups
    assert groups[1]["params"] == [matcher.syn_lr] and groups[1]["lr"] == 1e-3 and groups[0]["lr"] == 1.0
