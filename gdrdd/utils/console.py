"""What a run prints on the terminal: each message once, no third-party tips or internal deprecation warnings.

- Lightning gives its ``lightning`` logger a console handler of its own (and its subpackages' loggers one when
  they are imported before logging is configured) and also passes every record on to the root logger, where
  Hydra's job logging prints it again and writes it to the run's log file. ``quiet`` removes Lightning's own
  handlers, so each message reaches the terminal once (through Hydra's console handler, formatted by
  ``ConsoleFormatter``) and stays in the log file.
- Hydra's console handler leaves out Lightning's advertising tips and the lines that name Lightning's own
  machinery rather than the run (``Trainer.fit`` stopped after one "epoch", TPU/HPU availability); the log file
  keeps them.
- Deprecation warnings raised inside Lightning's own code are ignored; warnings about the user's settings stay.
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# Console lines of Lightning that say nothing about the run (the log file keeps them).
NOISE = ("💡 Tip:", "`Trainer.fit` stopped", "TPU available", "HPU available", "LOCAL_RANK:")


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO and below; ``warning: message`` (``error: ...``) above."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {message}"


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and record.getMessage().startswith(NOISE))


def quiet() -> None:
    """Apply the rules of the module docstring to this process (idempotent)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if not any(isinstance(f, DropNoise) for f in handler.filters):
                handler.addFilter(DropNoise())
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning(\.|$)")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
