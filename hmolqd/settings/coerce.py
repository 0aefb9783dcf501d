"""Values of flat config keys checked (and, for strings from the CLI's `--set key=value`, parsed) against the
annotated type of the field that declares them: `coerce`, used by `hmolqd.config.Config.from_flat`."""

from __future__ import annotations

import os
import typing
from typing import Any

from hmolqd.settings.rules import check

_TRUTHS = ("true", "false", "1", "0", "yes", "no")  # the strings a boolean key accepts


def _parsed(value: Any, kind: type) -> Any:
    """`kind(value)` for a string that parses as one (a CLI value), else `value` as it was (checked after)."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return value
    return value


def _parsed_bool(value: Any) -> Any:
    """True / False for the strings of `_TRUTHS`, else `value` as it was."""
    if isinstance(value, str) and value.lower() in _TRUTHS:
        return value.lower() in ("true", "1", "yes")
    return value


def coerce(cls: type, key: str, value: Any) -> Any:
    """Check (and, for strings from the CLI, parse) a value against the field's annotated type."""
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        check(optional, key, f"may not be None (expected {getattr(hint, '__name__', hint)})", value)
        return None
    base = next((a for a in args if a is not type(None)), hint) if args and optional else hint
    origin = typing.get_origin(base)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        check(
            isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
            key,
            "must be a list of strings",
            value,
        )
        return tuple(value)
    if set(args) == {bool, str}:  # `use_amp`: true / false, or a dtype name (the dataclass checks which)
        return _parsed_bool(value)
    if base is bool:
        value = _parsed_bool(value)
        check(isinstance(value, bool), key, "must be true or false", value)
        return value
    if base is int:
        value = _parsed(value, int)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        check(isinstance(value, int) and not isinstance(value, bool), key, "must be an integer", value)
        return value
    if base is float:
        value = _parsed(value, float)
        check(isinstance(value, (int, float)) and not isinstance(value, bool), key, "must be a number", value)
        return float(value)
    if base is str:
        check(isinstance(value, (str, os.PathLike)), key, "must be a string", value)
        return os.fspath(value)
    raise AssertionError(f"unsupported config field type {hint} for {key}")
