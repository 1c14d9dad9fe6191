"""IDC: its step written out as the original code is and asserted equal to gdrdd's, the reductions (cvar=none,
robust network training at alpha 0), CutMix, the augmentation stack, and runs through Hydra."""

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gdrdd.augment.stacked import StackedAugment
from gdrdd.data import DatasetSpec, RealDataModule
from gdrdd.data.preprocess import Preprocess
from gdrdd.distill.module import DistillModule, iteration_seed
from gdrdd.distill.parameterization import Parameterization, mosaic
from gdrdd.errors import ConfigError
from gdrdd.jobs.build import initial_images
from gdrdd.matchers.idc import IDCMatcher
from gdrdd.models import ConvNet
from gdrdd.models.fit import CutMix
from gdrdd.robust import ByClass, CVaR, NearestSynthetic, SumOverGroups
from gdrdd.robust.network import GroupRobustLoss

C, IPC, SIZE, FACTOR = 3, 1, 16, 2
SPEC = DatasetSpec("toy", "none", 3, SIZE, ("a", "b", "c"), (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), "color_crop_cutout")


def tiny_net():
    return ConvNet(3, C, SIZE, width=8, depth=2)


def toy_datamodule(iterations):
    dm = RealDataModule(SPEC, "unused", None, iterations=iterations)
    g = torch.Generator().manual_seed(0)
    dm.preprocess = Preprocess(SPEC)
    dm.class_images = [dm.preprocess(torch.rand(20, 3, SIZE, SIZE, generator=g) * 0.5 + 0.2 * c) for c in range(C)]
    dm.test_images, dm.test_labels = torch.randn(6, 3, SIZE, SIZE, generator=g), torch.arange(C).repeat(2)
    return dm


def idc_decode(pixels, factor):
    """IDC's decoder for sizes the factor divides: tiles row by row, each upsampled bilinearly."""
    s = pixels.shape[-1] // factor
    tiles = [pixels[:, :, i * s:(i + 1) * s, j * s:(j + 1) * s] for i in range(factor) for j in range(factor)]
    return torch.nn.Upsample(size=pixels.shape[-2:], mode="bilinear")(torch.cat(tiles))


def reference_idc(pixels, dm, augment, net_augment, iterations, inner, seed, lr_img=0.05, n_data=24, batch=8):
    """Plain IDC as its condense.py computes it: pixels clamped each outer iteration, a fresh network; per inner
    step, per class: a real batch of the class, the decoded synthetic images, one shared augmentation of both
    (after normalising), the squared distance of the conv-weight gradients, one SGD step of all the pixels; then
    the network trained on n_data random real images with per-sample augmentation."""
    data = pixels.detach().clone().requires_grad_(True)
    optim_img = torch.optim.SGD([data], lr=lr_img, momentum=0.5)
    real_all, real_labels = dm.training_set()
    mean, std = torch.tensor(SPEC.mean).view(1, -1, 1, 1), torch.tensor(SPEC.std).view(1, -1, 1, 1)
    for it in range(iterations):
        torch.manual_seed(iteration_seed(seed, it))
        model = tiny_net().train()
        optim_net = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        data.data = torch.clamp(data.data, min=0.0, max=1.0)
        for ot in range(inner):
            for c in range(C):
                img = dm.sample_real(8, classes=[c])[0]
                img_syn = (idc_decode(data[c * IPC:(c + 1) * IPC], FACTOR) - mean) / std
                img, img_syn = augment.siamese(img, img_syn)
                lab = torch.full((len(img),), c)
                g_real = torch.autograd.grad(F.cross_entropy(model(img), lab), list(model.parameters()))
                g_syn = torch.autograd.grad(F.cross_entropy(model(img_syn), torch.full((len(img_syn),), c)),
                                            list(model.parameters()), create_graph=True)
                loss = sum(((gr.detach() - gs) ** 2).sum() for gr, gs in zip(g_real, g_syn) if gr.dim() not in (1, 2))
                optim_img.zero_grad()
                loss.backward()
                optim_img.step()
            if ot == inner - 1:
                break  # the network is discarded after the iteration's last step
            order = torch.randperm(len(real_all))[:math.ceil(n_data / batch) * batch]
            for idx in order.split(batch):
                with torch.no_grad():
                    x = net_augment(real_all[idx])
                optim_net.zero_grad()
                F.cross_entropy(model(x), real_labels[idx]).backward()
                optim_net.step()
    return data.detach()


def idc_module(dm, pixels, grouping, risk, inner=2, robust=None):
    augment, net_augment = StackedAugment("color_crop_cutout"), StackedAugment("color_crop")
    matcher = IDCMatcher(tiny_net, C, dm, augment, net_augment, metric="mse", inner_loop=inner,
                         n_data=24, batch_net=8, cutmix=0.0, robust_network=robust)
    module = DistillModule(pixels, torch.arange(C).repeat_interleave(IPC), matcher, grouping, risk, lr_img=0.05,
                           batch_real=8, seed=3, parameterization=Parameterization(dm.preprocess, FACTOR, pixels=True))
    return module, augment, net_augment


