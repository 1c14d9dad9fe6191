"""Distribution matching: plain equivalence, the alpha-0 and re-weighting gradient identities, gradient flow."""

import pytest
import torch

from gdrdd.augment import DSA
from gdrdd.matchers import DistributionMatcher
from gdrdd.models import ConvNet, has_batchnorm
from gdrdd.robust import ByClass, CVaR, NearestSynthetic, SumOverGroups
from gdrdd.robust.grouping import NearestAnySynthetic, group_means

C, N, IPC = 3, 12, 4


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(C, N, 3, 16, 16, generator=g)
    syn = torch.randn(C, IPC, 3, 16, 16, generator=g).requires_grad_(True)
    return real, syn


def matcher(make_net, augment=None):
    """A DistributionMatcher with its iteration's network drawn (from the global RNG, as the reference)."""
    m = DistributionMatcher(make_net, augment)
    m.start_iteration("cpu")
    return m


def reference_dm_loss(make_net, augment, real, syn):
    """Plain DM as the original code computes it: per class, a shared DSA draw for the real and synthetic
    batch; squared distance of the classes' mean embeddings, summed over classes. Its two branches: without
    batch norm each class is embedded on its own; with batch norm (its ConvNetBN branch) all classes' real
    images go through the network in one pass and all synthetic images in another, and the per-class means
    are taken afterwards."""
    net = make_net().train()
    for p in net.parameters():
        p.requires_grad = False
    pairs = [augment.siamese(real[c], syn[c]) if augment is not None else (real[c], syn[c]) for c in range(C)]
    if not has_batchnorm(net):
        loss = 0.0
        for r, s in pairs:
            loss = loss + ((net.embed(r).detach().mean(0) - net.embed(s).mean(0)) ** 2).sum()
        return loss
    output_real = net.embed(torch.cat([r for r, _ in pairs])).detach()
    output_syn = net.embed(torch.cat([s for _, s in pairs]))
    return ((output_real.reshape(C, N, -1).mean(1) - output_syn.reshape(C, IPC, -1).mean(1)) ** 2).sum()


@pytest.mark.parametrize("augment", [None, DSA()])
def test_cvar_none_equals_plain_dm(tiny_net_factory, augment):
    real, syn = batches()
    torch.manual_seed(7)
    ref = reference_dm_loss(tiny_net_factory, augment, real, syn)
    (g_ref,) = torch.autograd.grad(ref, syn)
    torch.manual_seed(7)
    out = matcher(tiny_net_factory, augment).group_losses(real, syn, ByClass())
    ours = SumOverGroups()(out.losses, out.counts).objective
    (g_ours,) = torch.autograd.grad(ours, syn)
    assert out.losses.shape == (C,) and torch.equal(out.counts, torch.full((C,), float(N)))
    assert torch.allclose(ours, ref, rtol=1e-5)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-7)


def test_alpha_zero_mass_weights_gives_plain_gradient_times_constant(tiny_net_factory):
    real, syn = batches(1)
    torch.manual_seed(3)
    plain = matcher(tiny_net_factory).group_losses(real, syn, ByClass())
    (g_plain,) = torch.autograd.grad(SumOverGroups()(plain.losses, plain.counts).objective, syn)
    torch.manual_seed(3)
    grouped = matcher(tiny_net_factory).group_losses(real, syn, NearestSynthetic())
    assert grouped.losses.shape == (C * IPC,) and float(grouped.counts.sum()) == C * N
    assert int((grouped.counts > 0).sum()) > C  # really more than one group per class
    value = CVaR(0.0, "mass").__call__(grouped.losses, grouped.counts).objective
    (g_cvar,) = torch.autograd.grad(value, syn)
    # Each class holds 1/C of the mass, so the mean over groups has 1/C of plain DM's gradient ...
    assert torch.allclose(g_cvar * C, g_plain, rtol=1e-4, atol=1e-7)
    # ... and scale='classes' (scale = C) restores it exactly.
    torch.manual_seed(3)
    grouped = matcher(tiny_net_factory).group_losses(real, syn, NearestSynthetic())
    (g_scaled,) = torch.autograd.grad(CVaR(0.0, "mass", scale=C)(grouped.losses, grouped.counts).objective, syn)
    assert torch.allclose(g_scaled, g_plain, rtol=1e-4, atol=1e-7)


