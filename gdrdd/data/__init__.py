from gdrdd.data.datamodule import RealDataModule
from gdrdd.data.readers import READERS, load_real_data
from gdrdd.data.spec import DatasetSpec, ImageSet, RealData

__all__ = ["RealDataModule", "READERS", "load_real_data", "DatasetSpec", "ImageSet", "RealData"]
