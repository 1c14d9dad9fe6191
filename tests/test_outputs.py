import pytest
import torch
from PIL import Image

from gdrdd.data.spec import DatasetSpec
from gdrdd.distill.outputs import save_distilled, save_image_grid
from gdrdd.utils.files import atomic_write, write_json

SPEC = DatasetSpec("toy", "none", 3, 8, ("a", "b"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "flip")


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = write_json(tmp_path / "metrics.json", {"acc": 1.0})

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text().strip().startswith("{") and '"acc": 1.0' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_distilled_set_loads_with_weights_only(tmp_path):
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 0, 1, 1])
    path = save_distilled(tmp_path / "distilled.pt", images, labels, SPEC, {"ipc": 2, "cvar": {"alpha": 0.8}})
    blob = torch.load(path, weights_only=True)
    assert torch.equal(blob["images"], images) and torch.equal(blob["labels"], labels)
    assert blob["std"] == [0.25] * 3 and blob["class_names"] == ["a", "b"] and blob["config"]["cvar"]["alpha"] == 0.8


def test_image_grid_has_one_class_per_row(tmp_path):
    path = save_image_grid(tmp_path / "grid.png", torch.rand(6, 3, 8, 8), per_row=3, pad=2, scale=1)
    with Image.open(path) as img:
        assert img.size == (3 * 10 + 2, 2 * 10 + 2) and img.mode == "RGB"
