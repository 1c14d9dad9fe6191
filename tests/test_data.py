import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from gdrdd.data import DataNotFoundError, DatasetSpec, RealDataModule, load_real_data
from gdrdd.data.embedded import load_mnist_mini

CIFAR = DatasetSpec("cifar10", "cifar10", 3, 32, ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck"),
                    (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "color_crop_cutout_flip_scale_rotate")


def write_cifar_python(root, per_batch=4):
    """Tiny copy of the official python layout: 5 training batches and a test batch, str keys."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        labels[:2] = [name.endswith("1") * 3, 9]
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * per_batch}, f)
    return folder


def test_cifar10_official_python_layout(tmp_path):
    folder = write_cifar_python(tmp_path)
    data = load_real_data(CIFAR, tmp_path, cache_dir=None)
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="latin1")
    assert torch.equal(data.train.images[0], torch.from_numpy(first["data"][0].reshape(3, 32, 32)))
    assert data.train.labels[:2].tolist() == [3, 9]


def test_cifar10_class_folder_layout_and_cache(tmp_path):
    for split, n in (("train", 2), ("test", 1)):
        for c, name in enumerate(CIFAR.class_names):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((32, 32, 3), 20 * c + i, dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    cache = tmp_path / "cache"
    data = load_real_data(CIFAR, tmp_path, cache)
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.labels.tolist() == list(range(10))
    assert int(data.train.images[data.train.labels == 4][1, 0, 0, 0]) == 81
    assert len(list(cache.glob("cifar10-*.pt"))) == 1
    cached = load_real_data(CIFAR, tmp_path, cache)  # second read comes from the tensor file
    assert torch.equal(cached.train.images, data.train.images)


def test_missing_cifar10_names_the_expected_files(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_real_data(CIFAR, tmp_path / "nowhere", cache_dir=None)
    message = str(err.value)
    assert "data_batch_1" in message and "test_batch" in message and "cifar-10-python.tar.gz" in message
    assert "train/<class>" in message


def test_truncated_cifar_batch_names_the_file(tmp_path):
    folder = write_cifar_python(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_real_data(CIFAR, tmp_path, cache_dir=None)


def test_embedded_mnist_split():
    data = load_mnist_mini()
    assert data.train.images.shape == (4000, 1, 28, 28) and data.test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.train.labels).tolist() == [400] * 10
    assert torch.bincount(data.test.labels).tolist() == [100] * 10
    assert data.train.images.dtype == torch.uint8 and int(data.train.images.max()) == 255


def test_datamodule_samples_class_balanced_batches(tmp_path):
    write_cifar_python(tmp_path, per_batch=40)
    dm = RealDataModule(CIFAR, tmp_path, None, iterations=3)
    dm.setup()
    smallest = min(len(x) for x in dm.class_images)
    real = dm.sample_real(1000)
    assert real.shape == (10, smallest, 3, 32, 32)
    for c in range(10):  # every sampled image comes from its own class
        pool = dm.class_images[c].flatten(1)
        assert all((pool == img.flatten()).all(1).any() for img in real[c])
    images, labels = dm.random_subset(1)
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == list(range(10))
    assert list(dm.train_dataloader()) == [0, 1, 2]
    assert abs(float(CIFAR.denormalise(CIFAR.normalise(torch.full((1, 3, 2, 2), 51, dtype=torch.uint8))).mean()) - 0.2) < 1e-6
