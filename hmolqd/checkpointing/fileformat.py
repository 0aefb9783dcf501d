"""One checkpoint file: names, format, integrity digest, weights-only loading, atomic writing.

A file holds one plain dict (tensors, dicts, lists, str, int, float, bool, None: `torch.load(weights_only=True)`
reads it, nothing is unpickled as a class). `finalize` adds `format`, `format_version`, `timestamp`,
`torch_version` and `integrity` = {"sha256": digest of every other key, value and tensor byte}; loading
recomputes the digest, so a truncated or bit-flipped file is reported with the reason instead of resuming
from damaged weights. The bytes are serialized once in memory (so their size is known before touching the
disk) and written once with `hmolqd.atomic.atomic_write`; `write_linked` gives the other names of the same
save (latest / epoch_N / best) as hard links to that file, each moved into place with `os.replace` (a new
directory entry, never a write into an existing inode), and falls back to one copy per name, logged once,
where the file system has no hard links.
See `hmolqd.checkpointing.manager` for the file names and the manager that uses this.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import torch

from hmolqd.atomic import TEMP_SUFFIX, atomic_write, fsync_dir
from hmolqd.config import Stage, stage_names, stages

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "hmolqd-checkpoint"
INFERENCE_FORMAT = "hmolqd-inference"
FORMAT_VERSION = 1
LATEST = "checkpoint_latest.pt"
REQUIRED_STATE_KEYS = ("stage", "epoch", "global_step", "models", "config")
_REQUIRED = {
    CHECKPOINT_FORMAT: ("format", "format_version", *REQUIRED_STATE_KEYS, "integrity"),
    INFERENCE_FORMAT: ("format", "format_version", "models", "config", "integrity"),
}
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


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or used; the message names the file and the reason."""


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


# ---------------------------------------------------------------- integrity


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 over every key, plain value and tensor (dtype, shape, bytes) of `state`, except `integrity`.

    Raises CheckpointError naming the key path of a value that is not plain data (a weights-only load
    would refuse it), e.g. a numpy scalar in the history.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "integrity"}, "state")
    return h.hexdigest()


def _feed(h: Any, obj: Any, where: str) -> None:
    # Exact types, not isinstance: a subclass (numpy.float64, torch's TorchVersion str) pickles as its class,
    # which a weights-only load refuses; better to fail here, at save time, naming the key.
    kind = type(obj)
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            raise CheckpointError(f"{where}: {t.layout} tensors are not supported in checkpoints")
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # raw bytes, any dtype (bf16 included)
    elif obj is None:
        h.update(b"N;")
    elif kind is bool:
        h.update(b"B1;" if obj else b"B0;")
    elif kind is int:
        h.update(f"I{obj};".encode())
    elif kind is float:
        h.update(f"F{obj.hex()};".encode())
    elif kind in (str, bytes):
        raw = obj.encode("utf-8", "surrogatepass") if kind is str else obj
        h.update(f"{'S' if kind is str else 'Y'}{len(raw)}:".encode())
        h.update(raw)
    elif kind in (dict, OrderedDict):
        h.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key, where)
            _feed(h, obj[key], f"{where}[{key!r}]")
    elif kind in (list, tuple, torch.Size):
        h.update(f"L{len(obj)}:".encode())
        for i, item in enumerate(obj):
            _feed(h, item, f"{where}[{i}]")
    elif kind in (torch.dtype, torch.device):
        h.update(f"O{obj};".encode())
    else:
        raise CheckpointError(
            f"{where}: {kind.__module__}.{kind.__qualname__} is not plain data; a checkpoint may hold only tensors, "
            "dict, list, tuple, str, int, float, bool and None (convert numpy scalars with float(), versions with str())"
        )


# ---------------------------------------------------------------- reading


def try_load_checkpoint(
    path: str | Path, map_location: Any = "cpu", formats: Sequence[str] = (CHECKPOINT_FORMAT,)
) -> tuple[dict | None, str | None]:
    """(checkpoint, None) for a valid file, (None, reason) otherwise. Only `torch.load(weights_only=True)`."""
    path = Path(path)
    if path.is_dir():
        return None, "is a directory, not a checkpoint file"
    if not path.is_file():
        return None, "no such file" if not path.exists() else "not a regular file"
    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any failure to parse an untrusted file makes it invalid; the reason is reported
        return None, _truncated(path) or load_error_reason(err)
    reason = _invalid_reason(obj, formats)
    return (None, reason) if reason else (obj, None)


