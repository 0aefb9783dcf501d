"""The error every configuration rule raises, and the few checks the sections state their rules with.

Each check names the config key, its value and the rule, so a bad `--set key=value` or CONFIG entry is
reported by name.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration key is unknown or its value breaks a rule; the message names the key."""


def check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r}: {rule}")


def at_least(section: Any, keys: tuple[str, ...], low: float) -> None:
    """Every key of `keys` in `section` is >= `low`."""
    for key in keys:
        check(getattr(section, key) >= low, key, f"must be >= {low}", getattr(section, key))


def integers_at_least(section: Any, keys: tuple[str, ...], low: int) -> None:
    """Every key of `keys` in `section` is an integer >= `low`."""
    for key in keys:
        value = getattr(section, key)
        check(isinstance(value, int) and value >= low, key, f"must be an integer >= {low}", value)


def one_of(section: Any, key: str, choices: tuple[Any, ...]) -> None:
    """`section.key` is one of `choices` (the message lists them: "must be 'a', 'b' or 'c'")."""
    shown = [repr(c) for c in choices]
    rule = f"must be {', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else f"must be {shown[0]}"
    check(getattr(section, key) in choices, key, rule, getattr(section, key))


def booleans(section: Any, keys: tuple[str, ...]) -> None:
    """Every key of `keys` in `section` is true or false."""
    for key in keys:
        check(isinstance(getattr(section, key), bool), key, "must be true or false", getattr(section, key))
