"""Which checkpoint files a run keeps: rotation and the disk budget (`CheckpointManager` runs both after each save).

Rotation keeps the newest `keep_last_n` epoch files and, separately, step files of each stage; the disk budget
then deletes the oldest epoch/step files until the folder fits `disk_budget_gb`. Neither ever deletes latest or
best, nor a file of another run (or of none: hmolqd 0.1.0) that lies in the folder: a file's run id is read from
its head (tensors not loaded), once per file version. Deleting a name that shares its file with latest or best
(a hard link) removes only that name, and frees nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hmolqd.atomic import TEMP_SUFFIX
from hmolqd.checkpointing.fileformat import CheckpointFile, list_checkpoint_files, read_head
from hmolqd.checkpointing.lock import LOCK_NAME

log = logging.getLogger(__name__)

_UNREADABLE = "<unreadable>"  # the owner of a file whose head cannot be read: never this run


class Retention:
    """Deletes the run `run_id`'s old epoch and step files in `folder` (`rotate`, `enforce_disk_budget`)."""

    def __init__(self, folder: Path, run_id: str | None, *, keep_last_n: int, disk_budget_gb: float) -> None:
        self.folder = folder
        self.run_id = run_id
        self.keep_last_n = keep_last_n
        self.disk_budget_gb = disk_budget_gb  # 0 = off
        self._owners: dict[tuple[int, int, int], str | None] = {}  # (dev, inode, mtime) -> run id

    def rotate(self) -> list[Path]:
        """Keep the newest `keep_last_n` epoch files and step files of each stage; never latest or best, and never
        a file of another run (or of none: hmolqd 0.1.0) that lies in the folder: only this run's files rotate.

        Deleting a name that shares its file with latest or best (a hard link) removes only that name."""
        groups: dict[tuple[str | None, str], list[CheckpointFile]] = {}
        for f in list_checkpoint_files(self.folder):
            if f.kind in ("epoch", "step") and self._owns(f.path):
                groups.setdefault((f.stage, f.kind), []).append(f)
        removed = []
        for files in groups.values():
            files.sort(key=lambda f: (_mtime_ns(f.path), f.n))
            removed += [f.path for f in files[: -self.keep_last_n] if _remove(f.path, "rotation")]
        return removed

    def enforce_disk_budget(self) -> list[Path]:
        """Delete the oldest epoch/step files until checkpoint files fit `disk_budget_gb`; warn if they cannot.

        Bytes are counted once per file on disk (hard links share them). A name whose file is also latest or
        best frees nothing, so it is kept; the names of one file are deleted together."""
        budget = self.disk_budget_gb * 1e9
        if budget <= 0:
            return []
        files = list_checkpoint_files(self.folder)
        inode: dict[Path, tuple[int, int]] = {}
        size: dict[tuple[int, int], int] = {}
        for f in files:
            try:
                st = f.path.stat()
            except FileNotFoundError:
                continue
            inode[f.path] = (st.st_dev, st.st_ino)
            size[inode[f.path]] = st.st_size
        protected = {inode[f.path] for f in files if f.kind in ("latest", "best") and f.path in inode}
        groups: dict[tuple[int, int], list[CheckpointFile]] = {}
        for f in files:
            if (
                f.kind in ("epoch", "step")
                and f.path in inode
                and inode[f.path] not in protected
                and self._owns(f.path)
            ):
                groups.setdefault(inode[f.path], []).append(f)
        total = sum(size.values())
        removed = []
        for key, names in sorted(groups.items(), key=lambda kv: min((_mtime_ns(f.path), f.path.name) for f in kv[1])):
            if total <= budget:
                break
            gone = [f.path for f in names if _remove(f.path, f"disk budget {self.disk_budget_gb} GB")]
            removed += gone
            if len(gone) == len(names):
                total -= size[key]
        if total > budget:
            log.warning(
                "checkpoint files in %s use %.3f GB, over disk_budget_gb=%s, with only latest and best (and names "
                "of their files) left; they are never deleted: raise the budget or free space",
                self.folder,
                total / 1e9,
                self.disk_budget_gb,
            )
        return removed

    def _owns(self, path: Path) -> bool:
        """Whether `path` was written by this run (its run id; read once per file version, tensors not loaded)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if key not in self._owners:
            head, _ = read_head(path)
            self._owners[key] = head.get("run_id") if head is not None else _UNREADABLE
        return self._owners[key] == self.run_id


def on_disk(folder: Path) -> tuple[int, int, int]:
    """(files, distinct files, bytes) in `folder` now: hard links count once in the bytes; the lock and temp
    files are left out."""
    seen: dict[tuple[int, int], int] = {}
    files = 0
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if not path.is_file() or path.name == LOCK_NAME or path.name.endswith(TEMP_SUFFIX):
            continue
        files += 1
        seen[(st.st_dev, st.st_ino)] = st.st_size
    return files, len(seen), sum(seen.values())


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _remove(path: Path, why: str) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("could not delete %s (%s): %s", path, why, err)
        return False
    log.info("deleted %s (%s)", path.name, why)
    return True
