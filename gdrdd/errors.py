class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the bad value and what is accepted."""
