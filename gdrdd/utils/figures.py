"""Matplotlib figures written to PNG files: a headless pyplot, and an atomic save that closes the figure."""

from __future__ import annotations

from pathlib import Path

from gdrdd.utils.files import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: plotting is optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (a reader never sees half a file) and close it."""
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    pyplot().close(fig)
    return out