def fit(module, dm):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return module.images.detach()


def test_cvar_none_equals_plain_idc_step_for_step():
    dm = toy_datamodule(iterations=2)
    pixels = torch.rand(C * IPC, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.1
    module, augment, net_augment = idc_module(dm, pixels, ByClass(), SumOverGroups())
    expected = reference_idc(pixels, dm, augment, net_augment, iterations=2, inner=2, seed=3)
    got = fit(module, dm)
    assert module.matcher.updates_per_iteration == 2 * C
    assert not torch.allclose(got, pixels.clamp(0, 1), atol=1e-4)
    assert torch.allclose(got, expected, atol=1e-5)


def test_robust_network_training_at_alpha_zero_is_the_mean_loss():
    torch.manual_seed(0)
    net = tiny_net()
    synthetic = torch.randn(C, 4, 3, SIZE, SIZE)
    images, labels = torch.randn(12, 3, SIZE, SIZE), torch.arange(C).repeat(4)
    cutmix = CutMix(1.0, generator=torch.Generator().manual_seed(5))
    robust = GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.0), per_sample=cutmix.per_sample)
    mean = CutMix(1.0, generator=torch.Generator().manual_seed(5))(net, images, labels)
    assert torch.allclose(robust(net, images, labels), mean, atol=1e-6)
    same_draws = CutMix(1.0, generator=torch.Generator().manual_seed(5))
    tail = GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.9), per_sample=same_draws.per_sample)
    assert float(tail(net, images, labels)) > float(mean)  # the worst groups weigh more


def test_algorithm_1_changes_only_the_network_training():
    dm = toy_datamodule(iterations=1)
    pixels = torch.rand(C * IPC, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    plain, _, _ = idc_module(dm, pixels, ByClass(), SumOverGroups(), inner=3)
    robust_loss = lambda synthetic, per_sample: GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.0),  # noqa: E731
                                                                per_sample=per_sample)
    at_zero, _, _ = idc_module(dm, pixels, ByClass(), SumOverGroups(), inner=3, robust=robust_loss)
    assert torch.allclose(fit(plain, dm), fit(at_zero, dm), atol=1e-5)  # alpha 0, mass weights: the mean
    robust_tail = lambda synthetic, per_sample: GroupRobustLoss(synthetic, NearestSynthetic(), CVaR(0.9),  # noqa: E731
                                                                per_sample=per_sample)
    tail, _, _ = idc_module(dm, pixels, ByClass(), SumOverGroups(), inner=3, robust=robust_tail)
    assert not torch.allclose(fit(plain, dm), fit(tail, dm), atol=1e-5)


def test_cutmix_pastes_a_box_and_mixes_the_losses_by_its_area():
    torch.manual_seed(0)
    net = tiny_net()
    images, labels = torch.randn(6, 3, SIZE, SIZE), torch.arange(C).repeat(2)
    assert torch.allclose(CutMix(0.0)(net, images, labels), F.cross_entropy(net(images), labels))
    seen = {}

    def recording(x):
        seen["x"] = x.clone()
        return net(x)

    losses = CutMix(1.0, generator=torch.Generator().manual_seed(3)).per_sample(recording, images, labels)
    mixed = seen["x"]
    box = (mixed != images).any(1).any(0)  # (H, W): where some image took another's pixels
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[r0:r1, c0:c1] = False
    kept = 1 - (r1 - r0) * (c1 - c0) / SIZE ** 2
    logits = net(mixed)
    for i in range(6):
        assert torch.equal(mixed[i][:, outside], images[i][:, outside])  # outside the box: the image itself
        sources = [j for j in range(6) if torch.equal(mixed[i, :, r0:r1, c0:c1], images[j, :, r0:r1, c0:c1])]
        assert sources  # inside: the box of one image of the batch
        expected = kept * F.cross_entropy(logits[i:i + 1], labels[i:i + 1]) + (1 - kept) * F.cross_entropy(
            logits[i:i + 1], labels[sources[0]:sources[0] + 1])
        assert torch.allclose(losses[i], expected, atol=1e-6)


def test_stacked_augmentation_applies_color_and_cutout_every_call():
    augment = StackedAugment("color_crop_cutout")
    assert augment.first == ["color"] and augment.chosen == ["crop"] and augment.last == ["cutout"]
    params = augment.sample(1, SIZE)
    assert [p.family for p in params] == ["color", "crop", "cutout"]
    a, b = torch.rand(4, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE)
    torch.manual_seed(1)
    a1, b1 = augment.siamese(a, b)
    zeroed = (a1 == 0).all(1)  # the one cutout square, shared by both batches
    assert torch.equal(zeroed[0], zeroed[3]) and torch.equal(zeroed[0], (b1 == 0).all(1)[0]) and zeroed[0].any()


