import pytest
import torch
from torch import nn

from gdrdd.models import ConvNet, build_model, has_batchnorm


@pytest.mark.parametrize("channels,resolution,depth,feature_side", [
    (1, 28, 3, 4), (3, 28, 3, 4), (1, 32, 3, 4), (3, 32, 3, 4), (3, 64, 4, 4), (1, 64, 3, 8), (3, 128, 5, 4)])
def test_convnet_shapes(channels, resolution, depth, feature_side):
    net = ConvNet(channels, 10, resolution, width=16, depth=depth)
    x = torch.randn(2, channels, resolution, resolution)
    assert net(x).shape == (2, 10)
    assert net.embed(x).shape == (2, 16 * feature_side * feature_side) == (2, net.feature_dim)


def test_instance_norm_is_groupnorm_per_channel_and_28px_pads_by_three():
    net = ConvNet(1, 10, 28, width=16)
    first_conv, norm = net.features[0], net.features[1]
    assert first_conv.padding == (3, 3) and net.features[4].padding == (1, 1)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels == 16 and norm.affine


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm", "layernorm", "groupnorm", "none"])
def test_norm_options(norm):
    net = ConvNet(3, 10, 32, width=8, norm=norm)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert has_batchnorm(net) == (norm == "batchnorm")


def test_build_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="resnet"):
        build_model({"name": "resnet"}, 3, 10, 32)
