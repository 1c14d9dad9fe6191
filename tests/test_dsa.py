import pytest
import torch

from gdrdd.augment import DSA
from gdrdd.augment.dsa import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_applies_identical_parameters_to_both_batches(family):
    dsa = DSA(family)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    # Same image in both batches -> same output, whatever the draw.
    b[0] = a[0]
    for seed in range(5):
        aa, bb = dsa.siamese(a, b, generator=torch.Generator().manual_seed(seed))
        assert aa.shape == a.shape and bb.shape == b.shape
        assert torch.allclose(aa[0], bb[0])
        # One parameter set for the whole batch: equal to applying the draw to the concatenated batch.
        params = dsa.sample(1, 16, generator=torch.Generator().manual_seed(seed))
        both = dsa.apply(torch.cat([a, b]), params)
        assert torch.allclose(torch.cat([aa, bb]), both)


def test_per_sample_parameters_differ_between_samples():
    x = torch.randn(1, 3, 16, 16).repeat(64, 1, 1, 1)
    out = DSA("rotate")(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(out[0], out[1])


def test_transforms_match_their_definitions():
    dsa = DSA()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    shifted = dsa.apply(x, DSA("crop").sample(1, 4))  # exercise sampling bounds
    assert shifted.shape == x.shape
    from gdrdd.augment.dsa import DSAParams

    down_one = dsa.apply(x, DSAParams("crop", {"shift": torch.tensor([[1, 0]])}))
    assert torch.equal(down_one[0, 0, 1:], x[0, 0, :-1]) and torch.equal(down_one[0, 0, 0], torch.zeros(4))
    flipped = dsa.apply(x, DSAParams("flip", {"flip": torch.tensor([0.1])}))
    assert torch.equal(flipped, x.flip(3))
    kept = dsa.apply(x, DSAParams("flip", {"flip": torch.tensor([0.9])}))
    assert torch.equal(kept, x)
    cut = dsa.apply(torch.ones(1, 1, 4, 4), DSAParams("cutout", {"centre": torch.tensor([[1, 1]])}))
    assert cut[0, 0].sum() == 12 and cut[0, 0, 0:2, 0:2].sum() == 0  # a 2x2 hole at the top left
    identity_scale = dsa.apply(x, DSAParams("scale", {"scale": torch.full((1, 2), (1 - 1 / 1.2) / (1.2 - 1 / 1.2))}))
    assert torch.allclose(identity_scale, x, atol=1e-5)  # draw that gives scale factor 1
    no_rotation = dsa.apply(x, DSAParams("rotate", {"rotate": torch.tensor([0.5])}))
    assert torch.allclose(no_rotation, x, atol=1e-5)
    bright = dsa.apply(torch.zeros(1, 3, 2, 2), DSAParams("color", {
        "brightness": torch.tensor([1.0]), "saturation": torch.tensor([0.5]), "contrast": torch.tensor([0.5])}))
    assert torch.allclose(bright, torch.full((1, 3, 2, 2), 0.5))  # +0.5 brightness, colour-neutral otherwise


def test_augmentation_is_differentiable():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    for family in FAMILIES:
        DSA(family)(x).sum().backward()
    assert x.grad is not None


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="zoom"):
        DSA("color_zoom")
