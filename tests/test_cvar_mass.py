"""``bench/cvar_mass.py``: each image's pull on DM's synthetic mean under a group-weighted objective."""

import sys

import torch

from gdrdd.config import CONFIG_DIR
from gdrdd.robust import NearestSynthetic

sys.path.insert(0, str(CONFIG_DIR.parent / "bench"))
from cvar_mass import RecordedGrouping, pull_shares  # noqa: E402


def test_pull_shares_spread_each_groups_weight_over_its_images_by_brute_force():
    g = torch.Generator().manual_seed(0)
    c, n, k, count = 3, 20, 4, 3
    ids = torch.randint(0, k, (c, n), generator=g)
    subgroups = torch.randint(0, count, (c, n), generator=g)
    counts = torch.stack([torch.bincount(row, minlength=k) for row in ids]).flatten().float()
    weights = torch.rand(c * k, generator=g) * (counts > 0)
    expected = torch.zeros(c, count, dtype=torch.float64)
    for ci in range(c):
        for i in range(n):
            group = ci * k + int(ids[ci, i])
            expected[ci, subgroups[ci, i]] += float(weights[group]) / float(counts[group])
        expected[ci] /= expected[ci].sum()
    assert torch.allclose(pull_shares(ids, weights, counts, subgroups, count), expected)


def test_plain_weights_pull_as_the_batch_is_made_up():
    """One group per class, its images alike: each subgroup's share is its share of the class's batch."""
    subgroups = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 1, 1, 1]])
    shares = pull_shares(torch.zeros(2, 5, dtype=torch.long), torch.ones(2), torch.full((2,), 5.0), subgroups, 3)
    assert torch.allclose(shares, torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.8, 0.0]], dtype=torch.float64))
    left_out = pull_shares(torch.zeros(2, 5, dtype=torch.long), torch.tensor([1.0, 0.0]), torch.full((2,), 5.0),
                           subgroups, 3)  # a CVaR tail that puts no weight on the second class
    assert torch.allclose(left_out[0], shares[0]) and left_out[1].isnan().all()


def test_the_recorded_grouping_hands_on_the_ids_it_keeps():
    real, synthetic = torch.randn(2, 7, 5), torch.randn(2, 3, 5)
    recorded = RecordedGrouping(NearestSynthetic())
    ids = recorded.assign(real, synthetic)
    assert recorded.groups_per_class(3) == 3 and ids is recorded.ids
    assert torch.equal(ids, torch.cdist(real, synthetic).argmin(2))
