"""Value checks that stop a run before any work with one ``ConfigError`` paragraph: the key, the bad value and
what is accepted. Used by the config checks and by the method schemas' ``__post_init__``."""

from __future__ import annotations

from collections.abc import Iterable

from gdrdd.errors import ConfigError


def require(ok: bool, key: str, value: object, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid; accepted: {accepted}.")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(key: str, value: object, minimum: int = 1) -> None:
    """An integer >= ``minimum``."""
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, key, value,
            f"an integer >= {minimum}")


def positive(key: str, value: object) -> None:
    """A number > 0."""
    require(is_number(value) and value > 0, key, value, "a number > 0")


def level(key: str, value: object, meaning: str = "") -> None:
    """A CVaR level in [0, 1)."""
    require(is_number(value) and 0 <= value < 1, key, value, "a number in [0, 1)" + meaning)


def one_of(key: str, value: object, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    require(value in choices, key, value, ", ".join(choices))
