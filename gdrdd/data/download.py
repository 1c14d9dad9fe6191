"""Downloads of the data sets that have an official source, verified by MD5 before use.

``dataset.download=true`` fetches what is missing into ``paths.data_dir`` before reading: each file goes to a
temporary name, is checked against its published MD5, and only then renamed (archives are then unpacked in
place). A checksum mismatch deletes the download and stops the run with the expected and actual sums. Without
network access, put the files there by hand; the readers' errors say which files and where.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gdrdd.errors import DataNotFoundError


@dataclass(frozen=True)
class Source:
    url: str
    md5: str
    subdir: str = ""      # where the file goes under data_dir
    unpack: bool = False  # extract the archive into its folder after verification


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SOURCES: dict[str, list[Source]] = {
    "mnist": [Source(MNIST_URL + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "mnist"),
              Source(MNIST_URL + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "mnist"),
              Source(MNIST_URL + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "mnist"),
              Source(MNIST_URL + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "mnist")],
    "fashion_mnist": [
        Source(FASHION_URL + "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "fashion_mnist"),
        Source(FASHION_URL + "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", "fashion_mnist"),
        Source(FASHION_URL + "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", "fashion_mnist"),
        Source(FASHION_URL + "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", "fashion_mnist")],
    "svhn": [Source(SVHN_URL + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", "svhn"),
             Source(SVHN_URL + "test_32x32.mat", "eb5a983be6a315427106f1b0a3ca8bc7", "svhn")],
    "cifar10": [Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                       unpack=True)],
    "cifar100": [Source("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                        unpack=True)],
    "tinyimagenet": [Source("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
                            unpack=True)],
}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: Source, data_dir: Path) -> Path:
    """Download ``source`` into ``data_dir`` (skipped when a verified copy is there) and unpack it if asked."""
    folder = data_dir / source.subdir
    target = folder / source.url.rsplit("/", 1)[-1]
    done_marker = target.with_name(f".{target.name}.unpacked")
    if source.unpack and done_marker.is_file():
        return target  # verified and unpacked before (the archive itself may have been deleted since)
    if not source.unpack and target.is_file() and md5sum(target) == source.md5:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and md5sum(target) == source.md5):
        tmp = target.with_name(f".{target.name}.part{os.getpid()}")
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise DataNotFoundError(f"could not download {source.url} ({err}); without network access, put "
                                    f"{target.name} in {folder} by hand") from err
        actual = md5sum(tmp)
        if actual != source.md5:
            tmp.unlink()
            raise DataNotFoundError(f"the download of {source.url} has MD5 {actual}, expected {source.md5}; "
                                    f"it was deleted. Try again, or put a verified copy in {folder}")
        os.replace(tmp, target)
    if source.unpack:
        _unpack(target, folder)
        done_marker.write_text(source.md5 + "\n")
    return target


def download_dataset(reader: str, data_dir: str | Path) -> None:
    """Fetch every file of ``reader``'s data set that is not yet verified in ``data_dir``."""
    if reader not in SOURCES:
        raise DataNotFoundError(f"dataset.download=true, but {reader!r} has no official download source; put its "
                                f"files under paths.data_dir by hand (data sets with one: {', '.join(SOURCES)})")
    for source in SOURCES[reader]:
        fetch(source, Path(data_dir).expanduser())


def _unpack(archive: Path, folder: Path) -> None:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(folder)
        return
    with tarfile.open(archive) as t:
        t.extractall(folder, filter="data")