def read_head(path: str | Path) -> tuple[dict | None, str]:
    """The file's dict read cheaply (memory-mapped: tensor bytes are not read nor verified), or the reason it cannot
    be read. For ranking and ownership only: resume from a file only after `try_load_checkpoint` verified it."""
    try:
        head = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an untrusted file: the full load below gives the precise reason (mmap's own is vaguer)
        head, reason = try_load_checkpoint(path)
        if head is None:
            return None, str(reason)
    if not isinstance(head, dict):
        return None, f"not an hmolqd checkpoint: holds a {type(head).__name__}, expected a dict"
    return head, ""


def load_checkpoint(path: str | Path, map_location: Any = "cpu", formats: Sequence[str] = (CHECKPOINT_FORMAT,)) -> dict:
    """Load and verify one checkpoint; raises CheckpointError('<path>: <reason>')."""
    obj, reason = try_load_checkpoint(path, map_location, formats)
    if obj is None:
        raise CheckpointError(f"{path}: {reason}")
    return obj


def _truncated(path: Path) -> str | None:
    """A torch file is a zip whose last 22 bytes are its end-of-central-directory record (no comment)."""
    with open(path, "rb") as f:
        start = f.read(4)
        f.seek(max(0, path.stat().st_size - 22))
        end = f.read(4)
    if start == b"PK\x03\x04" and end != b"PK\x05\x06":
        return f"truncated: the torch zip file stops at {path.stat().st_size} bytes without its closing directory"
    return None


_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")
# Sentences of torch's message that advise turning the protection off (or allow-listing): never repeated.
_UNSAFE_ADVICE = (
    "weights_only` set to `False`",
    "weights_only=False",
    "safe_globals",
    "trusted source",
    "trust the source",
    "two options",
    "Check the documentation",
    "file an issue",
    "Weights only load failed",
    "Alternatively",
)


def load_error_reason(err: Exception) -> str:
    """A one-line reason for a failed `torch.load(weights_only=True)`, without torch's boilerplate.

    A pickle that references a global (a class or function such as `posix.system`) names it; torch's advice
    to re-run with `weights_only=False` (which would run that code) is never repeated.
    """
    text = str(err)
    if m := _GLOBAL.search(text):
        return f"refused by torch.load(weights_only=True): it holds a pickled reference to the global {m[1]}, which is not plain data (nothing in the file was run)"
    parts = re.split(r"(?<=[.:])\s+|\n+", text.split("WeightsUnpickler error:", 1)[-1])
    detail = " ".join(p.strip() for p in parts if p.strip() and not any(a in p for a in _UNSAFE_ADVICE))
    detail = re.sub(r"\x1b\[[0-9;]*m", "", detail).strip()
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        return f"unreadable, truncated or not a torch file (weights-only unpickler: {detail or type(err).__name__})"
    return (
        f"unreadable, truncated or not a torch file ({type(err).__name__}: {detail.splitlines()[0] if detail else ''})"
    )


def _invalid_reason(obj: Any, formats: Sequence[str]) -> str | None:
    if not isinstance(obj, dict):
        return f"not an hmolqd checkpoint: holds a {type(obj).__name__}, expected a dict"
    if obj.get("format") not in formats:
        return f"not an hmolqd checkpoint: format is {obj.get('format', '<absent>')!r}, expected {' or '.join(map(repr, formats))}"
    missing = [k for k in _REQUIRED[obj["format"]] if k not in obj]
    if missing:
        return f"missing required keys {missing}"
    if type(obj["format_version"]) is not int:
        return f"format_version {obj['format_version']!r} is not an integer"
    if obj["format_version"] > FORMAT_VERSION:
        return (
            f"format_version {obj['format_version']} is newer than this hmolqd reads ({FORMAT_VERSION}); upgrade hmolqd"
        )
    stored = obj["integrity"].get("sha256") if isinstance(obj["integrity"], dict) else None
    try:
        actual = state_digest(obj)
    except CheckpointError as err:
        return str(err)
    if stored != actual:
        return f"checksum mismatch (stored sha256 {str(stored)[:12]}..., contents hash to {actual[:12]}...): the file is corrupt"
    return None


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
