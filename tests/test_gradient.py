"""Gradient matching (DC/DSA): distances, plain equivalence step for step, group gradients, schedule, BN."""

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from gdrdd.augment import DSA
from gdrdd.data import DatasetSpec, RealDataModule
from gdrdd.distill.module import DistillModule, iteration_seed
from gdrdd.matchers import GradientMatcher, gradient_distance, loops_for_ipc
from gdrdd.matchers.gradient import freeze_batchnorm_statistics, group_gradients
from gdrdd.models import ConvNet
from gdrdd.robust import ByClass, CVaR, NearestSynthetic, SumOverGroups

C, IPC = 3, 2
SPEC = DatasetSpec("toy", "none", 3, 16, ("a", "b", "c"), (0.0,) * 3, (1.0,) * 3, "color_crop_flip")


def tiny_net():
    return ConvNet(3, C, 16, width=8, depth=2)


def test_distance_ours_by_hand():
    real_w, syn_w = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), torch.tensor([[1.0, 1.0], [0.0, -3.0]])
    real_b, syn_b = torch.tensor([[5.0, 5.0]]), torch.tensor([1.0, -1.0])
    # rows: 1 - 1/sqrt(2), and 1 - (-6)/(2*3) = 2; the bias contributes nothing.
    expected = (1 - 1 / 2 ** 0.5) + 2.0
    got = gradient_distance([real_w, real_b], [syn_w, syn_b], "ours")
    assert got.shape == (1,) and float(got) == pytest.approx(expected, abs=1e-5)
    # mse and cos use every parameter, concatenated.
    r, s = torch.tensor([1.0, 0, 0, 2, 5, 5]), torch.tensor([1.0, 1, 0, -3, 1, -1])
    mse = float(gradient_distance([real_w, real_b], [syn_w, syn_b], "mse"))
    assert mse == pytest.approx(float(((r - s) ** 2).sum()))
    cos = float((r * s).sum() / (r.norm() * s.norm()))
    assert float(gradient_distance([real_w, real_b], [syn_w, syn_b], "cos")) == pytest.approx(1 - cos, abs=1e-5)


def test_distance_ours_on_a_tiny_network_flattens_conv_weights_per_output_channel():
    net = tiny_net()
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    y = torch.zeros(4, dtype=torch.long)
    g1 = torch.autograd.grad(F.cross_entropy(net(x1), y), list(net.parameters()))
    g2 = torch.autograd.grad(F.cross_entropy(net(x2), y), list(net.parameters()))
    expected = 0.0
    for a, b in zip(g1, g2):
        if a.dim() == 1:
            continue
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        for i in range(a.shape[0]):
            expected += 1 - float(a[i] @ b[i]) / (float(a[i].norm() * b[i].norm()) + 1e-6)
    got = gradient_distance([g.unsqueeze(0) for g in g1], list(g2), "ours")
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_group_gradient_equals_gradient_of_that_group_alone():
    net = tiny_net()
    params = list(net.parameters())
    x = torch.randn(10, 3, 16, 16)
    ids = torch.tensor([0, 2, 2, 0, 1, 2, 0, 0, 2, 2])
    grads, counts = group_gradients(net, params, x, 1, ids, 4)
    assert counts.tolist() == [4, 1, 5, 0]
    for g in range(3):
        group_loss = F.cross_entropy(net(x[ids == g]), torch.ones(int(counts[g]), dtype=torch.long))
        alone = torch.autograd.grad(group_loss, params)
        # and the same through the whole batch, with the group's per-sample losses averaged
        per_sample = F.cross_entropy(net(x), torch.ones(10, dtype=torch.long), reduction="none")
        masked = torch.autograd.grad(per_sample[ids == g].mean(), params)
        for acc, a, m in zip(grads, alone, masked):
            assert torch.allclose(acc[g], a, atol=1e-6) and torch.allclose(acc[g], m, atol=1e-6)
    assert all(float(acc[3].abs().sum()) == 0 for acc in grads)


def test_loop_schedule_by_ipc():
    schedule = [(1, 1), (10, 50), (20, 25), (30, 20), (40, 15), (50, 10)]
    assert [loops_for_ipc(i) for i in (1, 10, 20, 30, 40, 50)] == schedule
    assert loops_for_ipc(7, 3, 4) == (3, 4) and loops_for_ipc(10, 5, None) == (5, 50)
    with pytest.raises(ValueError, match="ipc=7"):
        loops_for_ipc(7)


