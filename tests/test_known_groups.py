"""``cvar.groups=known``: CVaR over a shift benchmark's known subgroups, for DM and gradient matching."""


import pytest
import torch

from gdrdd.augment import DSA
from gdrdd.errors import ConfigError
from gdrdd.jobs import build
from gdrdd.jobs.distill import run
from gdrdd.matchers import DistributionMatcher, GradientMatcher
from gdrdd.matchers.gradient import group_gradients
from gdrdd.report.run import option_word, run_records
from gdrdd.robust.grouping import KnownGroups, NearestSynthetic

C, N, IPC, K = 3, 12, 2, 3


def known(ids: torch.Tensor) -> KnownGroups:
    grouping = KnownGroups(K)
    grouping.set_batch(ids)
    return grouping


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(C, N, 3, 16, 16, generator=g)
    syn = torch.randn(C, IPC, 3, 16, 16, generator=g).requires_grad_(True)
    ids = torch.randint(0, K, (C, N), generator=g)
    ids[:, :K] = torch.arange(K)  # every subgroup present in every class
    return real, syn, ids


def test_known_groups_return_the_batch_labels_and_refuse_a_batch_they_do_not_belong_to():
    ids = torch.tensor([[0, 2, 1], [1, 1, 0]])
    grouping = known(ids)
    assert grouping.groups_per_class(ipc=10) == K
    assert torch.equal(grouping.assign(torch.zeros(2, 3, 5), torch.zeros(2, 10, 5)), ids)
    with pytest.raises(RuntimeError, match=r"known subgroup ids \(2, 3\) do not match the real batch \(2, 4\)"):
        grouping.assign(torch.zeros(2, 4, 5), torch.zeros(2, 10, 5))


def test_dm_group_losses_over_known_subgroups_by_hand(tiny_net_factory):
    real, syn, ids = batch()
    matcher = DistributionMatcher(tiny_net_factory)
    matcher.start_iteration("cpu")
    out = matcher.group_losses(real, syn, known(ids))
    expected, counts = [], []
    for c in range(C):
        syn_mean = matcher.net.embed(syn[c]).mean(0)
        for g in range(K):
            members = real[c][ids[c] == g]
            counts.append(len(members))
            expected.append(((matcher.net.embed(members).mean(0) - syn_mean) ** 2).sum())
    assert out.counts.tolist() == counts
    assert torch.allclose(out.losses, torch.stack(expected), rtol=1e-4)


@pytest.mark.parametrize("augment", [None, DSA("color_crop_flip")])
def test_gradient_matching_groups_every_class_in_one_call(tiny_net_factory, augment):
    real, syn, ids = batch(1)
    matcher = GradientMatcher(tiny_net_factory, augment, metric="ours", outer_loop=1, inner_loop=1, lr_net=0.01,
                              batch_train=8)
    matcher.start_iteration("cpu")
    torch.manual_seed(3)
    out = matcher.group_losses(real, syn, known(ids))
    assert out.counts.view(C, K).tolist() == [torch.bincount(i, minlength=K).tolist() for i in ids]
    # nearest-synthetic ids from one call over all classes equal the per-class assignment of the step's network
    torch.manual_seed(3)
    pairs = [augment.siamese(real[c], syn[c]) if augment else (real[c], syn[c]) for c in range(C)]
    with torch.no_grad():
        per_class = [NearestSynthetic().assign(matcher.net.embed(r)[None], matcher.net.embed(s)[None])[0]
                     for r, s in pairs]
        assert torch.equal(matcher._group_ids(pairs, NearestSynthetic(), IPC), torch.stack(per_class))
    _, counts = group_gradients(matcher.net, matcher.params, pairs[0][0], 0, ids[0], K)
    assert torch.equal(counts.to(out.counts.dtype), out.counts[:K])


def test_sampled_subgroup_labels_belong_to_the_sampled_images(compose):
    cfg = compose("dataset=mnist_mini_shift", "cvar.groups=known")
    data = build.datamodule(cfg, build.dataset_spec(cfg))
    data.setup()
    images, ids = data.sample_real(16, torch.Generator().manual_seed(2), with_subgroups=True)
    assert torch.equal(images, data.sample_real(16, torch.Generator().manual_seed(2)))
    for c in range(len(images)):
        flat = data.class_images[c].flatten(1)
        index = [int((flat == x.flatten()).all(1).nonzero()[0]) for x in images[c]]
        assert torch.equal(ids[c], data.class_subgroups[c][index])
    assert len(ids.unique()) == 3


def test_run_with_known_groups_reports_them(tmp_path, compose):
    cfg = compose("dataset=mnist_mini_shift", "cvar.groups=known", "ipc=2", "iterations=2", "model.width=16",
                         "eval.nets=1", "eval.epochs=2", "method.batch_real=16", "trainer.enable_progress_bar=false",
                         "eval.coverage=false", "eval.baseline=false", "dashboard.group_stats_every=1",
                         f"paths.output_dir={tmp_path}")
    run(cfg)
    groups = (tmp_path / "group_stats.jsonl").read_text().splitlines()
    assert groups and '"groups_per_class": 3' in groups[-1]
    (record,) = run_records(tmp_path / "metrics.json")
    assert record["setting"]["cvar.groups"] == "known" and record["setting"]["dataset.shift.keep"] == (1.0, 0.25, 0.05)
    assert option_word("cvar.groups", "known", record["setting"]) == "groups=known"


@pytest.mark.parametrize("overrides, message", [
    (("dataset=mnist_mini",), r"cvar\.groups='known' is not valid; accepted: 'nearest' unless the data set"),
    (("dataset=mnist_mini_shift", "method=mtt"), r"'nearest' for method=mtt"),
    (("dataset=mnist_mini_shift", "method=dsa", "cvar.target=network"), r"cvar\.target='network' is not valid"),
    (("dataset=mnist_mini_shift", "cvar.features=encoder"), r"cvar\.features='encoder' is not valid"),
    (("dataset=mnist_mini_shift", "cvar.groups=clusters"), r"accepted: nearest, nearest_any, known"),
])
def test_known_groups_need_labels_and_a_grouping_matcher(tmp_path, overrides, message, compose):
    groups = [] if any(o.startswith("cvar.groups") for o in overrides) else ["cvar.groups=known"]
    cfg = compose(*overrides, *groups, f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert list(tmp_path.iterdir()) == []
