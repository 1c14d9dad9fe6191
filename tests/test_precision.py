"""Mixed precision: bf16 autocast where asked (distillation via trainer.precision, evaluation via
eval.precision), float16 with a loss scaler for the evaluation networks, float32 otherwise."""


import pytest
import torch

from gdrdd.data.spec import DatasetSpec
from gdrdd.evaluation.evaluator import Evaluator
from gdrdd.jobs.distill import run
from gdrdd.models.fit import TrainSettings
from gdrdd.utils.runtime import autocast

PLAIN = ["eval.baseline=false", "eval.coverage=false", "cvar=none"]


def test_autocast_names():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    with autocast("cpu", "bf16-mixed"):
        assert conv(x).dtype == torch.bfloat16
    with autocast("cpu", "32-true"):
        assert conv(x).dtype == torch.float32
    with autocast("cpu", "16-mixed"):
        assert conv(x).dtype == torch.float16
    with pytest.raises(ValueError, match="bf16-mixed"):
        autocast("cpu", "fp8")


def test_evaluator_trains_and_tests_under_bf16_when_asked(tiny_net_factory):
    spec = DatasetSpec("toy", "none", 3, 16, ("a", "b", "c"), (0.5,) * 3, (0.5,) * 3, "flip")
    images, labels = torch.randn(12, 3, 16, 16), torch.arange(3).repeat_interleave(4)
    seen = []

    def factory():
        net = tiny_net_factory()
        net.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return net

    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16), ("32-true", torch.float32)):
        seen.clear()
        Evaluator(spec, images, labels, factory, TrainSettings(epochs=2), nets=1, num_groups=2,
                  precision=precision).evaluate(images, labels)
        assert seen and set(seen) == {dtype}


@pytest.mark.slow  # ~20 s: two runs; bf16 autocast itself is checked above
def test_bf16_distillation_is_close_to_float32_but_not_equal(tmp_path, tiny):
    images = {}
    for precision in ("32-true", "bf16-mixed"):
        cfg = tiny(*PLAIN, f"trainer.precision={precision}", out=tmp_path / precision)
        run(cfg)
        images[precision] = torch.load(tmp_path / precision / "distilled.pt", weights_only=True)["images"]
    run(tiny(*PLAIN, "iterations=0", out=tmp_path / "init"))
    init = torch.load(tmp_path / "init" / "distilled.pt", weights_only=True)["images"]
    step32, step16 = images["32-true"] - init, images["bf16-mixed"] - init
    assert not torch.equal(step32, step16)  # autocast was on
    cosine = torch.nn.functional.cosine_similarity(step32.flatten(), step16.flatten(), dim=0)
    assert cosine > 0.95, cosine


def test_training_inside_one_bf16_context_uses_the_updated_weights():
    """Regression: with autocast's weight-cast cache on, every forward inside one context reused the first
    bfloat16 copy of the weights, so evaluation networks trained under eval.precision=bf16-mixed never learned."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    with autocast("cpu", "bf16-mixed"):
        first = torch.nn.functional.cross_entropy(net(x), y).item()
        for _ in range(30):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        last = torch.nn.functional.cross_entropy(net(x), y).item()
    assert last < 0.6 * first, (first, last)


def test_float16_training_loops_scale_their_loss_and_learn(monkeypatch):
    """Under eval.precision=16-mixed the evaluation (and expert) loops use a dynamic loss scaler: float16
    gradients underflow without one. The toy problem learns, and the scaler saw every step."""
    from gdrdd.models import fit

    scalers = []
    real = fit.gradient_scaler
    monkeypatch.setattr(fit, "gradient_scaler", lambda device: scalers.append(real(device)) or scalers[-1])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    first = torch.nn.functional.cross_entropy(net(x), y).item()
    with autocast("cpu", "16-mixed"):
        fit.run_epochs(net, torch.optim.SGD(net.parameters(), lr=0.5), x, y, epochs=30, batch_size=64)
    assert isinstance(scalers[0], torch.amp.GradScaler) and scalers[0].get_scale() > 0
    assert torch.nn.functional.cross_entropy(net(x), y).item() < 0.6 * first
    fit.run_epochs(net, torch.optim.SGD(net.parameters(), lr=0.5), x, y, epochs=1, batch_size=64)
    assert scalers[1] is None  # float32: no scaler


def test_float16_distillation_needs_a_cuda_device(tiny, monkeypatch):
    from gdrdd.config.checks import validate
    from gdrdd.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer\.precision='16-mixed' is not valid; accepted: 32-true or "
                                          r"bf16-mixed on this machine: 16-mixed \(float16\) needs a CUDA device"):
        validate(tiny("trainer.precision=16-mixed"))
    with pytest.raises(ConfigError, match=r"trainer\.precision=16 is not valid; accepted: 32-true, bf16-mixed"):
        validate(tiny("trainer.precision=16"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    validate(tiny("trainer.precision=16-mixed", "trainer.accelerator=gpu", "eval.precision=16-mixed"))


def test_differentiated_gradients_are_scaled_under_float16_so_they_do_not_underflow():
    """A loss whose activation gradients sit below float16's smallest numbers: unscaled they vanish, through
    ``scaled_grad`` they match the float32 gradient (the scale is divided out, so float32 is untouched)."""
    from gdrdd.utils.runtime import scaled_grad

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    x, y = torch.randn(8, 16), torch.arange(8) % 4
    params = list(net.parameters())

    def loss():
        return 1e-6 * torch.nn.functional.cross_entropy(net(x), y)

    reference = torch.autograd.grad(loss(), params)
    assert all(torch.equal(a, b) for a, b in zip(scaled_grad(loss(), params), reference))  # float32: autograd.grad
    with autocast("cpu", "16-mixed"):
        plain = torch.autograd.grad(loss(), params)[0]
        scaled = scaled_grad(loss(), params, create_graph=True)[0]
    def error(grad):
        return float((grad - reference[0]).norm() / reference[0].norm())

    assert error(plain) > 0.5  # underflowed: mostly zeros
    assert error(scaled) < 0.02 and scaled.requires_grad


def test_under_a_loss_scaler_the_guard_leaves_overflowing_gradients_to_the_scaler():
    from types import SimpleNamespace

    from gdrdd.distill.module import DistillModule
    from gdrdd.errors import NonFiniteError

    matcher = SimpleNamespace(updates_per_iteration=1)
    module = DistillModule(torch.randn(4, 3, 8, 8), torch.arange(2).repeat_interleave(2), matcher, None, None,
                           lr_img=1.0)
    module.images.grad = torch.full_like(module.images, float("inf"))
    with pytest.raises(NonFiniteError):
        module._finite(torch.tensor(1.0), 0, 0)
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=torch.amp.GradScaler("cpu")))
    assert module._finite(torch.tensor(1.0), 0, 0)  # the scaler skips the step and lowers its scale
    with pytest.raises(NonFiniteError):
        module._finite(torch.tensor(float("nan")), 0, 0)  # a non-finite loss still stops the run