def toy_datamodule(iterations):
    dm = RealDataModule(SPEC, "unused", None, iterations=iterations)
    g = torch.Generator().manual_seed(0)
    dm.class_images = [torch.randn(12, 3, 16, 16, generator=g) + c for c in range(C)]
    dm.test_images, dm.test_labels = torch.randn(6, 3, 16, 16, generator=g), torch.arange(C).repeat(2)
    return dm


def reference_gradient_matching(init, dm, augment, iterations, outer, inner, batch_real, seed):
    """Plain DC/DSA written as the original code is: fresh net per iteration, per-class gradient distances
    summed, SGD on the images, the net trained on the synthetic set between matching steps."""
    syn = init.detach().clone().requires_grad_(True)
    labels = torch.arange(C).repeat_interleave(IPC)
    opt_img = torch.optim.SGD([syn], lr=0.1, momentum=0.5)
    for it in range(iterations):
        torch.manual_seed(iteration_seed(seed, it))
        net = tiny_net().train()
        params = list(net.parameters())
        opt_net = torch.optim.SGD(params, lr=0.01)
        for ol in range(outer):
            real = dm.sample_real(batch_real)
            loss = 0.0
            for c in range(C):
                r, s = real[c], syn[c * IPC:(c + 1) * IPC]
                if augment is not None:
                    r, s = augment.siamese(r, s)
                real_loss = F.cross_entropy(net(r), torch.full((len(r),), c))
                g_real = [g.detach() for g in torch.autograd.grad(real_loss, params)]
                g_syn = torch.autograd.grad(F.cross_entropy(net(s), torch.full((IPC,), c)), params, create_graph=True)
                loss = loss + gradient_distance([g.unsqueeze(0) for g in g_real], list(g_syn), "ours").sum()
            opt_img.zero_grad()
            loss.backward()
            opt_img.step()
            if ol == outer - 1:
                break
            data = syn.detach().clone()
            for _ in range(inner):
                order = torch.randperm(len(data))
                for start in range(0, len(data), 256):
                    idx = order[start:start + 256]
                    x = augment(data[idx]) if augment is not None else data[idx]
                    opt_net.zero_grad()
                    F.cross_entropy(net(x), labels[idx]).backward()
                    opt_net.step()
    return syn.detach()


def fit(module, dm):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return module.images.detach()


