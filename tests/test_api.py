"""The Python API: gdrdd.load (pixel space or network inputs, hard or soft labels, a Dataset view) and gdrdd.export
(PNG class folders, a Hugging Face dataset folder), round-tripped: the exported sets score as the file does, with
fixed seeds; another tool's Hugging Face dataset and class folders are scored too."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import gdrdd
from gdrdd.data.preprocess import Preprocess
from gdrdd.errors import ConfigError, DistilledFileError
from gdrdd.evaluation.image_datasets import align_labels
from gdrdd.evaluation.saved_sets import load_distilled
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


def score(path, tmp_path, compose, name, *extra):
    cfg = compose(*EVAL, f"path={path}", f"paths.output_dir={tmp_path / name}", *extra, config_name="evaluate")
    return run_evaluation(cfg)


def test_hf_export_loads_with_datasets_and_scores_as_the_distilled_file(distilled_file, tmp_path, compose):
    datasets = pytest.importorskip("datasets")
    folder = gdrdd.export(distilled_file, tmp_path / "hf", format="hf")
    table = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))["train"]
    assert table.column_names == ["image", "label", "inputs"] and len(table) == 20
    assert table.features["label"].names == [str(c) for c in range(10)]
    inputs = gdrdd.load(distilled_file, normalised=True)
    assert table["label"] == inputs.labels.tolist()
    assert torch.equal(torch.tensor(np.array(table.with_format("numpy")["inputs"])), inputs.images)
    pixels = torch.from_numpy(np.array(table[3]["image"])).float().div(255)
    assert torch.equal(pixels, (gdrdd.load(distilled_file).images[3, 0].clamp(0, 1) * 255).round() / 255)
    card = (folder / "README.md").read_text()
    assert "configs:" in card and "- method: dm" in card and "IPC 2" in card and "CVaR alpha 0.8" in card
    assert "| test accuracy (%) |" in card  # the run's scores, from its table.md
    from_hf = score(folder, tmp_path, compose, "eval_hf")
    from_file = score(distilled_file, tmp_path, compose, "eval_pt")
    assert from_hf["format"] == "hf" and from_hf["scored"] == from_file["scored"]  # same seeds, same accuracy


def test_hf_export_keeps_soft_labels(tmp_path, distilled_file):
    pytest.importorskip("datasets")
    blob = torch.load(distilled_file, weights_only=True)
    soft = torch.softmax(torch.randn(20, 10), 1)
    torch.save({**blob, "labels": soft, "label_kind": "probabilities"}, tmp_path / "soft.pt")
    folder = gdrdd.export(tmp_path / "soft.pt", tmp_path / "hf", format="hf")
    saved = load_distilled(folder)
    assert saved.format == "hf" and torch.allclose(saved.labels, soft)
    assert saved.config["dataset"]["name"] == "mnist_mini"


def test_another_tools_hf_dataset_on_disk_is_scored_with_labels_matched_by_class_name(tmp_path, compose):
    datasets = pytest.importorskip("datasets")
    torch.manual_seed(0)
    names = [str(c) for c in reversed(range(10))]  # the tool's own class order: 9, 8, ..., 0
    images = [Image.fromarray((torch.rand(28, 28) * 255).byte().numpy()) for _ in range(20)]
    features = datasets.Features({"img": datasets.Image(), "labels": datasets.ClassLabel(names=names)})
    table = datasets.Dataset.from_dict({"img": images, "labels": [i % 10 for i in range(20)]}, features=features)
    table.save_to_disk(str(tmp_path / "other"))
    saved = load_distilled(tmp_path / "other")
    assert saved.format == "hf" and saved.pixels and saved.images.shape == (20, 1, 28, 28)
    assert torch.equal(saved.images[0, 0], torch.from_numpy(np.array(images[0])).float().div(255))
    aligned = align_labels(saved.labels, saved.class_names, tuple(str(c) for c in range(10)), "x")
    assert aligned[:3].tolist() == [9, 8, 7]
    result = score(tmp_path / "other", tmp_path, compose, "eval_other")
    assert result["format"] == "hf" and 0 <= result["scored"]["distilled"]["acc"] <= 100


def test_imagefolder_export_is_read_back_by_evaluate(distilled_file, tmp_path, compose):
    folder = gdrdd.export(distilled_file, tmp_path / "tree", format="imagefolder")
    saved = load_distilled(folder)
    distilled = gdrdd.load(distilled_file)
    assert saved.format == "imagefolder" and saved.pixels and saved.class_names == [str(c) for c in range(10)]
    assert torch.equal(saved.labels, distilled.labels)  # class-major files in class-major folders
    assert torch.equal(saved.images, (distilled.images.clamp(0, 1) * 255).round() / 255)
    assert score(folder, tmp_path, compose, "eval_tree")["format"] == "imagefolder"
    with pytest.raises(ConfigError, match=r"format='zip' is not valid; accepted: imagefolder, hf"):
        gdrdd.export(distilled_file, tmp_path / "zip", format="zip")
    (tmp_path / "elsewhere" / "cat").mkdir(parents=True)
    Image.new("L", (28, 28)).save(tmp_path / "elsewhere" / "cat" / "0.png")
    with pytest.raises(DistilledFileError, match=r"names classes \['cat'\]"):
        score(tmp_path / "elsewhere", tmp_path, compose, "eval_cat")
