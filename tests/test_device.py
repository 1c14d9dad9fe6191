"""Device-sensitive paths, checked without a GPU on PyTorch's ``meta`` device.

A meta tensor has a shape and a device but no data: an operation that mixes it with a CPU tensor fails ("not on
the expected device"), and so does anything that reads a value on the host (``.item()``, ``bool()``,
``.tolist()``). Running a per-step path with its data on ``meta`` therefore shows that every tensor it creates
follows the data's device (a ``torch.Generator`` on the CPU handed to a CUDA draw, a constant made on the CPU)
and that it does not synchronise with the host, which on a GPU stalls the queue every step. The paths that need
a real GPU are marked ``gpu`` (``tests/test_gpu.py``) and skipped without one.
"""

from types import SimpleNamespace

import pytest
import torch

from gdrdd.augment.dsa import DSA
from gdrdd.data.preprocess import Preprocess
from gdrdd.data.spec import DatasetSpec
from gdrdd.matchers.dm import DistributionMatcher
from gdrdd.matchers.gradient import GradientMatcher
from gdrdd.models import ConvNet
from gdrdd.models.fit import run_epochs
from gdrdd.robust.grouping import ByClass, NearestSynthetic, assign_labelled
from gdrdd.robust.network import GroupRobustLoss
from gdrdd.robust.risk import CVaR

META = torch.device("meta")
C, IPC, N = 3, 2, 8


def net_factory():
    return ConvNet(3, C, 16, width=8, depth=2)


def test_meta_tensors_refuse_host_reads_and_cpu_mixing():
    """The premise: on ``meta`` these fail, so the paths below would fail if they did either."""
    x = torch.ones(3, device=META)
    with pytest.raises(RuntimeError):
        bool(x.sum() > 0)
    with pytest.raises(RuntimeError):
        x + torch.ones(3)


def test_the_risk_measure_and_grouping_stay_on_the_device_without_host_reads():
    risk = CVaR(0.8, mix=0.5, min_count=2)(torch.rand(6, device=META), torch.ones(6, device=META))
    assert risk.objective.device == META and risk.tail_weights.device == META
    ids = assign_labelled(NearestSynthetic(), torch.randn(N, 4, device=META),
                          torch.zeros(N, dtype=torch.long, device=META), torch.randn(C, IPC, 4, device=META))
    assert ids.device == META and ids.shape == (N,)


def test_robust_network_training_loss_and_its_backward_run_on_the_device():
    net = net_factory().to(META)
    loss = GroupRobustLoss(torch.randn(C, IPC, 3, 16, 16, device=META), NearestSynthetic(), CVaR(0.8))
    value = loss(net, torch.randn(2 * C, 3, 16, 16, device=META), torch.arange(C, device=META).repeat(2))
    value.backward()
    assert value.device == META and all(p.grad.device == META for p in net.parameters())


def test_dsa_draws_on_the_host_and_applies_on_the_device():
    x = torch.randn(N, 3, 16, 16, device=META)
    out = DSA("color_crop_cutout_flip_scale_rotate").siamese(x, x, generator=torch.Generator().manual_seed(0))
    assert all(y.device == META for y in out)


@pytest.mark.parametrize("grouping", [ByClass(), NearestSynthetic()], ids=["plain", "nearest"])
def test_a_dm_update_runs_on_the_device(grouping):
    matcher = DistributionMatcher(net_factory, DSA("color_crop"))
    matcher.start_iteration(META)
    synthetic = torch.randn(C, IPC, 3, 16, 16, device=META, requires_grad=True)
    out = matcher.group_losses(torch.randn(C, N, 3, 16, 16, device=META), synthetic, grouping)
    CVaR(0.8, mix=0.5)(out.losses, out.counts).objective.backward()
    assert synthetic.grad.device == META


def test_a_plain_dsa_update_and_the_inner_training_run_on_the_device():
    matcher = GradientMatcher(net_factory, DSA("color_crop"), outer_loop=2, inner_loop=1, batch_train=4)
    matcher.start_iteration(META)
    synthetic = torch.randn(C, IPC, 3, 16, 16, device=META, requires_grad=True)
    out = matcher.group_losses(torch.randn(C, N, 3, 16, 16, device=META), synthetic, ByClass())
    out.losses.sum().backward()
    assert synthetic.grad.device == META
    matcher.after_update(synthetic.detach(), is_last=False)  # the network's epochs on the synthetic set


def test_evaluation_training_epochs_run_on_the_device():
    net = net_factory().to(META)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    run_epochs(net, optimizer, torch.randn(N, 3, 16, 16, device=META), torch.arange(N, device=META) % C, 2, 4,
               DSA("color_crop"), torch.Generator().manual_seed(0))
    assert all(p.device == META for p in net.parameters())


def toy_data():
    from gdrdd.data.datamodule import RealDataModule

    spec = DatasetSpec("toy", "toy", 3, 16, tuple("abc"), (0.5,) * 3, (0.5,) * 3, "color")
    data = RealDataModule(spec, "unused")
    data.class_images = [torch.randn(10, 3, 16, 16) for _ in range(C)]
    data.test_images, data.test_labels = torch.randn(6, 3, 16, 16), torch.arange(6) % C
    return data


def test_real_batches_are_drawn_on_the_host_and_gathered_on_the_device():
    data = toy_data().to(META)
    assert data.class_images[0].device == META and data.device == META
    assert data.sample_real(4, torch.Generator().manual_seed(0)).device == META
    assert data.spec.normalise(torch.rand(2, 3, 16, 16, device=META)).device == META


def test_a_training_set_too_large_for_the_device_stays_on_the_host_and_batches_reach_the_device(monkeypatch):
    from gdrdd.data import datamodule

    monkeypatch.setattr(datamodule, "fits_on", lambda device, size: False)
    data = toy_data().to(META)
    assert data.class_images[0].device.type == "cpu" and data.device == META and data.test_images.device == META
    assert data.sample_real(4, torch.Generator().manual_seed(0)).device == META
    assert data.first_images(2).device == META
    images, labels = data.training_images(torch.tensor([0, 11, 29]))
    assert images.device == META and labels.device == META
    net = net_factory().to(META)  # a network on the device learns from the host-side training set, batch by batch
    run_epochs(net, torch.optim.SGD(net.parameters(), lr=0.01), *data.training_set(), 1, 8)


def test_zca_tensors_follow_the_images_even_as_plain_attributes():
    """kornia releases before 0.9 keep the ZCA tensors as plain attributes, which ``Module.to`` leaves behind."""
    spec = DatasetSpec("toy", "toy", 1, 2, ("a",), (0.5,), (0.5,), "color")
    zca = SimpleNamespace(mean_vector=torch.zeros(1, 4), transform_matrix=torch.eye(4), transform_inv=torch.eye(4))
    moved = Preprocess(spec, zca)._zca_on(torch.empty(0, device=META))
    assert {t.device for t in (moved.mean_vector, moved.transform_matrix, moved.transform_inv)} == {META}
