"""Entry point: ``python train.py [hydra overrides]``, e.g. ``python train.py method=dm cvar.alpha=0.9 ipc=1``."""

import sys

import hydra
from omegaconf import DictConfig

from gdrdd.runtime import tune_allocator

tune_allocator()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from gdrdd.data.errors import DataNotFoundError
    from gdrdd.errors import ConfigError
    from gdrdd.train import run

    try:
        run(cfg)
    except (ConfigError, DataNotFoundError) as err:
        print(f"gdrdd: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
