"""Every error gdrdd raises on purpose. Each message is one paragraph that names the bad value (or missing
file) and what would be accepted. The command-line guard (``gdrdd.cli``) turns the first three into exit
status 2 before any long work, and ``NonFiniteError`` into exit status 3."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the bad value and what is accepted."""


class ExpertsNotFoundError(ConfigError):
    """No expert trajectories for the run's settings; the message gives the command that creates them."""


class DistilledFileError(ConfigError):
    """A file given to ``evaluate.py`` is not a distilled set in a known format; the message says which
    formats are read."""


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing or incomplete; the message says what to put where."""


class NonFiniteError(RuntimeError):
    """A NaN or Inf in the distillation loss or its gradient; the message names the iteration."""
