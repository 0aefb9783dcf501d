"""Which checkpoint a run resumes from, and whether the current config may resume it.

`find_resume_checkpoint` only chooses: it reads files and writes nothing (`hmolqd.checkpointing.lineage`
then sets other runs' files aside, copies an input's files in and writes `run.json`). It tries, in order:
  0. a folder holding a file written by a newer hmolqd (a newer `format_version`) is refused: this version
     would neither read nor keep those files as their writer expects;
  1. `resume_from`, an explicit file (missing or invalid: an error naming the path and the reason). It seeds
     a new run once: the directory's `run.json` (`hmolqd.checkpointing.identity`) records it, and a re-run with
     the same `resume_from` continues the run's own newer checkpoints instead (the message says which and why);
  2. with `auto_resume`, the newest valid checkpoint of this directory's run (its run id in `run.json`): latest,
     step, epoch and best files ranked by (stage, global_step, mtime), latest first among equal steps; a file
     that cannot be loaded, lacks required keys or fails its checksum is logged with the reason and skipped.
     Files without a run id (hmolqd 0.1.0) count as the run's when it has none of its own. Files of another
     run are never picked automatically: when they are all there is, CheckpointError says so and names them
     (resuming one takes an explicit `resume_from`);
  3. with `auto_resume`, a previous output named by `resume_input` (`hmolqd.checkpointing.inputs`: on Kaggle
     an earlier session's output attached as input, recognised by its run.json): candidates of this
     directory's run first, then the newest; one whose architecture differs from the config is reported and
     skipped; every candidate is listed in the message with the choice;
  4. otherwise "No checkpoint found - starting from scratch".
The result says which run this training writes (`run_id`), whether that is a new run (`new_run`: every file
of another run must leave the folder's top level before anything is written), the files the folder holds
with their run ids (`owners`), those that failed to load (`skipped`) and, for an input, the files to copy in.

`check_resume_config` lets training keys change on resume (`learning_rate` with a warning, applied by rebuilding
the schedule from the config: `hmolqd.training.optim.LRSchedule`) and refuses any architecture (ModelConfig)
change. It returns its messages for the caller to print once (it does not log them too).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmolqd.checkpointing.candidates import Head, order, pick, read_heads
from hmolqd.checkpointing.fileformat import CheckpointError, list_checkpoint_files, try_load_checkpoint
from hmolqd.checkpointing.identity import (
    RunInfo,
    new_run_id,
    read_run_info,
    seed_record,
)
from hmolqd.checkpointing.inputs import companions, input_candidates
from hmolqd.checkpointing.lock import RUN_INFO_NAME
from hmolqd.config import Config, ModelConfig, architecture_diff

log = logging.getLogger(__name__)

NO_CHECKPOINT = "No checkpoint found - starting from scratch"


@dataclass
class ResumeResult:
    path: Path | None  # the checkpoint used, None when starting from scratch
    checkpoint: dict[str, Any] | None  # its verified contents
    message: str  # which checkpoint was used and why, or why none was
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # invalid files and the reason for each
    run_id: str = ""  # the run this training continues (or starts): recorded in every checkpoint it writes
    run_info: RunInfo | None = None  # a new or adopted run: written as run.json (hmolqd.checkpointing.lineage)
    new_run: bool = False  # a run starts here: the files of the directory's previous run are set aside first
    owners: dict[Path, str | None] = field(default_factory=dict)  # the folder's readable files -> their run id
    imports: tuple[Path, ...] = ()  # an input's latest, bests and run.json, to copy into checkpoint_dir


def find_resume_checkpoint(
    checkpoint_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    auto_resume: bool = True,
    resume_input: str | os.PathLike | None = None,
    model: ModelConfig | None = None,
    map_location: Any = "cpu",
) -> ResumeResult:
    """Choose and load the checkpoint to resume from (see the module docstring for the order); writes nothing.

    `model` (the config's architecture) makes an input candidate of another architecture be skipped.
    """
    folder = Path(checkpoint_dir)
    info = read_run_info(folder)
    heads, skipped, newer = read_heads([f.path for f in list_checkpoint_files(folder)])
    if newer:
        raise CheckpointError(
            f"checkpoint_dir {folder} holds files written by a newer hmolqd "
            f"({'; '.join(f'{p.name}: {r}' for p, r in newer)}). "
            "This version does not train beside them (it could not keep them as their writer expects): upgrade hmolqd, "
            "or use another checkpoint_dir. Nothing in the folder was changed"
        )
    owners = {h.path: h.run_id for h in heads}
    if resume_from:
        return _used(
            dataclasses.replace(_explicit(folder, Path(resume_from), info, heads, map_location), owners=owners)
        )
    if not auto_resume:
        new = RunInfo.new()
        return _used(
            ResumeResult(
                None,
                None,
                f"{NO_CHECKPOINT} (auto_resume=False: a new run {new.run_id[:8]})",
                skipped,
                new.run_id,
                new,
                True,
                owners,
            )
        )
    found = _own_newest(folder, heads, skipped, info, map_location)
    if found is not None:
        return _used(dataclasses.replace(found, owners=owners))
    own = info.run_id if info else None
    candidates, where = input_candidates(resume_input)
    if candidates:
        found, more = _from_input(candidates, own, model, map_location)
        skipped = skipped + more
        if found is not None:
            return _used(dataclasses.replace(found, skipped=skipped, owners=owners, new_run=own != found.run_id))
    searched = str(folder) + (f" or {where}" if where else "")
    run_id = own or new_run_id()
    message = f"{NO_CHECKPOINT} (no valid checkpoint in {searched}){_skipped_text(skipped)}"
    return _used(
        ResumeResult(
            None, None, message, skipped, run_id, None if info else RunInfo.new(run_id=run_id), info is None, owners
        )
    )


def _explicit(folder: Path, path: Path, info: RunInfo | None, heads: list[Head], map_location: Any) -> ResumeResult:
    """`resume_from`: the file itself the first time; the run's own newer files once it seeded the run."""
    if info is not None and info.seeded_by(path):
        own, ckpt, skipped = pick([h for h in heads if h.run_id == info.run_id], map_location)
        seed = info.seeded_from or {}
        if ckpt is not None and own is not None:
            return ResumeResult(
                own,
                ckpt,
                (
                    f"Resuming from {_describe(own, ckpt)}: resume_from={str(path)!r} started this run "
                    f"(run {info.run_id[:8]}, at {seed.get('stage')} global step {seed.get('global_step')}) "
                    f"and {own.name} is the run's newest valid checkpoint since, so it wins over resume_from "
                    f"(to start again from {path.name}, use another checkpoint_dir)"
                    f"{_skipped_text(skipped)}"
                ),
                skipped,
                info.run_id,
            )
        # No save of the run yet: the seed itself, where it lies now (lineage may have set it aside with its run).
        moved = Path(seed["moved_to"]) if seed.get("moved_to") and not path.is_file() else path
        ckpt, reason = try_load_checkpoint(moved, map_location)
        if ckpt is None:
            raise CheckpointError(
                f"resume_from={str(path)!r}: {reason} (set resume_from=None to resume from checkpoint_dir)"
            )
        return ResumeResult(
            moved,
            ckpt,
            f"Resuming from {_describe(moved, ckpt)}: explicit resume_from (it started this run; "
            f"no checkpoint of the run in {folder} yet)",
            skipped,
            info.run_id,
        )
    ckpt, reason = try_load_checkpoint(path, map_location)
    if ckpt is None:
        raise CheckpointError(
            f"resume_from={str(path)!r}: {reason} (set resume_from=None to resume from checkpoint_dir)"
        )
    new = RunInfo.new(seeded_from=seed_record(path, ckpt))
    return ResumeResult(
        path,
        ckpt,
        f"Resuming from {_describe(path, ckpt)}: explicit resume_from, which starts run {new.run_id[:8]} in {folder}",
        run_id=new.run_id,
        run_info=new,
        new_run=True,
    )


def _own_newest(
    folder: Path, heads: list[Head], skipped: list[tuple[Path, str]], info: RunInfo | None, map_location: Any
) -> ResumeResult | None:
    """The newest valid file of the directory's run (then of no run), or None; CheckpointError when only
    another run's files are there."""
    named = sorted({h.run_id for h in heads if h.run_id is not None})
    if info is None and len(named) > 1:
        raise CheckpointError(
            f"{folder} holds checkpoints of {len(named)} runs ({', '.join(r[:8] for r in named)}) "
            f"and no {RUN_INFO_NAME} saying which run the directory belongs to: "
            f"set resume_from to the file to continue (e.g. {max(heads, key=order).path}), "
            "or move the other runs' files away"
        )
    own = info.run_id if info else (named[0] if named else None)
    foreign = [h for h in heads if h.run_id not in (own, None)]
    ignored = (
        f"; ignored {len(foreign)} file(s) of another run ({', '.join(h.path.name for h in foreign)})"
        if foreign
        else ""
    )
    adopted = (
        f" ({RUN_INFO_NAME} was missing: the directory's checkpoints are run {own[:8]})" if info is None and own else ""
    )
    groups = (
        ([h for h in heads if own and h.run_id == own], ""),
        ([h for h in heads if h.run_id is None], " (written before run ids existed)"),
    )
    for group, note in groups:
        path, ckpt, more = pick(group, map_location)
        skipped += more
        if ckpt is not None and path is not None:
            run_id = own or new_run_id()
            message = (
                f"Resuming from {_describe(path, ckpt)}: newest valid checkpoint of this run in {folder}"
                f"{note}{adopted}{ignored}"
                f"{_skipped_text(skipped)}"
            )
            return ResumeResult(path, ckpt, message, skipped, run_id, None if info else RunInfo.new(run_id=run_id))
    if foreign:
        newest = max(foreign, key=order)
        raise CheckpointError(
            f"{folder} holds only checkpoints of another run: {', '.join(h.path.name for h in foreign)} "
            f"(run {str(newest.run_id)[:8]}; this directory is run {str(own)[:8]}, {RUN_INFO_NAME}). "
            f"They are not resumed automatically: to continue from one, set resume_from={str(newest.path)!r}; "
            "to start afresh, set auto_resume=False (a new run here: those files are "
            "set aside into previous_runs/, not deleted) or use another checkpoint_dir"
        )
    return None


def _from_input(
    candidates: list[Path], own: str | None, model: ModelConfig | None, map_location: Any
) -> tuple[ResumeResult | None, list[tuple[Path, str]]]:
    """(the input checkpoint to continue, or None; the candidates skipped and why): this directory's run first, then
    the newest; one of another architecture is skipped."""
    heads, skipped, newer = read_heads(candidates)
    skipped += newer
    usable = []
    for h in heads:
        diff = architecture_diff(dict(h.model), model) if model is not None and h.model is not None else []
        if diff:
            skipped.append(
                (
                    h.path,
                    f"another architecture than the config ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''})",
                )
            )
            log.warning("skipping input checkpoint %s: another architecture (%s)", h.path, "; ".join(diff))
        else:
            usable.append(h)
    mine = [h for h in usable if own is not None and h.run_id == own]
    src, ckpt, more = pick(mine or usable, map_location)
    if ckpt is None and mine:  # none of this run's loads: the others, newest first
        src, ckpt, extra = pick([h for h in usable if h not in mine], map_location)
        more += extra
    skipped += more
    if ckpt is None or src is None:
        return None, skipped
    source_info = read_run_info(src.parent)
    run_id = ckpt.get("run_id") or (source_info.run_id if source_info else None) or own or new_run_id()
    run_info = source_info if source_info is not None and source_info.run_id == run_id else RunInfo.new(run_id=run_id)
    listed = ""
    if len(candidates) > 1:
        why = {p: reason for p, reason in skipped}
        rows = [f"{p.parent} ({'chosen' if p == src else why.get(p, 'older')})" for p in candidates]
        listed = f"; {len(candidates)} previous outputs found: " + ", ".join(rows)
    message = f"Resuming from {_describe(src, ckpt)}: a previous session's output attached as input{listed}"
    return ResumeResult(src, ckpt, message, run_id=run_id, run_info=run_info, imports=(src, *companions(src))), skipped


def _describe(path: Path, ckpt: Mapping[str, Any]) -> str:
    return (
        f"{path} (stage {ckpt['stage']}, epoch {ckpt['epoch']}, global step {ckpt['global_step']}, "
        f"saved {ckpt.get('timestamp', '?')})"
    )


def _skipped_text(skipped: list[tuple[Path, str]]) -> str:
    return "; skipped " + "; ".join(f"{p.name} ({reason})" for p, reason in skipped) if skipped else ""


def _used(result: ResumeResult) -> ResumeResult:
    log.info(result.message)
    return result


def find_for_config(cfg: Config, map_location: Any = "cpu") -> ResumeResult:
    """`find_resume_checkpoint` with the config's keys
    (checkpoint_dir, resume_from, auto_resume, resume_input, model)."""
    cfg = cfg.resolved()
    return find_resume_checkpoint(
        cfg.paths.checkpoint_dir,
        resume_from=cfg.paths.resume_from,
        auto_resume=cfg.run.auto_resume,
        resume_input=cfg.paths.resume_input,
        model=cfg.model,
        map_location=map_location,
    )


# ---------------------------------------------------------------- config changes on resume

_WARN_KEYS = {
    "learning_rate": "applied: the learning-rate schedule is rebuilt with the new peak",
    "seed": "data order and random numbers will differ from an uninterrupted run",
    "val_dungeons": "another validation split: the best metric so far is not comparable",
    "mirror_augment": "another training set from here on",
    "recombine_augment": "another training set from here on",
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
            "cannot change on resume: use the checkpoint's values, or start a new run "
            "(auto_resume=False: the run's files are set aside into previous_runs/ and kept; or another checkpoint_dir)"
        )
    now = current.to_dict()
    messages = []
    for section in sorted((set(saved) | set(now)) - {"model"}):
        old, new = dict(saved.get(section) or {}), now.get(section, {})
        for key in sorted(set(old) | set(new)):
            if key not in new:
                messages.append(
                    f"config key {section}.{key} = {old[key]!r} in the checkpoint is unknown to this version (ignored)"
                )
            elif key not in old:
                messages.append(f"config key {key!r} is new since the checkpoint: using {new[key]!r}")
            elif old[key] != new[key] and key in _WARN_KEYS:
                messages.append(
                    f"WARNING: config key {key!r} changed since the checkpoint: {old[key]!r} -> {new[key]!r} "
                    f"({_WARN_KEYS[key]})"
                )
            elif old[key] != new[key]:
                messages.append(
                    f"config key {key!r} changed since the checkpoint: {old[key]!r} -> {new[key]!r} "
                    "(allowed: it does not change the model)"
                )
    return messages
