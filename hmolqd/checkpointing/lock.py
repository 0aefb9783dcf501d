"""One training per checkpoint directory: the directory is checked up front and locked for the whole run.

`check_checkpoint_dir(folder)` runs before any training: the folder must be a directory (or creatable),
writable (a probe file is written, fsynced and removed), and no checkpoint name in it may be a directory.
Each failure is a CheckpointError naming the directory and the cause; free-space figures appear only when
space is the cause.

`DirLock(folder)` is held by the main rank from start-up to exit. The lock file `hmolqd.lock` records
the holder (pid, host, start time) and is `flock`ed, so the kernel releases it when the holder dies, even
by SIGKILL; a clean exit (return, exception, SIGTERM / SIGINT handled by the trainer) removes it.
  - held by a live process: a second training refuses to start, naming the holder;
  - left by a dead process on this host: taken over, with a message naming its pid and host;
  - written on another host (a shared file system): reported, never taken over, since this host cannot
    tell whether that process still runs; the message says which file to delete once it does not.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hmolqd.atomic import process_alive
from hmolqd.checkpointing.fileformat import CheckpointError, mib, not_regular_entries

try:
    import fcntl
except ImportError:  # Windows: the recorded pid and host are all there is
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "hmolqd.lock"
RUN_INFO_NAME = "run.json"  # hmolqd.checkpointing.identity; checked here so a directory of that name fails early
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def check_checkpoint_dir(folder: str | Path, key: str = "checkpoint_dir") -> Path:
    """Create `folder` if needed and prove it is a writable directory whose checkpoint names are free.

    `key` is the config key the folder comes from (checkpoint_dir, output_dir), named in every error."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{key} {folder} is a file, not a directory: set {key} to a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"{key} {folder} cannot be created: {_cause(err, folder)}") from err
    try:
        fd, probe = tempfile.mkstemp(prefix=f".hmolqd-probe.{os.getpid()}-", suffix=".tmp", dir=folder)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
    except OSError as err:
        raise CheckpointError(f"{key} {folder} is not writable: {_cause(err, folder)}") from err
    for entry in not_regular_entries(folder, (LOCK_NAME, RUN_INFO_NAME)):
        kind = "a directory" if entry.is_dir() else "not a regular file"
        raise CheckpointError(
            f"{entry} is {kind}, not a checkpoint file: every save under that name would fail; move or delete it"
        )
    return folder


def _cause(err: OSError, folder: Path) -> str:
    cause = err.strerror or str(err)
    if err.filename and Path(err.filename) != folder:
        cause += f" ({err.filename})"
    if err.errno in _SPACE_ERRNOS:
        try:
            cause += f"; {mib(shutil.disk_usage(folder if folder.exists() else folder.parent).free)} free"
        except OSError:
            pass
    return cause


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc), to tell a reused pid from the holder."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _holder_alive(info: dict[str, Any]) -> bool:
    pid = info.get("pid")
    if not isinstance(pid, int) or not process_alive(pid):
        return False
    recorded, now = info.get("proc_start"), _proc_start(pid)
    return recorded is None or now is None or recorded == now


def _describe(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid')} on host {info.get('host')!r}, started {info.get('started', '?')}"


class DirLock:
    """Exclusive lock on a checkpoint directory (see the module docstring). Use as a context manager."""

    def __init__(self, folder: str | Path, key: str = "checkpoint_dir", what: str = "training") -> None:
        self.folder = Path(folder)
        self.key = key  # the config key the folder comes from, named in every message
        self.what = what  # what holds such a lock ("training", "illumination"), named in the messages
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.took_over: str | None = None  # the message about a stale lock taken over, if any

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirLock:
        for _ in range(5):  # retried only when the file was replaced between open and flock
            try:
                # O_NOFOLLOW: a lock file that is a symlink would make us write the lock JSON into its target.
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as err:
                if self.path.is_symlink():
                    raise CheckpointError(
                        f"cannot lock {self.key} {self.folder}: {self.path} is a symbolic link "
                        f"(to {os.readlink(self.path)}); a lock file must be a plain file, "
                        "so nothing was written through it: delete the link and start again"
                    ) from err
                raise CheckpointError(f"cannot lock {self.key} {self.folder}: {_cause(err, self.folder)}") from err
            try:
                if self._try_lock(fd):
                    return self
            except BaseException:
                os.close(fd)
                raise
        raise CheckpointError(
            f"cannot lock {self.key} {self.folder}: {self.path} keeps being replaced by another process"
        )

    def _try_lock(self, fd: int) -> bool:
        flocked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except BlockingIOError:
                raise CheckpointError(self._busy(_read_info(fd))) from None
            except OSError as err:  # a file system without flock: the recorded pid decides alone
                log.info("no flock on %s (%s): relying on the recorded pid", self.path, err.strerror or err)
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file while we opened it: start again on the new one
            os.close(fd)
            return False
        previous = _read_info(fd)
        host = socket.gethostname()
        if previous:
            if previous.get("host") != host:
                raise CheckpointError(
                    f"{self.key} {self.folder} is locked by {_describe(previous)}, another machine: this host cannot "
                    f"tell whether that {self.what} still runs. "
                    f"If no {self.what} on {previous.get('host')!r} uses this directory any more, "
                    f"delete {self.path} and start again; otherwise give this {self.what} another {self.key}"
                )
            if previous.get("pid") != os.getpid() and (not flocked or fcntl is None) and _holder_alive(previous):
                raise CheckpointError(self._busy(previous))
            # Here the flock was free (or there is none and the pid test says gone): the holder no longer holds it.
            why = (
                "that process still runs but no longer holds the lock (the pid was reused, or it let the lock go "
                "without removing the file)"
                if _holder_alive(previous)
                else "that process is gone (it ended without releasing the lock, e.g. killed)"
            )
            self.took_over = f"took over the lock {self.path} of {_describe(previous)}: {why}"
            log.info(self.took_over)  # the trainer prints it (training.session); a warning here printed it twice
        info = {
            "pid": os.getpid(),
            "host": host,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "proc_start": _proc_start(os.getpid()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return True

    def _busy(self, holder: dict[str, Any]) -> str:
        who = _describe(holder) if holder else "another process (its details are not written yet)"
        return (
            f"{self.key} {self.folder} is in use by another {self.what}: {who} holds {self.path}. "
            f"Two {self.what}s on one directory would replace each other's files: wait for it to finish (or stop "
            f"it), or give this {self.what} another {self.key}"
        )

    def release(self) -> None:
        """Remove the lock file and unlock; safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
        except OSError as err:
            log.warning("could not remove the lock file %s: %s", self.path, err)
        finally:
            os.close(fd)  # closing releases the flock

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_info(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
