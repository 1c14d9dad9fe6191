"""cvar=release (the robust-DD release's network training) and the k-means real batch: the release's epoch written
out as its program computes it equals ours (and reduces to mean cross-entropy steps), the groups equal a brute-force
nearest-synthetic assignment over all classes, the logged value and the IPC-50 centres follow the release's rules,
and k-means keeps the real image nearest each centre."""

import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdrdd.cli import train as run
from gdrdd.distill.kmeans_batch import default_centres, kmeans, kmeans_picks, nearest_to_centres
from gdrdd.errors import ConfigError
from gdrdd.models import ConvNet
from gdrdd.robust.network import cross_entropy_per_sample
from gdrdd.robust.release import (
    ReleaseNetworkTraining,
    ReleasePool,
    farthest_walk,
    group_centres,
    nearest_centre,
    release_group_value,
    release_value,
)

C = 3


def tiny_net():
    torch.manual_seed(0)
    return ConvNet(3, C, 16, width=8, depth=2)


def pool_and_synthetic(n=10, ipc=2):
    torch.manual_seed(1)
    matched = torch.randn(C, n, 3, 16, 16)
    second = torch.randn(C, n, 3, 16, 16)
    synthetic = torch.randn(C, ipc, 3, 16, 16)
    return matched, second, synthetic


