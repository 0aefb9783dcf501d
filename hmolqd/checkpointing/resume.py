"""Which checkpoint a run resumes from, and whether the current config may resume it.

`find_resume_checkpoint` tries, in order:
  1. `resume_from`, an explicit file (missing or invalid: an error naming the path and the reason);
  2. with `auto_resume`, the newest valid checkpoint in `checkpoint_dir` (latest, step, epoch and best
     files ranked by (stage, global_step, mtime), latest first among equal steps; a file that cannot be loaded, lacks required keys or
     fails its checksum is logged with the reason and skipped);
  3. with `auto_resume`, a `checkpoint_latest.pt` under `/kaggle/input/**` (a previous notebook version's
     output attached as input), copied atomically into `checkpoint_dir` first;
  4. otherwise "No checkpoint found - starting from scratch". Nothing is ever deleted here.

`check_resume_config` lets training keys change on resume (logged; `learning_rate` with a warning, applied
by rebuilding the schedule from the config: `hmolqd.training.optim.LRSchedule`) and refuses any architecture (ModelConfig) change.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hmolqd.checkpointing.fileformat import (
    LATEST,
    STAGES,
    CheckpointError,
    list_checkpoint_files,
    try_load_checkpoint,
    write_atomic_from,
)
from hmolqd.config import Config, architecture_diff

log = logging.getLogger(__name__)

KAGGLE_INPUT = Path("/kaggle/input")
NO_CHECKPOINT = "No checkpoint found - starting from scratch"
_KAGGLE_MAX_DEPTH = 6  # /kaggle/input/<source>/<...>/checkpoint_latest.pt; attached data sets can be huge


@dataclass
class ResumeResult:
    path: Path | None  # the checkpoint used, None when starting from scratch
    checkpoint: dict[str, Any] | None  # its verified contents
    message: str  # which checkpoint was used and why, or why none was
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # invalid files and the reason for each


def find_resume_checkpoint(checkpoint_dir: str | Path, *, resume_from: str | Path | None = None, auto_resume: bool = True,
                           kaggle_input: str | Path | None = KAGGLE_INPUT, map_location: Any = "cpu",
                           is_main: bool = True) -> ResumeResult:
    """Pick and load the checkpoint to resume from (see the module docstring for the order).

    `is_main=False` (other DDP ranks) never copies: it loads a Kaggle input checkpoint where it lies.
    """
    folder = Path(checkpoint_dir)
    if resume_from:
        path = Path(resume_from)
        ckpt, reason = try_load_checkpoint(path, map_location)
        if ckpt is None:
            raise CheckpointError(f"resume_from={str(path)!r}: {reason} (set resume_from=None to resume from checkpoint_dir)")
        return _used(ResumeResult(path, ckpt, f"Resuming from {_describe(path, ckpt)}: explicit resume_from"))
    if not auto_resume:
        kept = len(list_checkpoint_files(folder))
        note = f"; the {kept} checkpoint file(s) in {folder} are kept" if kept else ""
        return _used(ResumeResult(None, None, f"{NO_CHECKPOINT} (auto_resume=False{note})"))

    path, ckpt, skipped = newest_valid([f.path for f in list_checkpoint_files(folder)], map_location)
    if ckpt is not None:
        return _used(ResumeResult(path, ckpt, f"Resuming from {_describe(path, ckpt)}: newest valid checkpoint in {folder}{_skipped_text(skipped)}", skipped))

    searched = str(folder)
    if kaggle_input is not None and Path(kaggle_input).is_dir():
        searched += f" or under {kaggle_input}"
        src, ckpt, more = newest_valid(find_named(Path(kaggle_input), LATEST), map_location)
        skipped += more
        if ckpt is not None:
            used, how = src, "a previous notebook version's output attached as input"
            if is_main:
                try:
                    write_atomic_from(folder / LATEST, src)
                    used, how = folder / LATEST, f"copied from {src} ({how})"
                except CheckpointError as err:
                    log.warning("could not copy %s into %s, resuming from it where it lies: %s", src, folder, err)
            return _used(ResumeResult(used, ckpt, f"Resuming from {_describe(used, ckpt)}: {how}{_skipped_text(skipped)}", skipped))
    return _used(ResumeResult(None, None, f"{NO_CHECKPOINT} (no valid checkpoint in {searched}){_skipped_text(skipped)}", skipped))


def newest_valid(paths: Sequence[Path], map_location: Any = "cpu") -> tuple[Path | None, dict | None, list[tuple[Path, str]]]:
    """The newest file that fully verifies, ranked by (stage, global_step, kind, mtime); invalid ones are logged.

    Files of equal step hold the same state (one save writes several names): latest is preferred, best last.
    """
    skipped: list[tuple[Path, str]] = []
    ranked = []
    for path in paths:
        key, reason = _rank(path)
        if key is None:
            skipped.append((path, reason))
        else:
            ranked.append((key, _tie_break(path), path.stat().st_mtime_ns, str(path), path))
    chosen = (None, None)
    for *_, path in sorted(ranked, reverse=True):
        ckpt, reason = try_load_checkpoint(path, map_location)
        if ckpt is not None:
            chosen = (path, ckpt)
            break
        skipped.append((path, reason))
    for path, reason in skipped:
        log.warning("skipping checkpoint %s: %s", path, reason)
    return chosen[0], chosen[1], skipped


def _tie_break(path: Path) -> int:
    """Equal (stage, step): latest first, then step/epoch files, then best."""
    return 2 if path.name == LATEST else 0 if path.name.endswith("best.pt") else 1


def _rank(path: Path) -> tuple[tuple[int, int] | None, str]:
    """(stage index, global_step) read cheaply (memory-mapped: tensor bytes are not read), or a reason."""
    try:
        head = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an untrusted file: the full load below gives the precise reason (mmap's own is vaguer)
        head, reason = try_load_checkpoint(path)
        if head is None:
            return None, reason
    if not isinstance(head, dict) or head.get("stage") not in STAGES or not isinstance(head.get("global_step"), int):
        return None, "not an hmolqd checkpoint (no valid 'stage' / 'global_step')"
    return (STAGES.index(head["stage"]), head["global_step"]), ""


def find_named(root: Path, name: str, max_depth: int = _KAGGLE_MAX_DEPTH) -> list[Path]:
    """Files called `name` under `root`, at most `max_depth` folders down (symlinks not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if name in filenames:
            found.append(Path(dirpath) / name)
        if len(Path(dirpath).relative_to(root).parts) >= max_depth:
            dirnames.clear()
    return sorted(found)


def _describe(path: Path, ckpt: Mapping[str, Any]) -> str:
    return f"{path} (stage {ckpt['stage']}, epoch {ckpt['epoch']}, global step {ckpt['global_step']}, saved {ckpt.get('timestamp', '?')})"


def _skipped_text(skipped: list[tuple[Path, str]]) -> str:
    return "; skipped " + "; ".join(f"{p.name} ({reason})" for p, reason in skipped) if skipped else ""


def _used(result: ResumeResult) -> ResumeResult:
    log.info(result.message)
    return result


# ---------------------------------------------------------------- config changes on resume

_WARN_KEYS = {
    "learning_rate": "applied: the learning-rate schedule is rebuilt with the new peak",
    "seed": "data order and random numbers will differ from an uninterrupted run",
    "val_dungeons": "another validation split: the best metric so far is not comparable",
    "mirror_augment": "another training set from here on",
    "monitor_metric": "the best checkpoint so far is forgotten: best starts over",
    "monitor_mode": "the best checkpoint so far is forgotten: best starts over",
}


def check_resume_config(saved: Mapping[str, Any], current: Config) -> list[str]:
    """Messages (also logged) for every key changed since the checkpoint; CheckpointError on an architecture change.

    The error lists every differing ModelConfig key with the checkpoint's and the config's value.
    """
    if not isinstance(saved, Mapping) or not isinstance(saved.get("model"), Mapping):
        raise CheckpointError("the checkpoint's config has no 'model' section, so its architecture cannot be checked")
    diff = architecture_diff(dict(saved["model"]), current.model)
    if diff:
        raise CheckpointError(
            f"the model architecture differs from the checkpoint in {len(diff)} key(s): {'; '.join(diff)}. Model keys "
            "cannot change on resume: use the checkpoint's values, or start a new run (another checkpoint_dir or auto_resume=False)"
        )
    now = current.to_dict()
    messages = []
    for section in sorted((set(saved) | set(now)) - {"model"}):
        old, new = dict(saved.get(section) or {}), now.get(section, {})
        for key in sorted(set(old) | set(new)):
            if key not in new:
                messages.append(f"config key {section}.{key} = {old[key]!r} in the checkpoint is unknown to this version (ignored)")
            elif key not in old:
                messages.append(f"config key {key!r} is new since the checkpoint: using {new[key]!r}")
            elif old[key] != new[key] and key in _WARN_KEYS:
                messages.append(f"WARNING: config key {key!r} changed since the checkpoint: {old[key]!r} -> {new[key]!r} ({_WARN_KEYS[key]})")
            elif old[key] != new[key]:
                messages.append(f"config key {key!r} changed since the checkpoint: {old[key]!r} -> {new[key]!r} (allowed: it does not change the model)")
    for msg in messages:
        log.log(logging.WARNING if msg.startswith("WARNING") else logging.INFO, msg)
    return messages