def test_idc_runs_through_hydra_plain_and_as_algorithm_1(tiny, tmp_path):
    from gdrdd.jobs.distill import run

    fast = ["ipc=1", "iterations=1", "method.inner_loop=2", "method.n_data=32", "eval.baseline=false",
            "eval.coverage=false"]
    plain = run(tiny(*fast, "cvar=none", method="idc", out=tmp_path / "plain"))
    robust = run(tiny(*fast, "cvar.target=network", method="idc", out=tmp_path / "network"))
    assert plain["method"] == "idc" and robust["cvar"]["target"] == "network"
    blob = torch.load(tmp_path / "network" / "distilled.pt", weights_only=True)
    assert blob["factor"] == 2 and blob["images"].shape == (10, 1, 28, 28)
    a = torch.load(tmp_path / "plain" / "distilled.pt", weights_only=True)["images"]
    assert not torch.equal(a, blob["images"])


@pytest.mark.parametrize("override,key", [("+method.outer_loop=5", "method.outer_loop"),
                                          ("method.metric=ours", "method.metric"),
                                          ("method.strategy=color_blur", "method.strategy"),
                                          ("model=convnet_bn", "model.norm"), ("method.cutmix=2", "method.cutmix")])
def test_idc_options_are_checked_before_any_work(tiny, override, key):
    from gdrdd.config.checks import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(tiny(override, method="idc"))


def test_idc_presets_compose_and_validate(compose):
    from gdrdd.config.checks import validate

    for dataset, lr, metric in (("cifar10", 5e-3, "mse"), ("svhn", 5e-3, "mse"), ("mnist", 1e-4, "l1"),
                                ("fashion_mnist", 1e-4 * (28 / 32) ** 2, "l1"), ("cifar100", 5e-3, "mse")):
        for ipc in (1, 10, 50):
            cfg = compose(f"experiment=idc_{dataset}_ipc{ipc}", "paths.output_dir=unused")
            validate(cfg)
            assert cfg.method.name == "idc" and cfg.method.factor == 2 and cfg.iterations == 2000
            assert cfg.method.lr_img == pytest.approx(lr * ipc / 10) and cfg.method.metric == metric
            assert cfg.eval.epochs == 1000 and cfg.eval.batch_size == 64 and cfg.eval.augment == "idc"


def test_an_idc_data_file_is_decoded_and_its_image_count_checked(tmp_path, compose):
    from gdrdd.jobs.evaluate import run as evaluate

    g = torch.Generator().manual_seed(0)
    torch.save([torch.rand(10, 1, 28, 28, generator=g), torch.arange(10)], tmp_path / "data.pt")
    fast = ["eval.nets=1", "eval.epochs=1", "model.width=8", "trainer.accelerator=cpu", "format=idc", "factor=2"]
    result = evaluate(compose(f"path={tmp_path / 'data.pt'}", f"paths.output_dir={tmp_path / 'out'}", *fast,
                              config_name="evaluate"))
    assert result["format"] == "idc" and result["factor"] == 2 and result["decoded_images"] == 40
    torch.save([torch.rand(11, 1, 28, 28, generator=g), torch.arange(11) % 10], tmp_path / "odd.pt")
    with pytest.raises(ConfigError, match="same number of images"):
        evaluate(compose(f"path={tmp_path / 'odd.pt'}", f"paths.output_dir={tmp_path / 'out2'}", *fast,
                         config_name="evaluate"))
    with pytest.raises(ConfigError, match="factor"):
        evaluate(compose(f"path={tmp_path / 'data.pt'}", f"paths.output_dir={tmp_path / 'out3'}",
                         *fast[:-1], "factor=0", config_name="evaluate"))
    assert np.isfinite(result["scored"]["distilled"]["acc"])


def test_training_images_gather_the_class_major_training_set_without_concatenating():
    dm = toy_datamodule(iterations=1)
    images, labels = dm.training_set()
    idx = torch.tensor([0, 59, 21, 40, 19, 20])
    got_images, got_labels = dm.training_images(idx)
    assert dm.training_size == 60 and torch.equal(got_images, images[idx]) and torch.equal(got_labels, labels[idx])


@pytest.mark.parametrize("init", ["first", "real"])
def test_the_initial_mosaics_are_made_of_the_first_or_of_random_real_images_of_each_class(init):
    dm = toy_datamodule(iterations=1)
    cfg = OmegaConf.create({"ipc": 2, "method": {"init": init}})
    torch.manual_seed(0)
    got = initial_images(cfg, dm, SPEC, Parameterization(dm.preprocess, FACTOR))
    first = torch.cat([mosaic(x[:2 * FACTOR ** 2], FACTOR) for x in dm.class_images])
    assert got.shape == (C * 2, 3, SIZE, SIZE)
    assert torch.equal(got, first) == (init == "first")