@pytest.mark.parametrize("augment", [None, DSA(SPEC.dsa_strategy)], ids=["dc", "dsa"])
def test_cvar_none_equals_plain_gradient_matching_step_for_step(augment):
    dm = toy_datamodule(iterations=2)
    init = torch.randn(C * IPC, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = reference_gradient_matching(init, dm, augment, iterations=2, outer=3, inner=2, batch_real=8, seed=4)
    matcher = GradientMatcher(tiny_net, augment, "ours", outer_loop=3, inner_loop=2)
    module = DistillModule(init, torch.arange(C).repeat_interleave(IPC), matcher, ByClass(), SumOverGroups(),
                           lr_img=0.1, batch_real=8, seed=4)
    got = fit(module, dm)
    assert not torch.allclose(got, init)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("metric", ["ours", "mse", "cos"])
@pytest.mark.parametrize("grouping,risk", [(ByClass(), SumOverGroups()), (NearestSynthetic(), CVaR(0.8))],
                         ids=["none", "cvar"])
def test_gradient_reaches_synthetic_images(metric, grouping, risk):
    matcher = GradientMatcher(tiny_net, DSA(SPEC.dsa_strategy), metric, outer_loop=1, inner_loop=1)
    torch.manual_seed(0)
    matcher.start_iteration("cpu")
    real = torch.randn(C, 8, 3, 16, 16)
    syn = torch.randn(C, IPC, 3, 16, 16, requires_grad=True)
    out = matcher.group_losses(real, syn, grouping)
    assert out.losses.shape == (C * grouping.groups_per_class(IPC),)
    risk(out.losses, out.counts).objective.backward()
    assert torch.isfinite(syn.grad).all() and float(syn.grad.abs().sum()) > 0


def test_network_trains_between_updates_but_not_after_the_last():
    matcher = GradientMatcher(tiny_net, None, outer_loop=2, inner_loop=3)
    matcher.start_iteration("cpu")
    syn = torch.randn(C, IPC, 3, 16, 16)
    before = copy.deepcopy(matcher.net.state_dict())
    matcher.after_update(syn, is_last=True)
    assert all(torch.equal(before[k], v) for k, v in matcher.net.state_dict().items())
    matcher.after_update(syn, is_last=False)
    assert not all(torch.equal(before[k], v) for k, v in matcher.net.state_dict().items())


def test_batchnorm_statistics_stay_frozen_during_matching():
    make = lambda: ConvNet(3, C, 16, width=8, depth=2, norm="batchnorm")  # noqa: E731
    matcher = GradientMatcher(make, None, outer_loop=1, inner_loop=1)
    torch.manual_seed(0)
    matcher.start_iteration("cpu")
    real = torch.randn(C, 20, 3, 16, 16) * 3 + 1
    reference = make()
    reference.load_state_dict(matcher.net.state_dict())
    freeze_batchnorm_statistics(reference, real[:, :16].flatten(0, 1))
    matcher.group_losses(real, torch.randn(C, IPC, 3, 16, 16, requires_grad=True), NearestSynthetic())
    bns = [m for m in matcher.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    for ours, ref in zip(bns, [m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)]):
        assert torch.allclose(ours.running_mean, ref.running_mean) and torch.allclose(ours.running_var, ref.running_var)


def robust_training(alpha, batch=12):
    from gdrdd.robust.network import RobustNetworkTraining

    g = torch.Generator().manual_seed(0)
    real = torch.randn(C, batch // C, 3, 16, 16, generator=g)
    return RobustNetworkTraining(lambda n: real[:, :n], NearestSynthetic(), CVaR(alpha), batch_size=batch), real


def network_gradient_after_step(net, training, synthetic):
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    training.step(net, opt, synthetic)
    return [b - p.detach() for b, p in zip(before, net.parameters())]  # lr 1: the step is the gradient


def test_robust_network_at_alpha_zero_is_plain_cross_entropy_on_real_data():
    training, real = robust_training(0.0)
    net = tiny_net()
    reference = copy.deepcopy(net)
    step = network_gradient_after_step(net, training, torch.randn(C, IPC, 3, 16, 16))
    labels = torch.arange(C).repeat_interleave(real.shape[1])
    plain = torch.autograd.grad(F.cross_entropy(reference(real.flatten(0, 1)), labels), list(reference.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(step, plain))


def test_robust_network_loss_is_differentiated_through_the_tail_groups():
    training, real = robust_training(0.8)
    net = tiny_net()
    reference = copy.deepcopy(net)
    syn = torch.randn(C, IPC, 3, 16, 16)
    step = network_gradient_after_step(net, training, syn)
    # By hand: nearest-synthetic groups in the embedding, group mean CE, CVaR tail weights.
    n = real.shape[1]
    with torch.no_grad():
        ids = NearestSynthetic().assign(reference.embed(real.flatten(0, 1)).view(C, n, -1),
                                        reference.embed(syn.flatten(0, 1)).view(C, IPC, -1))
    labels = torch.arange(C).repeat_interleave(n)
    ce = F.cross_entropy(reference(real.flatten(0, 1)), labels, reduction="none").view(C, n)
    losses, counts = [], []
    for c in range(C):
        for j in range(IPC):
            mask = ids[c] == j
            losses.append(ce[c][mask].mean() if mask.any() else ce.new_zeros(()))
            counts.append(float(mask.sum()))
    value = CVaR(0.8)(torch.stack(losses), torch.tensor(counts)).value
    expected = torch.autograd.grad(value, list(reference.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(step, expected))
    assert float(sum(a.abs().sum() for a in step)) > 0


def test_robust_network_replaces_synthetic_training_between_updates():
    training, _ = robust_training(0.8)
    matcher = GradientMatcher(tiny_net, None, outer_loop=2, inner_loop=2, robust_network=training)
    matcher.start_iteration("cpu")
    calls = []
    original = training.step
    training.step = lambda *a, **k: calls.append(1) or original(*a, **k)
    matcher.after_update(torch.randn(C, IPC, 3, 16, 16), is_last=False)
    matcher.after_update(torch.randn(C, IPC, 3, 16, 16), is_last=True)
    assert len(calls) == 2
