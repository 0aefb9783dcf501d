"""Which checkpoint a run resumes from, and whether the current config may resume it.

`find_resume_checkpoint` tries, in order:
  1. `resume_from`, an explicit file (missing or invalid: an error naming the path and the reason). It seeds
     a run once: the directory's `run.json` (`hmolqd.checkpointing.identity`) records it, and a re-run with
     the same `resume_from` continues the run's own newer checkpoints instead (the message says which and why).
     Another `resume_from` starts a new run in the directory;
  2. with `auto_resume`, the newest valid checkpoint of this directory's run (its run id in `run.json`): latest,
     step, epoch and best files ranked by (stage, global_step, mtime), latest first among equal steps; a file
     that cannot be loaded, lacks required keys or fails its checksum is logged with the reason and skipped.
     Files without a run id (hmolqd 0.1.0) count as the run's when it has none of its own. Files of another
     run are never picked automatically: when they are all there is, CheckpointError says so and names them
     (resuming one takes an explicit `resume_from`);
  3. with `auto_resume`, a `checkpoint_latest.pt` under `/kaggle/input/**` (a previous notebook version's
     output attached as input), copied atomically into `checkpoint_dir` first together with the best
     checkpoint of every stage and its `run.json`, so the new output holds the best model so far;
  4. otherwise "No checkpoint found - starting from scratch". Nothing is ever deleted here.
The result carries the run id to record in every checkpoint and, for a new (or adopted) run, the `RunInfo`
that the caller writes as `run.json` (nothing is written here but the Kaggle copies, and those only with
`is_main`).

`check_resume_config` lets training keys change on resume (`learning_rate` with a warning, applied by rebuilding
the schedule from the config: `hmolqd.training.optim.LRSchedule`) and refuses any architecture (ModelConfig)
change. It returns its messages for the caller to print once (it does not log them too).
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
from hmolqd.checkpointing.identity import (
    RunInfo,
    new_run_id,
    read_run_info,
    seed_record,
)
from hmolqd.checkpointing.lock import RUN_INFO_NAME
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
    run_id: str = ""  # the run this training continues (or starts): recorded in every checkpoint it writes
    run_info: RunInfo | None = None  # a new or adopted run: the caller (main rank) writes it as run.json


@dataclass(frozen=True)
class _Head:
    """What ranking needs, read without loading tensor bytes."""

    key: tuple[int, int]  # (stage index, global_step)
    tie: int
    mtime: int
    path: Path
    run_id: str | None


def find_resume_checkpoint(checkpoint_dir: str | Path, *, resume_from: str | Path | None = None, auto_resume: bool = True,
                           kaggle_input: str | Path | None = KAGGLE_INPUT, map_location: Any = "cpu",
                           is_main: bool = True) -> ResumeResult:
    """Pick and load the checkpoint to resume from (see the module docstring for the order).

    `is_main=False` (other DDP ranks, the notebook's status cell) never copies: it loads a Kaggle input
    checkpoint where it lies.
    """
    folder = Path(checkpoint_dir)
    info = read_run_info(folder)
    if resume_from:
        return _used(_explicit(folder, Path(resume_from), info, map_location))
    if not auto_resume:
        kept = len(list_checkpoint_files(folder))
        note = f"; the {kept} checkpoint file(s) in {folder} are kept and no longer resumed" if kept else ""
        new = RunInfo.new()
        return _used(ResumeResult(None, None, f"{NO_CHECKPOINT} (auto_resume=False: a new run{note})", run_id=new.run_id, run_info=new))

    heads, skipped = _heads([f.path for f in list_checkpoint_files(folder)])
    found = _own_newest(folder, heads, skipped, info, map_location)
    if found is not None:
        return _used(found)
    own = info.run_id if info else None

    searched = str(folder)
    if kaggle_input is not None and Path(kaggle_input).is_dir():
        searched += f" or under {kaggle_input}"
        candidates, more = _heads(find_named(Path(kaggle_input), LATEST))
        skipped += more
        same_run = [h for h in candidates if own is not None and h.run_id == own]
        src, ckpt, more = _pick(same_run or candidates, map_location)
        skipped += more
        if ckpt is not None:
            return _used(_from_kaggle(folder, src, ckpt, info, skipped, is_main))
    run_id = own or new_run_id()
    message = f"{NO_CHECKPOINT} (no valid checkpoint in {searched}){_skipped_text(skipped)}"
    return _used(ResumeResult(None, None, message, skipped, run_id, None if info else RunInfo.new(run_id=run_id)))


def _explicit(folder: Path, path: Path, info: RunInfo | None, map_location: Any) -> ResumeResult:
    """`resume_from`: the file itself the first time; the run's own newer files once it seeded the run."""
    if info is not None and info.seeded_by(path):
        heads, skipped = _heads([f.path for f in list_checkpoint_files(folder)])
        own, ckpt, more = _pick([h for h in heads if h.run_id == info.run_id], map_location)
        seed = info.seeded_from or {}
        if ckpt is not None and own is not None:
            return ResumeResult(own, ckpt, (
                f"Resuming from {_describe(own, ckpt)}: resume_from={str(path)!r} started this run (run {info.run_id[:8]}, "
                f"at {seed.get('stage')} global step {seed.get('global_step')}) and {own.name} is the run's newest valid "
                f"checkpoint since, so it wins over resume_from (to start again from {path.name}, use another checkpoint_dir)"
                f"{_skipped_text(skipped + more)}"), skipped + more, info.run_id)
    ckpt, reason = try_load_checkpoint(path, map_location)
    if ckpt is None:
        raise CheckpointError(f"resume_from={str(path)!r}: {reason} (set resume_from=None to resume from checkpoint_dir)")
    if info is not None and info.seeded_by(path):
        return ResumeResult(path, ckpt, f"Resuming from {_describe(path, ckpt)}: explicit resume_from (it started this run; "
                            f"no checkpoint of the run in {folder} yet)", run_id=info.run_id)
    new = RunInfo.new(seeded_from=seed_record(path, ckpt))
    note = f"; the files of the previous run {info.run_id[:8]} there are kept and no longer resumed" if info else ""
    return ResumeResult(path, ckpt, f"Resuming from {_describe(path, ckpt)}: explicit resume_from, which starts run "
                        f"{new.run_id[:8]} in {folder}{note}", run_id=new.run_id, run_info=new)


def _own_newest(folder: Path, heads: list[_Head], skipped: list[tuple[Path, str]], info: RunInfo | None,
                map_location: Any) -> ResumeResult | None:
    """The newest valid file of the directory's run (then of no run), or None; CheckpointError when only
    another run's files are there."""
    named = sorted({h.run_id for h in heads if h.run_id is not None})
    if info is None and len(named) > 1:
        raise CheckpointError(
            f"{folder} holds checkpoints of {len(named)} runs ({', '.join(r[:8] for r in named)}) and no {RUN_INFO_NAME} saying "
            f"which run the directory belongs to: set resume_from to the file to continue (e.g. {max(heads, key=_order).path}), "
            "or move the other runs' files away")
    own = info.run_id if info else (named[0] if named else None)
    foreign = [h for h in heads if h.run_id not in (own, None)]
    ignored = f"; ignored {len(foreign)} file(s) of another run ({', '.join(h.path.name for h in foreign)})" if foreign else ""
    adopted = f" ({RUN_INFO_NAME} was missing: the directory's checkpoints are run {own[:8]})" if info is None and own else ""
    for group, note in (([h for h in heads if own and h.run_id == own], ""), ([h for h in heads if h.run_id is None], " (written before run ids existed)")):
        path, ckpt, more = _pick(group, map_location)
        skipped += more
        if ckpt is not None and path is not None:
            run_id = own or new_run_id()
            message = f"Resuming from {_describe(path, ckpt)}: newest valid checkpoint of this run in {folder}{note}{adopted}{ignored}{_skipped_text(skipped)}"
            return ResumeResult(path, ckpt, message, skipped, run_id, None if info else RunInfo.new(run_id=run_id))
    if foreign:
        newest = max(foreign, key=_order)
        raise CheckpointError(
            f"{folder} holds only checkpoints of another run: {', '.join(h.path.name for h in foreign)} (run {str(newest.run_id)[:8]}; "
            f"this directory is run {str(own)[:8]}, {RUN_INFO_NAME}). They are not resumed automatically: to continue from one, "
            f"set resume_from={str(newest.path)!r}; to start afresh, set auto_resume=False (a new run here) or use another checkpoint_dir")
    return None


def _from_kaggle(folder: Path, src: Path, ckpt: dict[str, Any], info: RunInfo | None, skipped: list[tuple[Path, str]],
                 is_main: bool) -> ResumeResult:
    """Resume from a previous version's output: copy latest, every stage's best and run.json into folder."""
    source_info = read_run_info(src.parent)
    run_id = ckpt.get("run_id") or (source_info.run_id if source_info else None) or (info.run_id if info else None) or new_run_id()
    run_info = None if info is not None and info.run_id == run_id else (
        source_info if source_info is not None and source_info.run_id == run_id else RunInfo.new(run_id=run_id))
    used, how = src, "a previous notebook version's output attached as input"
    if is_main:
        bests = [f.path.name for f in list_checkpoint_files(src.parent) if f.kind == "best"]
        try:
            write_atomic_from(folder / LATEST, src)
            used, how = folder / LATEST, f"copied from {src} ({how})"
        except CheckpointError as err:
            log.warning("could not copy %s into %s, resuming from it where it lies: %s", src, folder, err)
        copied = []
        for name in bests:  # the best model so far must be in the new output even if this session never improves
            try:
                write_atomic_from(folder / name, src.parent / name)
                copied.append(name)
            except CheckpointError as err:
                log.warning("could not copy %s into %s: %s", src.parent / name, folder, err)
        if copied:
            how += f", with {', '.join(copied)}"
    return ResumeResult(used, ckpt, f"Resuming from {_describe(used, ckpt)}: {how}{_skipped_text(skipped)}", skipped, run_id, run_info)


def newest_valid(paths: Sequence[Path], map_location: Any = "cpu") -> tuple[Path | None, dict | None, list[tuple[Path, str]]]:
    """The newest file that fully verifies, ranked by (stage, global_step, kind, mtime); invalid ones are logged.

    Files of equal step hold the same state (one save writes several names): latest is preferred, best last.
    """
    heads, skipped = _heads(paths)
    path, ckpt, more = _pick(heads, map_location)
    return path, ckpt, skipped + more


def _heads(paths: Sequence[Path]) -> tuple[list[_Head], list[tuple[Path, str]]]:
    heads, skipped = [], []
    for path in paths:
        key, run_id, reason = _rank(path)
        if key is None:
            skipped.append((path, reason))
            log.warning("skipping checkpoint %s: %s", path, reason)
        else:
            heads.append(_Head(key, _tie_break(path), _mtime_ns(path), path, run_id))
    return heads, skipped


def _order(h: _Head) -> tuple:
    return h.key, h.tie, h.mtime, str(h.path)


def _pick(heads: Sequence[_Head], map_location: Any) -> tuple[Path | None, dict | None, list[tuple[Path, str]]]:
    skipped: list[tuple[Path, str]] = []
    for head in sorted(heads, key=_order, reverse=True):
        ckpt, reason = try_load_checkpoint(head.path, map_location)
        if ckpt is not None:
            return head.path, ckpt, skipped
        skipped.append((head.path, reason))
        log.warning("skipping checkpoint %s: %s", head.path, reason)
    return None, None, skipped


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _tie_break(path: Path) -> int:
    """Equal (stage, step): latest first, then step/epoch files, then best."""
    return 2 if path.name == LATEST else 0 if path.name.endswith("best.pt") else 1


def _rank(path: Path) -> tuple[tuple[int, int] | None, str | None, str]:
    """((stage index, global_step), run id) read cheaply (memory-mapped: tensor bytes are not read), or a reason."""
    try:
        head = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an untrusted file: the full load below gives the precise reason (mmap's own is vaguer)
        head, reason = try_load_checkpoint(path)
        if head is None:
            return None, None, reason
    if not isinstance(head, dict) or head.get("stage") not in STAGES or not isinstance(head.get("global_step"), int):
        return None, None, "not an hmolqd checkpoint (no valid 'stage' / 'global_step')"
    run_id = head.get("run_id")
    return (STAGES.index(head["stage"]), head["global_step"]), run_id if isinstance(run_id, str) else None, ""


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
    """Messages for every key changed since the checkpoint; CheckpointError on an architecture change.

    The error lists every differing ModelConfig key with the checkpoint's and the config's value. The messages
    are returned, not logged: the caller prints them once (logging them too printed every warning twice).
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
    return messages
