"""A previous session's output to continue from: where `resume_input` looks, and what counts as one.

On Kaggle a new session continues an earlier one when that session's output is attached as an input
(`/kaggle/input/<notebook>/checkpoints/...`). Such a folder is recognised by what hmolqd writes into every
checkpoint folder: its `run.json` (`hmolqd.checkpointing.identity`) beside a `checkpoint_latest.pt`, never
by a file name alone. Folders of a package or repository tree (a folder below the searched root holding
`pyproject.toml`, `setup.py`, `.git`, `hmolqd/` or `tests/`) are never searched: the repository attached as an
input carries checkpoint files of its own (test fixtures) that belong to no user's run.

`resume_input` (config key): "auto" searches the Kaggle input (`hmolqd.config.kaggle_input()`), "off"
searches nothing, any other value is a path: a folder searched the same way (a folder that itself holds a
`checkpoint_latest.pt` counts even without `run.json`: it was named on purpose), or one checkpoint file.
"""

from __future__ import annotations

import os
from pathlib import Path

from hmolqd.checkpointing.fileformat import LATEST, CheckpointError
from hmolqd.checkpointing.identity import read_run_info
from hmolqd.checkpointing.lock import RUN_INFO_NAME
from hmolqd.config import kaggle_input

MAX_DEPTH = 6  # <input>/<source>/<...>/checkpoint_latest.pt; attached data sets can be huge
REPO_MARKERS = ("pyproject.toml", "setup.py", ".git", "hmolqd", "tests")
AUTO, OFF = "auto", "off"


def input_candidates(resume_input: str | os.PathLike | None) -> tuple[list[Path], str]:
    """(checkpoint_latest.pt files of previous outputs, where that looked, for messages) for `resume_input`.

    A named path that does not exist is a CheckpointError naming the key; "auto" without a Kaggle input finds nothing.
    """
    if resume_input is None or str(resume_input) == OFF:
        return [], ""
    if str(resume_input) == AUTO:
        root = kaggle_input()
        return (previous_outputs(root) if root.is_dir() else []), f"under {root}"
    path = Path(resume_input)
    if path.is_file():
        return [path], str(path)
    if not path.is_dir():
        raise CheckpointError(
            f"resume_input {str(path)!r} does not exist: name a previous output folder or checkpoint file, "
            f"or set resume_input to {AUTO!r} (search the Kaggle input) or {OFF!r}"
        )
    named = [path / LATEST] if (path / LATEST).is_file() else []
    return list(dict.fromkeys(named + previous_outputs(path))), f"under {path}"


def previous_outputs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """The `checkpoint_latest.pt` of every hmolqd checkpoint folder under `root` (see the module docstring),
    at most `max_depth` folders down; symlinks are not followed and repository trees are pruned."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        # The root holds the data sets (one may be called hmolqd or tests): only folders below it can be trees.
        if folder != root and any(marker in filenames or marker in dirnames for marker in REPO_MARKERS):
            dirnames.clear()  # a package or repository: its checkpoint files are fixtures, not a user's run
            continue
        if LATEST in filenames and RUN_INFO_NAME in filenames and read_run_info(folder) is not None:
            found.append(folder / LATEST)
        dirnames.sort()
        if len(folder.relative_to(root).parts) >= max_depth:
            dirnames.clear()
    return sorted(found)


def companions(latest: Path) -> list[Path]:
    """What comes into checkpoint_dir with an input's latest: every stage's best and run.json (that exist)."""
    folder = latest.parent
    names = sorted(p.name for p in folder.glob("checkpoint_*best.pt")) + [RUN_INFO_NAME]
    return [folder / name for name in names if (folder / name).is_file() and folder / name != latest]
