"""gdrdd: group distributionally robust dataset distillation on PyTorch Lightning and Hydra.

``gdrdd.load(path)`` and ``gdrdd.export(path, folder)`` use a distilled set in your own code (``gdrdd.distilled``).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``load``, ``export`` and ``DistilledSet`` on first use, so importing gdrdd stays light (no torch)."""
    if name in ("load", "export", "DistilledSet"):
        from gdrdd import distilled

        return getattr(distilled, name)
    raise AttributeError(f"module 'gdrdd' has no attribute {name!r}")
