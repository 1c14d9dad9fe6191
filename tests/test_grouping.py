import torch

from gdrdd.robust import ByClass, NearestSynthetic, group_means


def test_nearest_same_class_synthetic_image():
    # Two classes, two synthetic images each, in 2-D feature space.
    syn = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 10.0], [5.0, 5.0]]])
    real = torch.tensor([[[1.0, 0.0], [9.0, 1.0], [6.0, 0.0]], [[0.0, 9.0], [4.0, 4.0], [0.0, 0.0]]])
    ids = NearestSynthetic().assign(real, syn)
    assert ids.tolist() == [[0, 1, 1], [0, 1, 1]]
    # The real (0, 0) of class 1 sits on class 0's first synthetic image but must join a class-1 group.
    assert NearestSynthetic().groups_per_class(7) == 7 and ByClass().groups_per_class(7) == 1
    assert torch.equal(ByClass().assign(real, syn), torch.zeros(2, 3, dtype=torch.long))


def test_group_means_and_counts_with_an_empty_group():
    feats = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [4.0], [6.0]]])
    ids = torch.tensor([[0, 0, 2], [1, 1, 1]])
    means, counts = group_means(feats, ids, 3)
    assert counts.tolist() == [[2, 0, 1], [0, 3, 0]]
    assert means[0, 0, 0] == 2.0 and means[0, 2, 0] == 5.0 and means[1, 1, 0] == 4.0
    assert means[0, 1, 0] == 0.0