def test_cvar_of_dm_is_dm_toward_a_reweighted_real_mean(tiny_net_factory):
    """With the class-mean reference, CVaR's gradient for class c is 2 s_c (m_c - mu~_c) dm_c/dS: plain DM toward
    the tail-weighted mean mu~_c of the class's group means, scaled by the class's tail share s_c (docs/robust.md)."""
    real, syn = batches(4)
    torch.manual_seed(5)
    m = matcher(tiny_net_factory)
    out = m.group_losses(real, syn, NearestSynthetic())
    risk = CVaR(0.8, "mass")(out.losses, out.counts)
    (g_cvar,) = torch.autograd.grad(risk.objective, syn)
    with torch.no_grad():
        real_emb = torch.stack([m.net.embed(r) for r in real])
        ids = NearestSynthetic().assign(real_emb, torch.stack([m.net.embed(s) for s in syn]))
        means, _ = group_means(real_emb, ids, IPC)
    weights = risk.tail_weights.view(C, IPC)
    share = weights.sum(1)
    assert 0 < int((share > 0).sum())  # some class holds the tail
    target = (weights[..., None] * means).sum(1) / share.clamp(min=1e-12)[:, None]
    syn_mean = torch.stack([m.net.embed(s) for s in syn]).mean(1)
    (g_reweighted,) = torch.autograd.grad((share * ((syn_mean - target) ** 2).sum(-1)).sum(), syn)
    assert torch.allclose(g_cvar, g_reweighted, rtol=1e-4, atol=1e-7)


def test_groups_by_nearest_synthetic_image_of_any_class_are_scored_against_their_own_class():
    """cvar.groups=nearest_any: class c's group j holds its real images whose nearest synthetic image (of all
    classes) is image j; its loss is the distance of that group's mean embedding to class c's synthetic mean."""
    real, syn = batches(6)
    m = matcher(lambda: ConvNet(3, C, 16, width=8, depth=2))
    grouping = NearestAnySynthetic(C)
    out = m.group_losses(real, syn, grouping)
    with torch.no_grad():
        real_emb = torch.stack([m.net.embed(r) for r in real])
        syn_emb = torch.stack([m.net.embed(s) for s in syn])
        nearest = torch.cdist(real_emb.flatten(0, 1), syn_emb.flatten(0, 1)).argmin(1).view(C, N)
        assert (nearest // IPC != torch.arange(C)[:, None]).any()  # some real image sits by another class's
        expected_losses, expected_counts = torch.zeros(C, C * IPC), torch.zeros(C, C * IPC)
        for c in range(C):
            for j in nearest[c].unique().tolist():
                members = real_emb[c][nearest[c] == j]
                expected_losses[c, j] = ((members.mean(0) - syn_emb[c].mean(0)) ** 2).sum()
                expected_counts[c, j] = len(members)
    assert out.groups_per_class == C * IPC
    assert torch.equal(out.counts, expected_counts.flatten())
    assert torch.allclose(out.losses.detach(), expected_losses.flatten(), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 0.95])
def test_gradient_reaches_synthetic_images_through_cvar(tiny_net_factory, alpha):
    real, syn = batches(2)
    out = matcher(tiny_net_factory, DSA()).group_losses(real, syn, NearestSynthetic())
    risk = CVaR(alpha, "mass")(out.losses, out.counts)
    risk.objective.backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert float(syn.grad.abs().sum()) > 0
    # Only classes holding a tail group receive gradient; at high alpha some classes get none.
    tail_classes = (risk.tail_weights.view(C, IPC) > 0).any(1)
    got_grad = syn.grad.flatten(1).abs().sum(1) > 0
    assert torch.equal(tail_classes, got_grad)


@pytest.mark.parametrize("augment", [None, DSA()])
def test_batchnorm_network_embeds_every_class_in_one_pass_as_the_original(augment):
    real, syn = batches(3)
    make = lambda: ConvNet(3, 3, 16, width=8, depth=2, norm="batchnorm")  # noqa: E731
    torch.manual_seed(0)
    ref = reference_dm_loss(make, augment, real, syn)
    (g_ref,) = torch.autograd.grad(ref, syn)
    torch.manual_seed(0)
    chunked = DistributionMatcher(make, augment, embed_batch=5)  # batch norm ignores the pass size
    chunked.start_iteration("cpu")
    out = chunked.group_losses(real, syn, ByClass())
    (g_ours,) = torch.autograd.grad(out.losses.sum(), syn)
    assert torch.allclose(out.losses.sum(), ref, rtol=1e-5)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-7)
    # Per-class passes (what gdrdd did before) give other batch statistics, so another loss: the test can fail.
    torch.manual_seed(0)
    net = make().train().requires_grad_(False)
    pairs = [augment.siamese(real[c], syn[c]) if augment is not None else (real[c], syn[c]) for c in range(C)]
    per_class = sum(((net.embed(r).mean(0) - net.embed(s).mean(0)) ** 2).sum() for r, s in pairs)
    assert not torch.allclose(per_class, ref, rtol=1e-3)


def test_embedding_in_passes_of_a_few_images_equals_one_pass(tiny_net_factory):
    real, syn = batches()
    torch.manual_seed(0)
    whole = matcher(tiny_net_factory).group_losses(real, syn, NearestSynthetic())
    torch.manual_seed(0)
    chunked_matcher = DistributionMatcher(tiny_net_factory, embed_batch=5)
    chunked_matcher.start_iteration("cpu")
    chunked = chunked_matcher.group_losses(real, syn, NearestSynthetic())
    assert torch.equal(whole.counts, chunked.counts)
    assert torch.allclose(whole.losses, chunked.losses, rtol=1e-5, atol=1e-7)
