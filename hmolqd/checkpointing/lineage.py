"""No file of another run is ever overwritten or deleted: before a training writes anything, the files at the
top of its folder that are not its own are set aside, unchanged, into `previous_runs/<label>/`.

A training writes, rotates and replaces only names at the top of `checkpoint_dir` (and `output_dir`). So
`start_run` (main rank, under the directory lock, after `find_resume_checkpoint` chose) moves away
  - on a new run (`auto_resume=False`, a new `resume_from`, an input of another run): every file of the
    directory's previous run, its `run.json` included, into `previous_runs/<run id>/`;
  - always: files of another run that were dropped into the folder (`previous_runs/<their run id>/`) and
    files that failed to load (`previous_runs/unreadable/`), so that a save never replaces them;
then copies an input's files in (`ResumeResult.imports`) and writes `run.json` for a new run. A move is a
rename within the folder (hard links and contents are kept, bytes are not copied); a label folder that
already holds one of the names gets a numbered sibling (`<label>-2`), so nothing set aside earlier is
replaced either. The result's message says what was moved where.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from hmolqd.atomic import fsync_dir
from hmolqd.checkpointing.fileformat import LATEST, CheckpointError, list_checkpoint_files, write_atomic_from
from hmolqd.checkpointing.identity import read_run_info, write_run_info
from hmolqd.checkpointing.lock import RUN_INFO_NAME
from hmolqd.checkpointing.resume import ResumeResult

log = logging.getLogger(__name__)

ARCHIVE = "previous_runs"
UNREADABLE = "unreadable"
NO_RUN_ID = "no-run-id"  # files written before run ids existed


def set_aside(folder: Path, paths: Iterable[Path], label: str) -> Path | None:
    """Move `paths` (files at the top of `folder`) into `folder/previous_runs/<label>[-N]/`; returns that folder.

    The first of `<label>`, `<label>-2`, ... that holds none of the names is used: nothing is ever replaced.
    """
    paths = [p for p in paths if p.exists() or p.is_symlink()]
    if not paths:
        return None
    base = folder / ARCHIVE
    for n in range(1, 10_000):
        target = base / (label if n == 1 else f"{label}-{n}")
        if not any((target / p.name).exists() or (target / p.name).is_symlink() for p in paths):
            break
    else:
        raise CheckpointError(
            f"cannot set aside {len(paths)} file(s) of {label} in {base}: every numbered folder is taken"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            os.rename(path, target / path.name)  # same file system: atomic, the inode (and its other names) kept
    except OSError as err:
        # err.filename: the folder that could not be made or the file that could not move (`path` may be unbound).
        raise CheckpointError(
            f"cannot set aside {err.filename or label} into {target} before training: "
            f"{err.strerror or err}; nothing was overwritten or deleted: free the folder, or use "
            "another checkpoint_dir"
        ) from err
    fsync_dir(target)
    fsync_dir(folder)
    return target


def _labels(found: ResumeResult, folder: Path) -> dict[str, list[Path]]:
    """Which top-level files leave before this training writes: {label: files}."""
    previous = read_run_info(folder)
    unreadable = {p for p, _ in found.skipped if p.parent == folder}
    out: dict[str, list[Path]] = {}
    for f in list_checkpoint_files(folder):
        owner = found.owners.get(f.path)
        if f.path in unreadable or f.path not in found.owners:
            label = UNREADABLE
        elif found.new_run:
            label = (owner or (previous.run_id if previous else None) or NO_RUN_ID)[:8] if owner != found.run_id else ""
        else:
            label = owner[:8] if owner not in (found.run_id, None) else ""
        if label:
            out.setdefault(label, []).append(f.path)
    if previous is not None and previous.run_id != found.run_id and (folder / RUN_INFO_NAME).is_file():
        out.setdefault(previous.run_id[:8], []).append(folder / RUN_INFO_NAME)
    return out


def start_run(folder: str | Path, found: ResumeResult) -> ResumeResult:
    """Make `folder` hold only this training's run (see the module docstring); returns the result with the
    path it resumes from now and a message that says what was set aside and copied in."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notes, path, seeded = [], found.path, found.run_info
    for label, paths in _labels(found, folder).items():
        target = set_aside(folder, paths, label)
        if target is None:
            continue
        what = "that failed to load" if label == UNREADABLE else f"of run {label}"
        notes.append(
            f"set aside {len(paths)} file(s) {what} ({', '.join(p.name for p in paths)}) into {target} "
            "(kept, not resumed)"
        )
        if path is not None and path in paths:
            path = target / path.name  # resume_from named a file of the previous run: it is read where it lies now
            if seeded is not None and seeded.seeded_from:
                seeded = dataclasses.replace(
                    seeded, seeded_from={**seeded.seeded_from, "moved_to": str(path.resolve())}
                )
    if found.imports:
        path, copied = _copy_in(folder, found.imports)
        notes.append(
            f"copied {', '.join(copied)} from {found.imports[0].parent} into {folder}: training continues from {path}"
        )
    if seeded is not None:
        write_run_info(folder, seeded)
    for note in notes:
        log.info(note)
    return dataclasses.replace(found, path=path, run_info=seeded, message="; ".join([found.message, *notes]))


def _copy_in(folder: Path, imports: tuple[Path, ...]) -> tuple[Path, list[str]]:
    """Copy an input's latest (first), bests and run.json into folder, atomically; (the local latest, names)."""
    copied = []
    for src in imports:
        write_atomic_from(folder / src.name, src)  # the folder's names are free: start_run set every other file aside
        copied.append(src.name)
    return folder / LATEST, copied
