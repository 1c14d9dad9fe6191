"""Entry point: ``python evaluate.py path=FILE [dataset=...] [eval.models=[...]]`` scores a saved distilled set."""

import hydra
from omegaconf import DictConfig

from gdrdd.runtime import tune_allocator

tune_allocator()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from gdrdd.cli import run_guarded
    from gdrdd.evaluate import run_evaluation

    run_guarded(run_evaluation, cfg)


if __name__ == "__main__":
    main()
