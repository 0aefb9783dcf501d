"""What a valid checkpoint file is, and loading one with the reason it is refused.

A file holds one plain dict (tensors, dicts, lists, str, int, float, bool, None: `torch.load(weights_only=True)`
reads it, nothing is unpickled as a class) with `format`, `format_version`, the required keys of its format and
`integrity` = {"sha256": `state_digest` of every other key, value and tensor byte}. Loading recomputes the digest,
so a truncated or bit-flipped file is reported with the reason instead of resuming from damaged weights; a file
that torch refuses is reported without torch's advice to turn the protection off.
`hmolqd.checkpointing.fileformat` (names, writing) re-exports every public name here.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "hmolqd-checkpoint"
INFERENCE_FORMAT = "hmolqd-inference"
ARCHIVE_FORMAT = "hmolqd-archive"  # hmolqd.illuminate.checkpoint: a MAP-Elites archive's state as one uint8 tensor
FORMAT_VERSION = 1
REQUIRED_STATE_KEYS = ("stage", "epoch", "global_step", "models", "config")
_REQUIRED = {
    CHECKPOINT_FORMAT: ("format", "format_version", *REQUIRED_STATE_KEYS, "integrity"),
    INFERENCE_FORMAT: ("format", "format_version", "models", "config", "integrity"),
    ARCHIVE_FORMAT: ("format", "format_version", "archive", "integrity"),
}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or used; the message names the file and the reason."""


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
            "dict, list, tuple, str, int, float, bool and None "
            "(convert numpy scalars with float(), versions with str())"
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
        return (
            f"refused by torch.load(weights_only=True): it holds a pickled reference to the global {m[1]}, "
            "which is not plain data (nothing in the file was run)"
        )
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
        return (
            f"not an hmolqd checkpoint: format is {obj.get('format', '<absent>')!r}, "
            f"expected {' or '.join(map(repr, formats))}"
        )
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
        return (
            f"checksum mismatch (stored sha256 {str(stored)[:12]}..., contents hash to {actual[:12]}...): "
            "the file is corrupt"
        )
    return None
