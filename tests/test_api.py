"""The Python API: gdrdd.load (pixel space or network inputs, hard or soft labels, a Dataset view) and gdrdd.export
(PNG class folders), round-tripped: the exported images score as the loaded ones do, with fixed seeds."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import gdrdd
from gdrdd.data.preprocess import Preprocess
from gdrdd.errors import ConfigError, DistilledFileError
from gdrdd.jobs import build
from gdrdd.jobs.evaluate import run as run_evaluation

EVAL = ["model.width=16", "eval.nets=1", "eval.epochs=2", "trainer.accelerator=cpu"]


def test_load_gives_pixels_or_network_inputs_with_hard_or_soft_labels(distilled_file):
    blob = torch.load(distilled_file, weights_only=True)
    pixels = gdrdd.load(distilled_file)
    assert isinstance(pixels, gdrdd.DistilledSet) and len(pixels) == 20 and not pixels.normalised
    assert pixels.dataset == "mnist_mini" and pixels.class_names == tuple(str(c) for c in range(10))
    assert pixels.mean == (0.1307,) and pixels.std == (0.3081,) and pixels.lr is None
    assert torch.allclose(pixels.images, blob["images"] * 0.3081 + 0.1307, atol=1e-6)
    assert torch.equal(pixels.labels, blob["labels"])
    inputs = gdrdd.load(distilled_file, normalised=True, soft=True)
    assert torch.equal(inputs.images, blob["images"]) and inputs.normalised
    assert inputs.labels.shape == (20, 10) and torch.equal(inputs.labels.argmax(1), blob["labels"])
    assert torch.allclose(inputs.labels.sum(1), torch.ones(20))


def test_dataset_view_feeds_a_data_loader(distilled_file):
    distilled = gdrdd.load(distilled_file)
    flipped = distilled.as_dataset(transform=lambda x: x.flip(-1))
    image, label = flipped[3]
    assert torch.equal(image, distilled.images[3].flip(-1)) and int(label) == int(distilled.labels[3])
    images, labels = next(iter(DataLoader(distilled.as_dataset(), batch_size=8, shuffle=False)))
    assert images.shape == (8, 1, 28, 28) and torch.equal(labels, distilled.labels[:8])


def test_export_writes_class_folders_that_score_as_the_loaded_set(distilled_file, tmp_path, compose):
    folder = gdrdd.export(distilled_file, tmp_path / "png")
    classes = sorted(p.name for p in folder.iterdir())
    assert classes == [str(c) for c in range(10)]
    assert all(sorted(q.name for q in (folder / c).iterdir()) == ["0000.png", "0001.png"] for c in classes)
    distilled = gdrdd.load(distilled_file)
    quantised = (distilled.images.clamp(0, 1) * 255).round() / 255
    read = torch.stack([torch.from_numpy(np.array(Image.open(folder / str(int(label)) / f"{i % 2:04d}.png")))
                        for i, label in enumerate(distilled.labels)]).float().div(255).unsqueeze(1)
    assert torch.equal(read, quantised)  # the PNGs hold exactly the 8-bit pixels

    # Re-score with fixed seeds: the PNG pixels score as the quantised loaded set does, and the loaded network
    # inputs score as evaluate.py scores the file.
    cfg = compose(*EVAL, f"path={distilled_file}", f"paths.output_dir={tmp_path / 'eval'}", config_name="evaluate")
    cfg.dataset = torch.load(distilled_file, weights_only=True)["config"]["dataset"]
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    evaluator = build.evaluator(cfg, data, spec)
    normalise = Preprocess(spec)
    from_png = evaluator.evaluate(normalise(read), distilled.labels)
    assert from_png == evaluator.evaluate(normalise(quantised), distilled.labels)
    inputs = gdrdd.load(distilled_file, normalised=True)
    assert evaluator.evaluate(inputs.images, inputs.labels)["acc"] == run_evaluation(cfg)["scored"]["distilled"]["acc"]


def test_export_never_overwrites_and_load_names_what_it_reads(distilled_file, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        gdrdd.export(distilled_file, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    torch.save((torch.zeros(10, 1, 28, 28), torch.arange(10)), tmp_path / "pair.pt")
    with pytest.raises(DistilledFileError, match="evaluate.py"):
        gdrdd.load(tmp_path / "pair.pt")


def test_zca_runs_load_back_to_pixels():
    from gdrdd.data.spec import DatasetSpec

    spec = DatasetSpec("toy", "toy", 3, 8, ("a", "b"), (0.5,) * 3, (0.25,) * 3, "flip")
    pixels = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fitted = Preprocess.fit(spec, pixels, zca=True)
    restored = Preprocess.from_state(spec, fitted.state()["zca"])
    whitened = fitted(pixels[:5])
    assert torch.allclose(restored(pixels[:5]), whitened, atol=1e-5)
    assert torch.allclose(restored.inverse(whitened), pixels[:5], atol=1e-4)


class StandInResNet(torch.nn.Module):
    """torchvision's resnet18 as far as the documented example uses it: a ``conv1`` it may replace, then a head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.fc = torch.nn.Linear(64, num_classes)
        self.first_conv1 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first_conv1 is None:
            self.first_conv1 = self.conv1.weight.detach().clone()
        return self.fc(torch.relu(self.conv1(x)).mean(dim=(2, 3)))


def test_the_documented_example_trains_a_model_on_a_distilled_set(distilled_file, monkeypatch):
    """The code block of docs/python-api.md, run as written, with a stand-in for torchvision (not a dependency)
    and one epoch instead of 300."""
    import re
    import sys
    import types
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    assert "range(300)" in code and "<run>/distilled.pt" in code
    code = code.replace("outputs/distill/runs/<run>/distilled.pt", str(distilled_file))
    code = code.replace("range(300)", "range(1)")
    models = types.SimpleNamespace(resnet18=StandInResNet)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    namespace = {}
    exec(compile(code, "docs/python-api.md", "exec"), namespace)
    model = namespace["model"]
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10  # the example fitted it to the data set
    assert not torch.equal(model.conv1.weight, model.first_conv1)  # and trained it on the distilled images
