"""The checkpoint files a resume may choose from, ranked, and the newest of them that loads.

`read_heads` reads each file's dict cheaply (memory-mapped, tensor bytes not read) and sorts the files into
rankable heads, files that are not valid checkpoints (with the reason) and files of a newer format; `pick`
then verifies them newest first (`order`: stage, global_step, latest before step/epoch before best, mtime)
and returns the first that loads completely. Which heads are offered (this run's, another run's, an input's)
is `hmolqd.checkpointing.resume`'s choice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmolqd.checkpointing.fileformat import FORMAT_VERSION, LATEST, read_head, try_load_checkpoint
from hmolqd.config import stage_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    """What ranking needs, read without loading tensor bytes."""

    key: tuple[int, int]  # (stage index, global_step)
    tie: int
    mtime: int
    path: Path
    run_id: str | None
    model: Mapping[str, Any] | None  # the config's model section: the architecture


def read_heads(paths: Sequence[Path]) -> tuple[list[Head], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(rankable files, files that are not valid checkpoints with the reason, files of a newer format)."""
    heads, skipped, newer = [], [], []
    for path in paths:
        head, reason = read_head(path)
        if head is None:
            skipped.append((path, reason))
            log.warning("skipping checkpoint %s: %s", path, reason)
        elif type(head.get("format_version")) is int and head["format_version"] > FORMAT_VERSION:
            newer.append((path, f"format_version {head['format_version']} > {FORMAT_VERSION}"))
        elif head.get("stage") not in stage_names() or not isinstance(head.get("global_step"), int):
            skipped.append((path, "not an hmolqd checkpoint (no valid 'stage' / 'global_step')"))
        else:
            run_id = head.get("run_id") if isinstance(head.get("run_id"), str) else None
            config = head.get("config")
            model = (
                config.get("model")
                if isinstance(config, Mapping) and isinstance(config.get("model"), Mapping)
                else None
            )
            key = (stage_names().index(head["stage"]), head["global_step"])
            heads.append(Head(key, _tie_break(path), _mtime_ns(path), path, run_id, model))
    return heads, skipped, newer


def order(h: Head) -> tuple:
    """The rank of a head: the newest file sorts last."""
    return h.key, h.tie, h.mtime, str(h.path)


def pick(heads: Sequence[Head], map_location: Any) -> tuple[Path | None, dict | None, list[tuple[Path, str]]]:
    """(path, verified contents) of the newest head that loads, or (None, None); plus the heads that failed and why."""
    skipped: list[tuple[Path, str]] = []
    for head in sorted(heads, key=order, reverse=True):
        ckpt, reason = try_load_checkpoint(head.path, map_location)
        if ckpt is not None:
            return head.path, ckpt, skipped
        skipped.append((head.path, str(reason)))
        log.warning("skipping checkpoint %s: %s", head.path, reason)
    return None, None, skipped


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _tie_break(path: Path) -> int:
    """Equal (stage, step): latest first, then step/epoch files, then best."""
    return 2 if path.name == LATEST else 0 if path.name.endswith("best.pt") else 1
