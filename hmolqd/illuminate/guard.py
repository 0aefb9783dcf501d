"""The archive's folder (`--out`): checked before anything is written, locked for the whole run, its temp files.

- `check_out(out)` writes nothing: `out` must not be a file, and must not be a training run's folder (its
  `checkpoint_dir` or `output_dir`, recognised by `run.json`, a checkpoint or `model_final.pt`): a training keeps
  only its own files there and would set aside, zip or trip over the archive's; the names the archive writes
  must not be folders, FIFOs or other non-regular files (a FIFO named `archive.pt` would block the run).
- `out_lock(out)` creates the folder, proves it writable and holds training's own directory lock
  (`hmolqd.checkpointing.lock.DirLock`, the file `hmolqd.lock`) from before the checkpoint is read until the
  outputs are written: a second run on the same folder (or a training) is refused while the first runs.
  Under the lock it removes temp files a killed run left (`hmolqd.atomic.stale_temp_files`: only those of
  dead processes, or of this one and no longer written; never a live run's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from hmolqd.atomic import stale_temp_files
from hmolqd.checkpointing.fileformat import CheckpointError, list_checkpoint_files, not_regular_entries
from hmolqd.checkpointing.lock import RUN_INFO_NAME, DirLock, check_checkpoint_dir
from hmolqd.illuminate.archive import IlluminateError
from hmolqd.illuminate.checkpoint import CHECKPOINT_NAME

ELITES_DIR = "elites"  # every elite's files (hmolqd.illuminate.outputs)
OUTPUT_NAMES = (CHECKPOINT_NAME, "heatmap.png", "elites.png", "summary.json")
TRAINING_NAMES = ("model_final.pt", "training_history.json")  # hmolqd.training.outputs: files only a training writes


def training_files(folder: Path) -> list[str]:
    """The names that make `folder` a training run's checkpoint_dir or output_dir (module docstring)."""
    if not folder.is_dir():
        return []
    names = [p.name for p in list_checkpoint_files(folder)]
    names += [n for n in (RUN_INFO_NAME, *TRAINING_NAMES) if (folder / n).exists()]
    return sorted(names)


def check_out(out: Path, key: str = "--out") -> None:
    """Refuse a bad archive folder with one line, writing nothing (module docstring)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise IlluminateError(f"{key} {out}: is a file, not a folder; give a folder (created if missing)")
    found = training_files(out)
    if found:
        raise IlluminateError(
            f"{key} {out}: a training run's folder (it holds {', '.join(found[:3])}): a training keeps only its own "
            f"files there; give the archive a folder of its own (the default is illuminate/ beside the model)"
        )
    bad = not_regular_entries(out, OUTPUT_NAMES) if out.is_dir() else []
    elites = out / ELITES_DIR
    if elites.exists() and not elites.is_dir():
        bad.append(elites)
    if bad:
        raise IlluminateError(
            f"{key} {out}: {bad[0]} is not a regular {'folder' if bad[0] == elites else 'file'}, so the archive "
            "cannot be read or written there; move it away, or give another folder"
        )


@contextlib.contextmanager
def out_lock(out: Path, key: str = "--out") -> Iterator[Path]:
    """Create `out`, prove it writable and hold its lock for the block; clean up dead runs' temp files."""
    out = Path(out)
    check_out(out, key)
    try:
        check_checkpoint_dir(out, key)
        lock = DirLock(out, key, what="illumination").acquire()
    except CheckpointError as err:
        raise IlluminateError(str(err)) from None
    try:
        for folder in (out, out / ELITES_DIR):
            if folder.is_dir():
                for tmp in stale_temp_files(folder):
                    tmp.unlink(missing_ok=True)
        yield out
    finally:
        lock.release()
