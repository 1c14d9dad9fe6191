"""Multi-formation: IDC's decoder written out and asserted equal to ours, the mosaic initialisation, pixel storage,
the saved compact set scoring as its decoded images do, and the factor's checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from gdrdd.data.preprocess import Preprocess
from gdrdd.data.spec import DatasetSpec
from gdrdd.distill.parameterization import Parameterization, decode, decode_labels, mosaic
from gdrdd.errors import ConfigError

SPEC = DatasetSpec("toy", "toy", 3, 10, ("a", "b"), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "color_crop")


def idc_decode_zoom(img, target, factor):
    """IDC's uniform multi-formation as its code computes it: pad with 0.5 to a multiple of the factor, cut
    ceil(h / factor)-pixel tiles row by row, upsample every tile bilinearly, repeat the targets per tile."""
    h = img.shape[-1]
    remained = h % factor
    if remained > 0:
        img = F.pad(img, pad=(0, factor - remained, 0, factor - remained), value=0.5)
    s_crop = math.ceil(h / factor)
    cropped = [img[:, :, i * s_crop:(i + 1) * s_crop, j * s_crop:(j + 1) * s_crop]
               for i in range(factor) for j in range(factor)]
    resize = torch.nn.Upsample(size=(h, h), mode="bilinear")
    return resize(torch.cat(cropped)), torch.cat([target for _ in range(factor ** 2)])


@pytest.mark.parametrize("size,factor", [(8, 2), (10, 3), (28, 2), (9, 1)])
def test_decode_is_idcs_decoder(size, factor):
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(size))
    labels = torch.tensor([0, 0, 1, 1])
    want_images, want_labels = idc_decode_zoom(images, labels, factor)
    assert torch.allclose(decode(images, factor), want_images, atol=1e-6)
    assert torch.equal(decode_labels(labels, factor), want_labels)
    assert decode(images, factor).shape == (4 * factor ** 2, 3, size, size)


def test_mosaic_places_shrunken_real_images_as_idc_initialises():
    sources = torch.rand(8, 3, 10, 10, generator=torch.Generator().manual_seed(1))  # 2 stored images, factor 2
    stored = mosaic(sources, 2)
    assert stored.shape == (2, 3, 10, 10)
    assert torch.equal(stored[1, :, :5, 5:], F.interpolate(sources[1 * 2 + 1:1 * 2 + 2], size=(5, 5))[0])  # tile 1
    assert torch.equal(stored[0, :, 5:, 5:], F.interpolate(sources[3 * 2:3 * 2 + 1], size=(5, 5))[0])  # tile 3
    odd = mosaic(torch.rand(9, 1, 10, 10), 3)  # 10 = 4 + 3 + 3: the first rows and columns of tiles are larger
    assert odd.shape == (1, 1, 10, 10)
    assert torch.equal(mosaic(sources[:2], 1), sources[:2])


def test_pixel_storage_decodes_to_network_inputs_and_is_clamped():
    preprocess = Preprocess(SPEC)
    stored = torch.rand(2, 3, 3, 10, 10, generator=torch.Generator().manual_seed(2)) * 1.4 - 0.2
    pixels = Parameterization(preprocess, factor=2, pixels=True)
    inputs = Parameterization(preprocess, factor=2, pixels=False)
    decoded = pixels.decode(stored)
    assert decoded.shape == (2, 12, 3, 10, 10)
    # decoding and normalising commute (bilinear weights sum to one; the padding is the normalised grey)
    assert torch.allclose(decoded, inputs.decode(preprocess(stored.flatten(0, 1)).view_as(stored)), atol=1e-5)
    by_class = decode(preprocess(stored[1]), 2, preprocess(torch.full((1, 3, 1, 1), 0.5)).flatten())
    assert torch.allclose(decoded[1], by_class, atol=1e-5)  # class 1's images, tile-major
    flat, labels = pixels.decode_set(stored.flatten(0, 1), torch.tensor([0, 0, 0, 1, 1, 1]))
    assert torch.allclose(flat, decoded.flatten(0, 1), atol=1e-6) and labels.tolist() == [0] * 12 + [1] * 12
    pixels.project_(stored)
    assert float(stored.min()) == 0.0 and float(stored.max()) == 1.0
    with pytest.raises(ValueError, match="preprocessing"):
        Parameterization(None, factor=2)


def test_a_saved_compact_set_scores_as_its_decoded_images(tiny, tmp_path, compose):
    from gdrdd.jobs.distill import run
    from gdrdd.jobs.evaluate import run as evaluate

    run(tiny("method=dsa", "method.factor=2", "ipc=1", "iterations=1", "eval.baseline=false", "eval.coverage=false",
             out=tmp_path / "run"))
    blob = torch.load(tmp_path / "run" / "distilled.pt", weights_only=True)
    assert blob["factor"] == 2 and blob["images"].shape == (10, 1, 28, 28)  # compact: IPC 1 per class
    decoding = Parameterization(Preprocess(DatasetSpec("mnist_mini", "mnist_mini", 1, 28, tuple("0123456789"),
                                                       (0.1307,), (0.3081,), "crop")), factor=2)
    images, labels = decoding.decode_set(blob["images"], blob["labels"])
    torch.save((images, labels), tmp_path / "decoded.pt")
    fast = ["eval.nets=1", "eval.epochs=2", "model.width=16", "trainer.accelerator=cpu"]
    compact = evaluate(compose(f"path={tmp_path / 'run' / 'distilled.pt'}", f"paths.output_dir={tmp_path / 'a'}",
                               *fast, config_name="evaluate"))
    decoded = evaluate(compose(f"path={tmp_path / 'decoded.pt'}", f"paths.output_dir={tmp_path / 'b'}", *fast,
                               config_name="evaluate"))
    assert compact["decoded_images"] == decoded["images"] == 40
    assert compact["scored"] == decoded["scored"]


@pytest.mark.parametrize("override,key", [("method.factor=0", "method.factor"), ("method.factor=10", "method.factor"),
                                          ("method.factor=1.5", "method.factor")])
def test_bad_factors_are_refused_before_any_work(tiny, override, key):
    from gdrdd.config.checks import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(tiny("method=dm", override))


def test_multiformation_needs_per_channel_normalisation(tiny):
    from gdrdd.config.checks import validate

    with pytest.raises(ConfigError, match=r"dataset\.zca"):
        validate(tiny("method=dm", "method.factor=2", "dataset.zca=true"))
