"""Entry point: ``python train.py [hydra overrides]``, e.g. ``python train.py method=dm cvar.alpha=0.9 ipc=1``."""

import hydra
from omegaconf import DictConfig

from gdrdd.utils.runtime import tune_allocator

tune_allocator()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from gdrdd.cli import run_guarded, train

    run_guarded(train, cfg)


if __name__ == "__main__":
    main()
