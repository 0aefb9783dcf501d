"""Atomic, durable file writes: temp file in the same folder, flush + fsync, os.replace, fsync the folder.

A reader (or a re-run after a kill) sees either the old file or the new one, never a half-written one.
Temp files are named ".<name>.<pid>-<random>.tmp" after the writing process, so a cleanup can tell a
temp file whose writer is gone (`stale_temp_files`) from one that a live process is still writing.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"  # temp files are ".<name>.<pid>-<random>.tmp" beside their target
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+" + re.escape(TEMP_SUFFIX) + "$")
_IN_FLIGHT: set[str] = set()  # temp files this process is writing now (any thread)
_IN_FLIGHT_LOCK = threading.Lock()
# The umask can only be read by setting it: done once, at import, before any thread writes files.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# chmod failures that mean "this file system has no Unix modes" (FAT, exFAT, some network and FUSE mounts).
_NO_CHMOD_ERRNOS = {errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _set_mode(fd: int) -> None:
    """mkstemp makes 0600 files; outputs get the usual permissions where the file system has modes at all."""
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    except OSError as err:
        if err.errno not in _NO_CHMOD_ERRNOS:
            raise
        # The file keeps the mode the file system gives every file: nothing to set, the write goes on.


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temp file beside `path`, then atomically move it into place.

    On any failure the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as err:  # name the file the caller asked for, not the temp file beside it
        raise OSError(err.errno, err.strerror, str(path)) from err
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(tmp)
    try:
        _set_mode(fd)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as err:  # e.g. `path` is a folder: the error names it, not the temp file
            raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(tmp)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def temp_writer_pid(name: str) -> int | None:
    """The pid in a temp file name written by `atomic_write`, or None for another name (or an older format)."""
    m = _TEMP_NAME.match(name)
    return int(m["pid"]) if m else None


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, i.e. exited but not yet reaped, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stale_temp_files(folder: Path, pattern: str = f".*{TEMP_SUFFIX}") -> list[Path]:
    """Temp files in `folder` whose writer is gone: a dead pid, this process but not being written, or an
    older name without a pid. A temp file of another live process is never listed."""
    with _IN_FLIGHT_LOCK:
        in_flight = set(_IN_FLIGHT)
    stale = []
    for path in sorted(Path(folder).glob(pattern)):
        pid = temp_writer_pid(path.name)
        if (
            pid is None
            or (pid == os.getpid() and str(path) not in in_flight)
            or (pid != os.getpid() and not process_alive(pid))
        ):
            stale.append(path)
    return stale
