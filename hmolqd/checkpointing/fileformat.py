"""One checkpoint file: its names, its payload (`finalize`) and writing it atomically, once, plus hard links.

`finalize` adds `format`, `format_version`, `timestamp`, `torch_version` and `integrity` = {"sha256": digest of
every other key, value and tensor byte} to a state. The bytes are serialized once in memory (so their size is
known before touching the disk) and written once with `hmolqd.atomic.atomic_write`; `write_linked` gives the
other names of the same save (latest / epoch_N / best) as hard links to that file, each moved into place with
`os.replace` (a new directory entry, never a write into an existing inode), and falls back to one copy per
name, logged once, where the file system has no hard links.
What a valid file is and loading one with the reason it is refused live in `hmolqd.checkpointing.verify`;
its names are re-exported here, so `fileformat` stays the one import for a checkpoint file.
See `hmolqd.checkpointing.manager` for the file names and the manager that uses this.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import torch

from hmolqd.atomic import TEMP_SUFFIX, atomic_write, fsync_dir
from hmolqd.checkpointing.verify import (
    ARCHIVE_FORMAT,
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    INFERENCE_FORMAT,
    REQUIRED_STATE_KEYS,
    CheckpointError,
    load_checkpoint,
    load_error_reason,
    read_head,
    state_digest,
    try_load_checkpoint,
)
from hmolqd.config import Stage, stage_names, stages

__all__ = [  # the names re-exported from `verify` are part of this module's interface
    "ARCHIVE_FORMAT",
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "INFERENCE_FORMAT",
    "LATEST",
    "REQUIRED_STATE_KEYS",
    "TEMP_GLOB",
    "CheckpointError",
    "CheckpointFile",
    "checkpoint_name",
    "finalize",
    "is_checkpoint_name",
    "list_checkpoint_files",
    "load_checkpoint",
    "load_error_reason",
    "mib",
    "not_regular_entries",
    "read_head",
    "serialize",
    "state_digest",
    "try_load_checkpoint",
    "write_atomic",
    "write_atomic_from",
    "write_linked",
]

log = logging.getLogger(__name__)

LATEST = "checkpoint_latest.pt"
TEMP_GLOB = ".checkpoint_*.tmp"  # hmolqd.atomic.atomic_write's temp files for our names
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# os.link failures that mean "this file system (or this many links) cannot": copy instead.
_NO_LINK_ERRNOS = {
    errno.EPERM,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
    errno.EOPNOTSUPP,
    getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
}
_copy_fallback_logged: set[str] = set()  # folders where "no hard links" was already logged


# ---------------------------------------------------------------- names


@functools.lru_cache(maxsize=4)
def _name_pattern(table: tuple[Stage, ...]) -> re.Pattern[str]:
    """Our file names for the stages of `table` (hmolqd.config.STAGE_TABLE): each stage's files carry its prefix."""
    prefixes = "|".join(re.escape(s.file_prefix) for s in table if s.file_prefix)
    return re.compile(rf"^checkpoint_(?P<prefix>{prefixes})?(?:(?P<kind>epoch|step)_(?P<n>\d+)|(?P<best>best))\.pt$")


def checkpoint_name(stage: str, kind: str, n: int | None = None) -> str:
    """File name for `kind` in "epoch", "step", "best", "latest" (see the module docstring)."""
    prefix = {s.name: s.file_prefix for s in stages()}.get(stage)
    if prefix is None:
        raise CheckpointError(f"unknown stage {stage!r}; stages are {stage_names()}")
    if kind == "latest":
        return LATEST
    if kind == "best":
        return f"checkpoint_{prefix}best.pt"
    if kind not in ("epoch", "step") or n is None or n < 0:
        raise CheckpointError(f"checkpoint kind {kind!r} with number {n!r}: expected 'epoch' or 'step' with n >= 0")
    return f"checkpoint_{prefix}{kind}_{n}.pt"


@dataclass(frozen=True)
class CheckpointFile:
    path: Path
    kind: str  # "latest", "best", "epoch" or "step"
    stage: str | None  # None for latest (any stage)
    n: int | None  # epoch or global step number


def is_checkpoint_name(name: str) -> bool:
    return name == LATEST or _name_pattern(stages()).match(name) is not None


