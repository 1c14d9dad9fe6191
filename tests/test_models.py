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


@pytest.mark.parametrize("name,options", [("alexnet", {}), ("alexnet", {"norm": "batchnorm"}), ("vgg11", {}),
                                          ("vgg11", {"norm": "batchnorm"}), ("resnet18", {}),
                                          ("resnet18", {"norm": "batchnorm", "downsample": "avgpool"})])
@pytest.mark.parametrize("channels,resolution", [(1, 28), (3, 32), (3, 64), (3, 128)])
def test_cross_architecture_networks_for_28_to_128_px(name, options, channels, resolution):
    net = build_model({"name": name, **options}, channels, 7, resolution)
    x = torch.randn(2, channels, resolution, resolution)
    assert net(x).shape == (2, 7) and net.embed(x).shape == (2, net.feature_dim)
    assert has_batchnorm(net) == (options.get("norm") == "batchnorm")


def test_reference_layer_facts_of_the_classic_networks():
    alex = build_model({"name": "alexnet"}, 1, 10, 28)
    convs = [m for m in alex.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 192, 256, 192, 192] and convs[0].padding == (4, 4)
    assert alex.feature_dim == 192 * 4 * 4
    vgg = build_model({"name": "vgg11"}, 3, 10, 32)
    assert [m.out_channels for m in vgg.features if isinstance(m, nn.Conv2d)] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert vgg.feature_dim == 512
    resnet = build_model({"name": "resnet18"}, 3, 10, 32)
    assert sum(isinstance(m, nn.Conv2d) for m in resnet.modules()) == 1 + 16 + 3 and resnet.feature_dim == 512
    ap = build_model({"name": "resnet18", "downsample": "avgpool"}, 3, 10, 32)
    assert all(m.stride == (1, 1) for m in ap.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.AvgPool2d) for m in ap.modules())


def test_channels_last_training_gives_the_contiguous_networks_parameters(tiny_net_factory, compose):
    from dataclasses import replace

    from gdrdd.augment.dsa import DSA
    from gdrdd.jobs import build
    from gdrdd.models.fit import TrainSettings, predict, train_network

    assert not build.evaluation_settings(compose()).channels_last  # opt-in: not faster on the measured CPU
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(12, 3, 16, 16, generator=g), torch.arange(3).repeat_interleave(4)
    settings = TrainSettings(epochs=3, lr=0.05, batch_size=8)
    trained = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = tiny_net_factory()
        train_network(net, images, labels, replace(settings, channels_last=channels_last), DSA("crop_flip"),
                      torch.Generator().manual_seed(1))
        trained[channels_last] = net
    conv = trained[True].features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for a, b in zip(trained[False].parameters(), trained[True].parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(predict(trained[False], images, labels)[0], predict(trained[True], images, labels)[0])