def test_the_release_epoch_written_out_equals_ours_and_is_a_mean_cross_entropy_step():
    matched, second, synthetic = pool_and_synthetic()
    batch, log_every = 8, 3

    ours = tiny_net()
    training = ReleaseNetworkTraining(lambda n: second, batch_real=10, epochs=2, batch_size=batch,
                                      per_sample=cross_entropy_per_sample, log_every=log_every)
    pool = ReleasePool()
    pool.add_classes(matched)
    torch.manual_seed(5)
    training.train(ours, torch.optim.SGD(ours.parameters(), lr=0.1), pool, synthetic)

    # The release's program: the pool (matched batch, then the second batch, class by class), shuffled each epoch;
    # every log_every-th batch the loss is `mean + (value - mean)` plus the mean, value a number without a graph.
    theirs = tiny_net()
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    images = torch.cat([torch.cat([matched[c], second[c]]) for c in range(C)])
    labels = torch.arange(C).repeat_interleave(20)
    torch.manual_seed(5)
    for _ in range(2):
        for i, idx in enumerate(torch.randperm(len(images)).split(batch)):
            per_sample = F.cross_entropy(theirs(images[idx]), labels[idx], reduction="none")
            mean = per_sample.mean()
            if i % log_every == 0:
                value = torch.tensor(float(per_sample.max()) + 7.0)  # rebuilt from numbers: no gradient
                loss = (mean + (value - mean)) + mean
            else:
                loss = mean
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    # ... which is a plain mean cross-entropy step on every batch.
    plain = tiny_net()
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
    torch.manual_seed(5)
    for _ in range(2):
        for idx in torch.randperm(len(images)).split(batch):
            optimizer.zero_grad()
            F.cross_entropy(plain(images[idx]), labels[idx]).backward()
            optimizer.step()

    for a, b, c in zip(ours.parameters(), theirs.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    assert set(training.logged) == {"release/cvar", "release/loss", "release/nonempty_groups"}


def test_groups_are_the_nearest_synthetic_image_of_any_class_brute_force():
    net = tiny_net()
    matched, _, synthetic = pool_and_synthetic(n=300)
    images = matched.flatten(0, 1)  # 900 images: several embedding chunks
    centres = synthetic.flatten(0, 1)
    ids = nearest_centre(net, images, centres)
    with torch.no_grad():
        feats, cfeats = net.embed(images), net.embed(centres)
    for i in range(0, len(images), 37):
        distances = [float(((feats[i] - cfeats[j]) ** 2).sum()) for j in range(len(centres))]
        assert ids[i] == min(range(len(centres)), key=distances.__getitem__)
    assert {int(i) // 2 for i in ids.unique()} - {0, 1, 2} == set()  # ids index every class's images


def test_farthest_walk_follows_the_last_chosen_image_and_ipc_50_keeps_ten():
    points = torch.tensor([[0.0], [1.0], [10.0], [4.0], [-3.0]]).view(5, 1, 1, 1)
    # from 0: farthest is 10 (index 2); from 10: farthest remaining is -3 (4); from -3: farthest remaining 4 (3)
    assert farthest_walk(points, 4).tolist() == [0, 2, 4, 3]
    synthetic = torch.randn(2, 50, 3, 4, 4)
    centres = group_centres(synthetic, None)
    assert centres.shape == (20, 3, 4, 4)
    assert torch.equal(centres[10:], synthetic[1][farthest_walk(synthetic[1], 10)])
    assert group_centres(synthetic[:, :10], None).shape == (20, 3, 4, 4)  # below 50: every image
    assert group_centres(synthetic[:, :10], 4).shape == (8, 3, 4, 4)


def test_the_logged_value_is_the_releases_number_by_hand():
    # groups [1, 3], [2], []: padded rows [1, 3], [2, 0], [0, 0]; alpha 0.8 -> r = 1 of L = 2
    # group 0: (1 + 1 * (0.8 - 0.5)) / 0.8 = 1.625; group 1: sorted [0, 2], head [0] -> 0; group 2: 0
    value = release_value([torch.tensor([1.0, 3.0]), torch.tensor([2.0]), torch.zeros(0)], alpha=0.8)
    assert value.item() == pytest.approx(1.625 + 1.625)
    assert release_group_value(torch.tensor([4.0, 2.0, 0.0, 6.0]), 0.5).item() == pytest.approx((2.0 + 0) / 0.5)


class Flat(nn.Module):
    def embed(self, x):
        return x.flatten(1)


def test_kmeans_keeps_the_real_image_nearest_each_centre():
    torch.manual_seed(0)
    points, centres = torch.randn(12, 4), torch.randn(3, 4)
    brute = [min(range(12), key=lambda i: float(((points[i] - c) ** 2).sum())) for c in centres]
    assert nearest_to_centres(points, centres).tolist() == brute
    # two far-apart blobs, two centres: one image of each blob is kept
    blobs = torch.cat([torch.randn(7, 2) * 0.1, torch.randn(3, 2) * 0.1 + 50])
    found = kmeans(blobs, 2)
    assert sorted(found[:, 0].round().tolist()) == [0.0, 50.0]
    picks = kmeans_picks(Flat(), blobs.view(1, 10, 2, 1, 1), 2)[0]
    assert sorted(int(i) >= 7 for i in picks) == [False, True]
    # as many centres as images: every image is its own centre and is kept once
    assert sorted(kmeans_picks(Flat(), blobs.view(1, 10, 2, 1, 1), 10)[0].tolist()) == list(range(10))
    assert default_centres(256, None) == 128 and default_centres(256, 20) == 20


def test_kmeans_batches_reach_the_matcher_and_known_groups_follow_them(tmp_path, tiny):
    seen = {}
    from gdrdd.matchers.dm import DistributionMatcher
    original = DistributionMatcher.group_losses

    def spy(self, real, synthetic, grouping):
        seen["shape"] = tuple(real.shape[:2])
        seen.setdefault("ids", getattr(grouping, "batch_ids", None))
        return original(self, real, synthetic, grouping)

    DistributionMatcher.group_losses = spy
    try:
        run(tiny("method.real_batch=kmeans", "method.kmeans_centres=5", "dataset=mnist_mini_shift", "cvar=known",
                 "eval.baseline=false", out=tmp_path / "dm"))
    finally:
        DistributionMatcher.group_losses = original
    assert seen["shape"] == (10, 5)
    assert seen["ids"].shape == (10, 5)


def test_release_and_kmeans_run_end_to_end_and_log_the_release_values(tmp_path, tiny):
    for method in ("dsa", "idc"):
        loops = (["method.outer_loop=2", "method.inner_loop=1"] if method == "dsa"
                 else ["method.inner_loop=2", "method.n_data=32"])
        run(tiny("cvar=release", "method.real_batch=kmeans", "iterations=1", "eval.baseline=false", *loops,
                 method=method, out=tmp_path / method))
        rows = list(csv.DictReader((tmp_path / method / "csv" / "metrics.csv").open()))
        logged = [r for r in rows if r.get("release/cvar")]
        assert logged and float(logged[-1]["release/nonempty_groups"]) >= 1
        # the synthetic set's objective stays the plain one: one group per class
        assert {float(r["robust/nonempty_groups"]) for r in rows if r.get("robust/nonempty_groups")} == {
            10.0 if method == "dsa" else 1.0}


def test_the_pool_epochs_are_their_own_option_and_default_to_the_methods_inner_loop(tmp_path, tiny):
    """cvar.release.epochs=1 with inner loop 3 distils what inner loop 1 distils (the knob sets the passes over the
    pool, and the method's inner loop, otherwise unused under cvar=release, does not); 2 passes distil another set."""
    def distilled(*overrides, name):
        run(tiny("cvar=release", "method.outer_loop=2", "iterations=1", "eval.baseline=false", "eval.nets=1",
                 "eval.epochs=1", *overrides, method="dsa", out=tmp_path / name))
        return torch.load(tmp_path / name / "distilled.pt", weights_only=True)["images"]

    by_inner_loop = distilled("method.inner_loop=1", name="inner1")
    assert torch.equal(distilled("method.inner_loop=3", "cvar.release.epochs=1", name="epochs1"), by_inner_loop)
    assert not torch.equal(distilled("method.inner_loop=1", "cvar.release.epochs=2", name="epochs2"), by_inner_loop)


def test_release_and_kmeans_are_refused_where_they_do_nothing(tmp_path, tiny):
    with pytest.raises(ConfigError, match="cvar.target='release'"):
        run(tiny("cvar=release", out=tmp_path / "dm"))
    with pytest.raises(ConfigError, match="method.real_batch"):
        run(tiny("+method.real_batch=kmeans", method="mtt", out=tmp_path / "mtt"))
    with pytest.raises(ConfigError, match="method.kmeans_centres"):
        run(tiny("method.real_batch=kmeans", "method.kmeans_centres=64", out=tmp_path / "k"))
    with pytest.raises(ConfigError, match="cvar.mix"):
        run(tiny("cvar=release", "cvar.mix=0.3", "method.outer_loop=2", "method.inner_loop=1", method="dsa",
                 out=tmp_path / "mix"))
    with pytest.raises(ConfigError, match="cvar.release"):
        run(tiny("cvar=default", "cvar.release.centres=4", out=tmp_path / "centres"))
    with pytest.raises(ConfigError, match="cvar.release.epochs"):
        run(tiny("cvar=release", "cvar.release.epochs=0", "method.outer_loop=2", "method.inner_loop=1",
                 method="dsa", out=tmp_path / "epochs"))
    with pytest.raises(ConfigError, match="cvar.release.log_every"):
        run(tiny("cvar=release", "cvar.release.log_every=0", "method.outer_loop=2", "method.inner_loop=1",
                 method="dsa", out=tmp_path / "every"))
