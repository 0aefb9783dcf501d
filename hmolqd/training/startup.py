"""Starting one call of `train`: the data, the model, the checkpoint manager and, where a checkpoint was found,
the state resumed from it, all held in a `Run` that the stages share (`hmolqd.training.loop`).

The resumed stage's optimizer, scaler, schedule and RNG streams come back when that stage starts
(`loop.restore_stage_state`); here the weights, counters, clock and best metric come back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmolqd.checkpointing.export import load_tokenizer
from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.checkpointing.restore import load_training_state
from hmolqd.checkpointing.resume import ResumeResult, check_resume_config
from hmolqd.config import Config
from hmolqd.data import augment_doors, augment_mirror, augment_recombine, find_data_dir, load_corpus, split_corpus
from hmolqd.models.room_model import RoomModel
from hmolqd.training.progress import Progress, past_end_notes
from hmolqd.training.runtime import Clock, Runtime, StopFlag
from hmolqd.training.stages import RoomSet, RunData


@dataclass(kw_only=True)
class Run:
    """What one call of `train` shares between its stages."""

    cfg: Config
    rt: Runtime
    gen: RoomModel
    data: RunData
    ckpt: CheckpointManager
    clock: Clock
    stop: StopFlag
    log: Callable[[str], None]
    progress: Progress
    resume: dict[str, Any] | None = None  # the checkpoint being resumed; its stage consumes it
    stop_files: list[Path] = field(default_factory=list)  # what the stop (or OOM) save wrote, for the message


def start_or_resume(cfg: Config, rt: Runtime, found: ResumeResult, stop: StopFlag, say: Callable[[str], None]) -> Run:
    """The run's data, model and checkpoint manager; resumed from `found`'s checkpoint where there is one."""
    say(found.message)
    ckpt = found.checkpoint
    for msg in check_resume_config(ckpt["config"], cfg) if ckpt else []:
        say(msg)
    say(rt.describe())
    seed_everything(cfg.run.seed + rt.rank)  # each DDP rank draws its own noise
    data = load_data(cfg, rt, say)
    gen = RoomModel.from_config(cfg)
    if not ckpt and cfg.paths.vqvae_from:
        load_tokenizer(gen, cfg.paths.vqvae_from)
        say(f"VQ-VAE from {cfg.paths.vqvae_from} ({cfg.train.vqvae_epochs} more VQ-VAE epochs)")
    gen = gen.to(rt.device)
    manager = CheckpointManager.from_config(cfg, is_main=rt.is_main, run_id=found.run_id)
    run = Run(
        cfg=cfg,
        rt=rt,
        gen=gen,
        data=data,
        ckpt=manager,
        clock=Clock(),
        stop=stop,
        log=say,
        progress=Progress(),
        resume=ckpt,
    )
    if ckpt:
        load_training_state(ckpt, models=gen.parts())
        run.progress, run.clock = Progress.from_checkpoint(ckpt), Clock(float(ckpt["elapsed"]))
        manager.restore(ckpt)
        for note in past_end_notes(cfg, run.progress):
            say(note)
    return run


def load_data(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> RunData:
    """The corpus split by whole dungeons, held on the training device for the whole run."""
    data_dir = find_data_dir(cfg.data.data_dir)
    train_c, val_c = split_corpus(load_corpus(data_dir), cfg.data.val_dungeons)
    aug = augment_mirror(train_c) if cfg.data.mirror_augment else train_c
    mixed = augment_recombine(aug, cfg.data.recombine_augment, cfg.run.seed)
    fit = augment_doors(mixed, cfg.data.door_augment, cfg.run.seed)
    made = f", {len(mixed) - len(aug)} recombined" if len(mixed) > len(aug) else ""
    say(
        f"data: {data_dir}: {len(train_c)} training rooms ({len(aug)} with mirrors{made}, {len(fit)} trained on), "
        f"{len(val_c)} held out ({', '.join(cfg.data.val_dungeons)})"
    )
    dev = rt.device
    return RunData(
        train=RoomSet(rooms=fit.rooms.to(dev), doors=fit.doors.to(dev), stairs=fit.stairs.to(dev)),
        val=RoomSet(rooms=val_c.rooms.to(dev), doors=val_c.doors.to(dev), stairs=val_c.stairs.to(dev)),
        # generation metrics compare against what the model trained on, mirrors included (as `evaluate` does)
        ref=RoomSet(rooms=aug.rooms, doors=aug.doors, stairs=aug.stairs),
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
