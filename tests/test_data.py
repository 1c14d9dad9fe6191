import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from gdrdd.data import DatasetSpec, RealDataModule, load_real_data
from gdrdd.data.embedded import load_mnist_mini
from gdrdd.errors import DataNotFoundError

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
                image = Image.fromarray(np.full((32, 32, 3), 20 * c + i, dtype=np.uint8))
                image.save(tmp_path / split / name / f"{i}.png")
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
    round_trip = CIFAR.denormalise(CIFAR.normalise(torch.full((1, 3, 2, 2), 51, dtype=torch.uint8)))
    assert abs(float(round_trip.mean()) - 0.2) < 1e-6


def test_zca_is_fitted_on_train_and_applied_alike_to_test(tmp_path):
    folder = write_cifar_python(tmp_path, per_batch=60)
    with open(folder / "test_batch", "rb") as f:
        test = pickle.load(f)
    with open(folder / "data_batch_2", "rb") as f:
        train_batch = pickle.load(f)
    test["data"][0], test["labels"][0] = train_batch["data"][5], train_batch["labels"][5]  # one shared image
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(test, f)
    plain = RealDataModule(CIFAR, tmp_path, None)
    plain.setup()
    dm = RealDataModule(CIFAR, tmp_path, None, zca=True)
    dm.setup()
    assert dm.preprocess.zca is not None and plain.preprocess.zca is None
    train, labels = dm.training_set()
    assert train.shape == (300, 3, 32, 32) and labels.shape == (300,)
    # The shared image maps to the same whitened tensor in the train and the test set.
    shared = (train.flatten(1) - dm.test_images[0].flatten()).abs().amax(1)
    assert float(shared.min()) < 1e-4
    # Whitening decorrelates the training pixels; the inverse gives the pixels back.
    def mean_abs_offdiag(x):
        cov = torch.cov(x.flatten(1).T)
        return float((cov - torch.diag(cov.diag())).abs().mean())
    assert mean_abs_offdiag(train) < 0.5 * mean_abs_offdiag(torch.cat(plain.class_images))
    pixels = dm.preprocess.inverse(dm.test_images[:4])
    assert torch.allclose(pixels, plain.preprocess.inverse(plain.test_images[:4]), atol=1e-4)
    # ZCA acts on [0, 1] pixels (MTT: ToTensor, then ZCA), without the mean/std normalisation.
    raw = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    assert torch.allclose(dm.preprocess(raw), dm.preprocess.zca(raw.float() / 255), atol=1e-6)
    state = dm.preprocess.state()["zca"]
    assert state["matrix"].shape == (3072, 3072) and state["eps"] == 0.1


def cifar100_spec():
    from omegaconf import OmegaConf

    names = tuple(OmegaConf.load("conf/dataset/cifar100.yaml").class_names)
    return DatasetSpec("cifar100", "cifar100", 3, 32, names, (0.5,) * 3, (0.25,) * 3, "flip")


def test_cifar100_official_python_layout_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 7), ("test", 3)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": list(range(90, 90 + n)), "coarse_labels": [0] * n}, f)
    data = load_real_data(cifar100_spec(), tmp_path, None)
    assert data.train.images.shape == (7, 3, 32, 32) and data.train.labels.tolist() == list(range(90, 97))
    assert data.test.labels.tolist() == [90, 91, 92]
    with pytest.raises(DataNotFoundError, match="cifar-100-python.tar.gz"):
        load_real_data(cifar100_spec(), tmp_path / "nothing", None)


