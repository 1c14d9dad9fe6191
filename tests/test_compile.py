"""Compiled network passes (``method.compile``, ``eval.compile``): the same numbers as the eager passes, up to
summation order, for the evaluation networks' training, DM's embeddings and gradient matching."""

import copy
from dataclasses import replace

import pytest
import torch

from gdrdd.augment.dsa import DSA
from gdrdd.errors import ConfigError
from gdrdd.jobs import build
from gdrdd.matchers import DistributionMatcher, GradientMatcher
from gdrdd.models.fit import TrainSettings, predict, train_network
from gdrdd.robust import ByClass
from gdrdd.utils.runtime import cpu_compiler_found

C, IPC, N = 3, 2, 6
# torch.compile builds C++ kernels on a CPU: without a C++ compiler these tests cannot run (the eager path is
# tested everywhere else).
pytestmark = pytest.mark.skipif(not cpu_compiler_found(), reason="torch.compile on a CPU needs a C++ compiler")


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(C, N, 3, 16, 16, generator=g), torch.randn(C, IPC, 3, 16, 16, generator=g)


def test_compiled_evaluation_network_trains_to_the_eager_parameters(tiny_net_factory, compose):
    assert not build.evaluation_settings(compose()).compile  # opt-in
    images, labels = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.arange(3).repeat(4)
    settings = TrainSettings(epochs=3, lr=0.05, batch_size=8)
    nets, outputs = {}, {}
    for compile in (False, True):
        torch.manual_seed(0)
        nets[compile] = tiny_net_factory()
        outputs[compile] = train_network(nets[compile], images, labels, replace(settings, compile=compile),
                                         DSA("crop_flip"), torch.Generator().manual_seed(1))
    assert outputs[False] is nets[False] and outputs[True] is not nets[True]  # the compiled wrapper, ...
    assert not outputs[True].training and all(a is b for a, b in zip(outputs[True].parameters(),
                                                                    nets[True].parameters()))  # ... same parameters
    for a, b in zip(nets[False].parameters(), nets[True].parameters()):
        assert torch.allclose(a, b, atol=1e-4)
    assert torch.equal(predict(outputs[False], images, labels)[0], predict(outputs[True], images, labels)[0])


def test_compiled_dm_embeddings_give_the_eager_losses_and_image_gradients(tiny_net_factory):
    real, syn = data()
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        matcher = DistributionMatcher(tiny_net_factory, None, compile=compile)
        matcher.start_iteration("cpu")
        images = syn.clone().requires_grad_(True)
        out = matcher.group_losses(real, images, ByClass())
        out.losses.sum().backward()
        results.append((out.losses.detach(), images.grad))
    (eager_loss, eager_grad), (compiled_loss, compiled_grad) = results
    assert torch.allclose(eager_loss, compiled_loss, rtol=1e-4)
    assert torch.allclose(eager_grad, compiled_grad, rtol=1e-3, atol=1e-6)


def test_compiled_gradient_matching_gives_the_eager_losses_and_inner_training(tiny_net_factory):
    real, syn = data(1)
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        matcher = GradientMatcher(tiny_net_factory, None, outer_loop=2, inner_loop=2, compile=compile)
        matcher.start_iteration("cpu")
        images = syn.clone().requires_grad_(True)
        out = matcher.group_losses(real, images, ByClass())
        out.losses.sum().backward()
        torch.manual_seed(1)
        matcher.after_update(syn, is_last=False)
        results.append((out.losses.detach(), images.grad, copy.deepcopy(matcher.net.state_dict())))
    (loss_a, grad_a, net_a), (loss_b, grad_b, net_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-4)
    assert torch.allclose(grad_a, grad_b, rtol=1e-3, atol=1e-6)
    assert all(torch.allclose(net_a[k], net_b[k], atol=1e-5) for k in net_a)
    assert not all(torch.equal(net_a[k], v) for k, v in tiny_net_factory().state_dict().items())


@pytest.mark.parametrize("method", ["mtt", "idc"])
def test_methods_without_a_compiled_pass_refuse_method_compile(tiny, method):
    from gdrdd.config.checks import validate

    with pytest.raises(ConfigError, match=r"method\.compile"):
        validate(tiny("+method.compile=true", method=method))


@pytest.mark.slow  # ~2 minutes: every compiled pass of a DSA run and its evaluation is compiled
def test_a_run_with_compiled_passes_distils_the_eager_runs_set(tiny, tmp_path):
    from gdrdd.jobs.distill import run

    sets = {}
    for compile in ("false", "true"):
        out = tmp_path / compile
        metrics = run(tiny(f"method.compile={compile}", f"eval.compile={compile}", "eval.baseline=false",
                           "method.outer_loop=2", "method.inner_loop=2",
                           method="dsa", out=out))
        assert 0 <= metrics["scored"]["distilled"]["acc"] <= 100
        sets[compile] = torch.load(out / "distilled.pt", weights_only=True)["images"]
    # Summation order, amplified through 6 image updates of the layer-wise cosine distance: 1.3e-3 measured.
    assert float((sets["false"] - sets["true"]).norm() / sets["false"].norm()) < 5e-3
