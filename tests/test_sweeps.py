from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]


def test_alpha_seed_sweep_composes_into_a_multirun():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{ROOT / 'sweeps'}]", "+sweep=alpha_seed"],
                      return_hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params == {"cvar.alpha": "0,0.5,0.8,0.9", "seed": "0,1,2"}
    assert cfg.hydra.sweep.dir.startswith("outputs/distill/multiruns/")
