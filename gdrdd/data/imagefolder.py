"""Any class-folder tree as a data set (``dataset=imagefolder`` and the ImageNet-subset presets).

Layout under ``data_dir``: ``train/<class>/<images>`` and ``val/<class>/<images>`` (or ``test/``). Classes:
``class_names`` from the config, or every folder of ``train/`` in sorted order, optionally narrowed to
``class_indices`` (positions in that sorted list: for an ImageNet-1k train folder these are the standard
ImageNet class indices, 0 = n01440764). Images are resized to the configured resolution.
"""

from __future__ import annotations

from pathlib import Path

from gdrdd.data.image_files import read_image_folder
from gdrdd.data.spec import DatasetSpec, RealData
from gdrdd.errors import DataNotFoundError

TEST_SPLITS = ("val", "test")


def _missing(data_dir: Path, what: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"No class-folder data set under {data_dir}: {what}. Expected {data_dir}/train/<class>/<images> and "
        f"{data_dir}/val/<class>/<images> (or test/); for an ImageNet subset, download ImageNet-1k "
        f"(https://image-net.org/) and arrange train/ and val/ by wnid folder. "
        f"Point paths.data_dir at the folder that holds them.")


def folder_class_names(data_dir: Path, class_indices: list[int] | None = None) -> tuple[str, ...]:
    """Sorted class folders of ``data_dir/train``, narrowed to ``class_indices`` if given."""
    data_dir = Path(data_dir).expanduser()
    train = data_dir / "train"
    if not train.is_dir():
        raise _missing(data_dir, "there is no train/ folder")
    names = sorted(p.name for p in train.iterdir() if p.is_dir())
    if class_indices is None:
        return tuple(names)
    bad = [i for i in class_indices if not 0 <= i < len(names)]
    if bad:
        raise _missing(data_dir, f"class indices {bad} are beyond the {len(names)} class folders of train/")
    return tuple(names[i] for i in class_indices)


def load_folder_dataset(data_dir: Path, spec: DatasetSpec) -> RealData:
    test = next((data_dir / s for s in TEST_SPLITS if (data_dir / s).is_dir()), None)
    if not (data_dir / "train").is_dir() or test is None:
        raise _missing(data_dir, "train/ and val/ (or test/) are both needed")
    try:
        return RealData(*(read_image_folder(split, spec.class_names, spec.resolution, spec.channels)
                          for split in (data_dir / "train", test)))
    except FileNotFoundError as err:
        raise _missing(data_dir, str(err)) from err
