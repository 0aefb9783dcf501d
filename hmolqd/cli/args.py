"""Checks of command-line values for `hmolqd.cli.commands`: each failure is one ConfigError line naming the flag,
the value and the rule, raised before any model is loaded or any work is done.

Also the argument parser itself: argparse's own errors (an unknown flag, `--seed 1e20` for an integer)
are printed as one `error:` line, not a usage block, with exit status 2 like every other bad argument.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hmolqd.config import SEED_LIMIT, ConfigError
from hmolqd.dungeon.workers import usable_cores as cores  # noqa: F401 (the commands' check.cores)

MAX_SAMPLE_ROOMS = 100_000  # `sample -n` limit: the rooms are generated in batches and drawn in pages
# `evaluate --samples` limit: its metrics hold all rooms at once (the diversity's one-hot counts are 1.4 KB a room
# as int64, about 0.3 GB at this limit; the room tensors themselves are 176 bytes a room).
MAX_EVAL_SAMPLES = 20_000
MAX_NCOLS = 64  # rooms per row of a sample page (a wider row is a picture nobody can read)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: python -m hmolqd sample: argument --seed: invalid int value: '1e20'`."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def checked(flag: str, value: str | None, parse: Callable[[str], Any]) -> Any:
    """`parse(value)` (None stays None); a ValueError becomes a ConfigError naming the flag and its value."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as err:
        raise ConfigError(f"{flag} {value!r}: {err}") from err


def at_least(flag: str, value: int | None, low: int, what: str) -> None:
    if value is not None and value < low:
        raise ConfigError(f"{flag} {value}: must be >= {low} ({what})")


def at_most(flag: str, value: int | None, high: int, what: str) -> None:
    if value is not None and value > high:
        raise ConfigError(f"{flag} {value}: must be <= {high} ({what})")


def number(flag: str, value: float | None, low: float, what: str, *, above: bool = False) -> None:
    """A finite float >= `low` (> `low` with `above`); None (the default) passes."""
    if value is None:
        return
    rule = f"> {low:g}" if above else f">= {low:g}"
    if not math.isfinite(value) or value < low or (above and value == low):
        raise ConfigError(f"{flag} {value}: must be a finite number {rule} ({what})")


def seed(flag: str, value: int) -> None:
    if not 0 <= value < SEED_LIMIT:
        raise ConfigError(
            f"{flag} {value}: must be an integer in 0 .. {SEED_LIMIT - 1} (seed of torch, numpy and random)"
        )


def _parent_writable(flag: str, path: Path) -> None:
    """The nearest existing folder above `path` must be a writable folder (missing folders are created)."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {parent} is not writable")


def file_target(flag: str, path: Path | None, suffix: str) -> None:
    """An output file named by the user: ends in `suffix`, is not a folder, and its folder can be written."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path}: the file name must end in {suffix} (a {suffix[1:].upper()} file is written)")
    _parent_writable(flag, path)


def folder_target(flag: str, path: Path | None) -> None:
    """An output folder named by the user: not an existing file, and creatable/writable."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file; give a folder (created if missing)")
    _parent_writable(flag, path / "x")


def base_url(flag: str, url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not ((parts.scheme in ("http", "https") and parts.netloc) or (parts.scheme == "file" and parts.path)):
        raise ConfigError(
            f"{flag} {url!r}: must be an http:// or https:// URL (or file:///folder) of the repository root"
        )


# A Dask scheduler address: scheme://host[:port] (the schemes distributed speaks), or 'local'.
_DASK_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[A-Za-z0-9_.\-\[\]:]+$")


def dask_address(flag: str, address: str | None) -> None:
    if address is not None and address != "local" and not _DASK_ADDRESS.match(address):
        raise ConfigError(
            f"{flag} {address!r}: give 'local' (a cluster on this machine) or a scheduler address such as "
            "tcp://host:8786"
        )


def model_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: no such file (expected model_final.pt from training)")
