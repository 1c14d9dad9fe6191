"""Entry point: ``python evaluate.py path=FILE [dataset=...] [eval.models=[...]]`` scores a saved distilled set."""

import hydra
from omegaconf import DictConfig

from gdrdd.utils.runtime import tune_allocator

tune_allocator()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from gdrdd.cli import evaluate, run_guarded

    run_guarded(evaluate, cfg)


if __name__ == "__main__":
    main()
