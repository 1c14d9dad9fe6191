"""Downloads: MD5-verified, atomic, unpacked once; a bad checksum deletes the file and says so."""

import hashlib
import io
import tarfile

import pytest

from gdrdd.data import download as dl
from gdrdd.errors import DataNotFoundError


def archive_with(tmp_path):
    payload = b"fake batch"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    path = tmp_path / "server" / "cifar-10-python.tar.gz"
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    return path, hashlib.md5(buffer.getvalue()).hexdigest()


def test_download_verifies_unpacks_and_skips_when_present(tmp_path, monkeypatch):
    archive, md5 = archive_with(tmp_path)
    monkeypatch.setitem(dl.SOURCES, "cifar10", [dl.Source(archive.as_uri(), md5, unpack=True)])
    data_dir = tmp_path / "data"
    dl.download_dataset("cifar10", data_dir)
    assert (data_dir / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"fake batch"
    assert not list(data_dir.glob(".*.part*"))
    archive.unlink()  # a second call finds the verified copy and does not download again
    dl.download_dataset("cifar10", data_dir)


def test_checksum_mismatch_deletes_the_download(tmp_path, monkeypatch):
    archive, _ = archive_with(tmp_path)
    monkeypatch.setitem(dl.SOURCES, "cifar10", [dl.Source(archive.as_uri(), "0" * 32, unpack=True)])
    with pytest.raises(DataNotFoundError, match="expected 0000"):
        dl.download_dataset("cifar10", tmp_path / "data")
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))


def test_unreachable_source_and_unknown_data_set_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(dl.SOURCES, "svhn", [dl.Source((tmp_path / "missing.mat").as_uri(), "0" * 32, "svhn")])
    with pytest.raises(DataNotFoundError, match="by hand"):
        dl.download_dataset("svhn", tmp_path / "data")
    with pytest.raises(DataNotFoundError, match="no official download source"):
        dl.download_dataset("imagefolder", tmp_path / "data")
