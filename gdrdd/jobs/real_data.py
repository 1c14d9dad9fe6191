"""What the jobs that train networks on the real data set outside a Lightning Trainer share (``task=experts``,
``task=teacher``): their start, and the test accuracy of what they trained."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gdrdd.config.checks import validate
from gdrdd.data.datamodule import RealDataModule
from gdrdd.data.spec import DatasetSpec
from gdrdd.jobs import build
from gdrdd.models.fit import predict
from gdrdd.utils.files import write_text
from gdrdd.utils.runtime import make_deterministic


def test_accuracy(net, data: RealDataModule) -> float:
    """Test accuracy (%) of ``net`` (put in eval mode) on the real test set."""
    preds, _ = predict(net.eval(), data.test_images, data.test_labels)
    return float((preds == data.test_labels).float().mean() * 100)


def start(cfg: DictConfig) -> tuple[Path, DatasetSpec, RealDataModule]:
    """Check ``cfg``, apply ``trainer.deterministic``, fetch the data if asked, write the run folder's
    ``config.yaml``, and return the folder, the data set's facts and its data, read and on the job's device."""
    validate(cfg)
    make_deterministic(cfg.trainer.get("deterministic"))
    build.fetch_data(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    spec = build.dataset_spec(cfg)
    data = build.datamodule(cfg, spec)
    data.setup()
    data.to(build.device(cfg))
    return out, spec, data