def write_tinyimagenet(root, wnids=("n02", "n01", "n03"), per_class=2):
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for i, wnid in enumerate(wnids):
        (base / "train" / wnid / "images").mkdir(parents=True)
        for j in range(per_class):
            Image.new("RGB", (64, 64), (10 * i, 0, j)).save(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG")
    # Validation files are named by index only; their class is in val_annotations.txt (here in reverse order).
    lines = []
    for k, wnid in enumerate(reversed(wnids)):
        Image.new("RGB", (64, 64), (200, 10 * k, 0)).save(base / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_layout_and_validation_labels_from_annotations(tmp_path):
    from gdrdd.data.readers import CLASS_NAME_READERS

    write_tinyimagenet(tmp_path)
    names = CLASS_NAME_READERS["tinyimagenet"](tmp_path, None)
    assert names == ("n01", "n02", "n03")
    spec = DatasetSpec("tinyimagenet", "tinyimagenet", 3, 64, names, (0.5,) * 3, (0.25,) * 3, "flip")
    data = load_real_data(spec, tmp_path, None)
    assert data.train.images.shape == (6, 3, 64, 64) and data.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # val_0 is annotated n03 (label 2), val_1 n01 (label 0), val_2 n02 (label 1).
    assert data.test.labels.tolist() == [2, 0, 1]
    with pytest.raises(DataNotFoundError, match="tiny-imagenet-200.zip"):
        CLASS_NAME_READERS["tinyimagenet"](tmp_path / "empty", None)


def write_idx(path, array, magic):
    import gzip

    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("reader,folder", [("mnist", "mnist"), ("fashion_mnist", "FashionMNIST/raw")])
def test_idx_readers_plain_and_gzipped(tmp_path, reader, folder):
    root = tmp_path / folder
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n, suffix in (("train", 6, ".gz"), ("t10k", 4, "")):
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, 2049)
    spec = DatasetSpec(reader, reader, 1, 28, tuple(str(i) for i in range(10)), (0.5,), (0.5,), "crop")
    data = load_real_data(spec, tmp_path, None)
    assert data.train.images.shape == (6, 1, 28, 28) and data.train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert data.test.images.shape == (4, 1, 28, 28)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(4), 2051)  # wrong magic number
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_real_data(spec, tmp_path, None)


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        savemat(tmp_path / name, {"X": x, "y": (np.arange(n) + 8).reshape(-1, 1) % 10 + 1})
    spec = DatasetSpec("svhn", "svhn", 3, 32, tuple(str(i) for i in range(10)), (0.5,) * 3, (0.5,) * 3, "crop")
    data = load_real_data(spec, tmp_path, None)
    assert data.train.images.shape == (5, 3, 32, 32) and data.train.labels.tolist() == [9, 0, 1, 2, 3]
    from scipy.io import loadmat

    x = loadmat(tmp_path / "test_32x32.mat")["X"]
    assert data.test.images[1, 2, 4, 7] == x[4, 7, 2, 1]  # (H, W, C, N) -> (N, C, H, W)


def test_class_folder_data_set_with_class_indices_like_an_imagenet_subset(tmp_path):
    from gdrdd.data.readers import CLASS_NAME_READERS

    wnids = ["n03", "n01", "n02", "n04"]
    for split in ("train", "val"):
        for i, wnid in enumerate(wnids):
            (tmp_path / split / wnid).mkdir(parents=True)
            for j in range(2 if split == "train" else 1):
                Image.new("RGB", (40, 30), (50 * i, j, 0)).save(tmp_path / split / wnid / f"{j}.JPEG")
    names = CLASS_NAME_READERS["imagefolder"](tmp_path, [3, 0])  # sorted: n01 n02 n03 n04
    assert names == ("n04", "n01")
    spec = DatasetSpec("imagefolder", "imagefolder", 3, 16, names, (0.5,) * 3, (0.5,) * 3, "crop")
    data = load_real_data(spec, tmp_path, None)
    assert data.train.images.shape == (4, 3, 16, 16) and data.train.labels.tolist() == [0, 0, 1, 1]
    assert int(data.train.images[0, 0].float().mean()) == 150  # n04 was written with red 150, resized to 16 px
    assert data.test.labels.tolist() == [0, 1]
    with pytest.raises(DataNotFoundError, match="beyond the 4 class folders"):
        CLASS_NAME_READERS["imagefolder"](tmp_path, [7])
