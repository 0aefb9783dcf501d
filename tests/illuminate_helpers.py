"""Helpers shared by the illuminate tests (not a test module)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from hmolqd.checkpointing.fileformat import ARCHIVE_FORMAT, finalize, serialize, write_atomic


def write_raw_archive(path: Path, inner: Any) -> Path:
    """An `archive.pt` with a valid checksum around any object: what a file that loads but holds the wrong thing
    (or a hostile pickle inside) looks like once it got past the digest."""
    buf = io.BytesIO()
    torch.save(inner, buf)
    blob = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    write_atomic(Path(path), serialize(finalize({"archive": blob}, ARCHIVE_FORMAT)))
    return Path(path)