def not_regular_entries(folder: str | Path, extra_names: Sequence[str] = ()) -> list[Path]:
    """Entries of `folder` named like a checkpoint (or one of `extra_names`) that are not regular files,
    e.g. a directory called checkpoint_latest.pt: saving under that name would fail."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [
        p
        for p in sorted(folder.iterdir())
        if (is_checkpoint_name(p.name) or p.name in extra_names) and p.exists() and not p.is_file()
    ]


def list_checkpoint_files(folder: str | Path) -> list[CheckpointFile]:
    """Every file in `folder` named like one of ours (nothing is opened)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out, pattern, stage_of = [], _name_pattern(stages()), {s.file_prefix: s.name for s in stages()}
    for path in sorted(folder.iterdir()):
        if path.name == LATEST:
            out.append(CheckpointFile(path, "latest", None, None))
        elif (m := pattern.match(path.name)) and path.is_file():
            stage = stage_of[m["prefix"] or ""]
            out.append(
                CheckpointFile(path, "best", stage, None)
                if m["best"]
                else CheckpointFile(path, m["kind"], stage, int(m["n"]))
            )
    return out


# ---------------------------------------------------------------- writing


def _write_payload(f: BinaryIO, data: memoryview) -> None:
    """The one place bytes reach a checkpoint temp file (tests replace it to simulate a full disk)."""
    f.write(data)


def serialize(payload: Mapping[str, Any]) -> memoryview:
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    return buf.getbuffer()


def write_atomic(path: Path, data: memoryview) -> None:
    """Write `data` to `path` atomically; a failure leaves `path` as it was and raises CheckpointError
    saying how much space the file needs and how much is free."""
    _atomic(path, len(data), lambda f: _write_payload(f, data))


def write_atomic_from(path: Path, source: Path) -> None:
    """Copy the file `source` to `path` atomically (same guarantees as `write_atomic`)."""

    def copy(f: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f, length=2**22)

    _atomic(path, Path(source).stat().st_size, copy)


def write_linked(folder: Path, names: Sequence[str], data: memoryview) -> int:
    """Write `data` once as `folder/names[0]` and give it the other `names` as hard links; returns the bytes
    written (len(data), or a multiple where links fail and copies are written instead).

    Each name is moved into place with `os.replace` of a fresh link (or copy), so a name that shared an inode
    with an older save (epoch_N with the previous latest) keeps its contents. Raises CheckpointError.
    """
    first = folder / names[0]
    write_atomic(first, data)
    written = len(data)
    for name in names[1:]:
        if not _link_into_place(first, folder / name):
            write_atomic(folder / name, data)
            written += len(data)
    fsync_dir(folder)
    return written


def _link_into_place(source: Path, target: Path) -> bool:
    """Atomically make `target` another name of `source`'s file; False where this file system has no links."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-link{TEMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError as err:
        if err.errno not in _NO_LINK_ERRNOS:
            raise CheckpointError(
                f"saving {target} (a hard link to {source.name}) failed: {err.strerror or err}; "
                "earlier checkpoints are untouched"
            ) from err
        if str(target.parent) not in _copy_fallback_logged:
            _copy_fallback_logged.add(str(target.parent))
            log.info(
                "no hard links in %s (%s): each checkpoint name of a save is written as its own copy",
                target.parent,
                err.strerror or err,
            )
        return False
    try:
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"saving {target} failed: {err.strerror or err}; earlier checkpoints are untouched"
        ) from err
    return True


def _atomic(path: Path, size: int, write: Callable[[BinaryIO], None]) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    free = _free_bytes(folder)
    if free is not None and free < size:
        raise CheckpointError(f"not saving {path}: {_space(size, free, folder)}; earlier checkpoints are untouched")
    try:
        atomic_write(path, write)
    except OSError as err:
        # Free-space figures only where space is the cause; otherwise the cause alone (read-only, permissions).
        cause = (
            f" (disk full): {err.strerror or err}; {_space(size, _free_bytes(folder), folder)}"
            if err.errno in _SPACE_ERRNOS
            else f": {err.strerror or err} ({folder})"
        )
        raise CheckpointError(
            f"saving {path} failed{cause}; earlier checkpoints are untouched and the temp file was removed"
        ) from err


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _space(needed: int, free: int | None, folder: Path) -> str:
    have = "unknown" if free is None else f"{mib(free)} ({free} bytes)"
    return f"the checkpoint needs {mib(needed)} ({needed} bytes) and {have} is free on {folder}"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def finalize(state: Mapping[str, Any], fmt: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """`state` plus format, version, timestamp, torch version and the integrity digest."""
    payload = {
        **state,
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),  # TorchVersion is a str subclass: not plain data
    }
    payload.pop("integrity", None)
    payload["integrity"] = {"sha256": state_digest(payload)}
    return payload
