"""Resumable training of all stages: `train(cfg)` is what the notebook, the CLI and the tests call.

Whatever stops a run (SIGKILL, SIGTERM, "Interrupt kernel", the time budget, CUDA OOM), a re-run resumes
from the newest valid checkpoint and ends with the same weights as a run that never stopped (bit-exact on
CPU): the data order is a permutation seeded by (seed, stage, epoch), and each checkpoint holds every RNG,
the optimizer, scheduler, scaler and EMA state, the position within the epoch and the running epoch loss.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.checkpointing.restore import load_training_state
from hmolqd.checkpointing.resume import check_resume_config, find_resume_checkpoint
from hmolqd.checkpointing.rng import capture_rng_state, restore_rng_state
from hmolqd.config import STAGES, Config
from hmolqd.data import augment_mirror, find_data_dir, load_corpus, split_corpus
from hmolqd.models.room_model import RoomModel
from hmolqd.training import outputs, validation
from hmolqd.training.history import save_history
from hmolqd.training.optim import LRSchedule, Optimization
from hmolqd.training.runtime import (
    Clock,
    Runtime,
    StopFlag,
    setup_runtime,
    teardown_runtime,
)
from hmolqd.training.stages import (
    OBJECTIVES,
    StageData,
    set_train_mode,
    stage_data,
    stage_epochs,
    trainable,
)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint and restored on resume."""

    stage: str = STAGES[0]
    stage_step: int = 0  # optimizer steps done in this stage
    global_step: int = 0  # optimizer steps done in all stages
    epochs_done: int = 0  # epochs of this stage whose validation and epoch checkpoint are done
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # running train loss of the epoch
    history: list[dict[str, Any]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_step": self.stage_step, "global_step": self.global_step,
                "epochs_done": self.epochs_done, "loss_sum": self.loss_sum.detach().cpu()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Progress:
        p = ckpt["progress"]
        return cls(p["stage"], int(p["stage_step"]), int(p["global_step"]), int(p["epochs_done"]), p["loss_sum"], list(ckpt["history"]))


@dataclass
class Run:
    """What one call of `train` shares between its stages."""

    cfg: Config
    rt: Runtime
    gen: RoomModel
    data: dict[str, Any]  # train/val rooms, doors, stairs on the training device
    ckpt: CheckpointManager
    clock: Clock
    stop: StopFlag
    log: Callable[[str], None]
    progress: Progress
    resume: dict[str, Any] | None = None  # the checkpoint being resumed; its stage consumes it


@dataclass(frozen=True)
class TrainResult:
    finished: bool  # all stages ran to their last epoch
    stopped: str | None  # why it stopped early (signal name, "time budget"), None if finished
    checkpoint_dir: Path
    output_dir: Path
    resumed_from: Path | None
    history: list[dict[str, Any]]
    generator: RoomModel


def epoch_permutation(seed: int, stage: str, epoch: int, n: int, rt: Runtime) -> torch.Tensor:
    """This rank's share of one epoch's data order: a pure function of (seed, stage, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_007 + epoch)
    perm = torch.randperm(n, generator=g)
    perm = perm[: n - n % rt.world_size][rt.rank :: rt.world_size]
    return perm.to(rt.device)  # one small copy per epoch, none per step


def batches_per_epoch(n: int, cfg: Config, rt: Runtime) -> int:
    return max(1, math.ceil((n // rt.world_size) / cfg.train.batch_size))


def checkpoint_state(run: Run, o: Optimization, schedule: LRSchedule, pos: int) -> dict[str, Any]:
    p = run.progress
    return {
        "stage": p.stage, "epoch": p.epochs_done, "global_step": p.global_step, "progress": p.state(),
        "models": {name: part.state_dict() for name, part in run.gen.parts().items()},
        "optimizer": o.optimizer.state_dict(), "scheduler": schedule.state_dict(), "scaler": o.scaler.state_dict(),
        "rng": capture_rng_state(), "data_order": {"seed": run.cfg.run.seed, "epoch": p.epochs_done, "position": pos},
        "history": p.history, "elapsed": run.clock.elapsed, "config": run.cfg.to_dict(),
    }


def stop_requested(run: Run) -> str | None:
    """Signals and the time budget, agreed across DDP ranks so that all stop at the same step."""
    reason = run.stop.reason or ("time budget" if run.clock.over_budget(run.cfg.run.max_runtime_hours) else None)
    if run.rt.distributed:
        flag = torch.tensor(float(reason is not None), device=run.rt.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        reason = reason or ("another rank stopped" if flag.item() > 0 else None)
    return reason


def run_stage(run: Run, stage: str) -> str | None:
    """Train one stage to its last epoch; returns why it stopped early, or None when the stage is done."""
    cfg, rt, gen, p = run.cfg, run.rt, run.gen, run.progress
    set_train_mode(gen, stage)
    data = stage_data(gen, stage, run.data["train_rooms"], run.data["train_doors"], run.data["train_stairs"])
    val = stage_data(gen, stage, run.data["val_rooms"], run.data["val_doors"], run.data["val_stairs"])
    if stage == "diffusion" and p.stage_step == 0 and (run.resume is None or run.resume["stage"] != stage):
        gen.diffusion.set_latent_scale(data.x)  # fresh stage: unit-variance latents (Rombach et al. 2022)
        gen.reset_ema()
    per_epoch = batches_per_epoch(len(data), cfg, rt)
    total = stage_epochs(cfg, stage) * per_epoch
    # The schedule is rebuilt from the config on resume too: a changed learning_rate or epoch count applies.
    schedule = LRSchedule.from_config(cfg.train, total)
    o = Optimization.create(trainable(gen, stage), cfg.train, rt.device.type, rt.use_scaler)
    if run.resume is not None and run.resume["stage"] == stage:
        for note in load_training_state(run.resume, models={}, optimizer=o.optimizer, scaler=o.scaler):
            run.log(note)
        restore_rng_state(run.resume["rng"])
        run.resume = None
    model = OBJECTIVES[stage](gen, cfg)
    model = DistributedDataParallel(model) if rt.distributed else model
    bar = tqdm(total=total, initial=p.stage_step, desc=stage, disable=not rt.is_main, dynamic_ncols=True)
    perm_epoch, perm = -1, None
    try:
        while True:
            epoch, pos = divmod(p.stage_step, per_epoch)
            lr = schedule(p.stage_step)
            if epoch > p.epochs_done:  # an epoch just ended: validate, log it, save latest / epoch / best
                end_of_epoch(run, stage, val, lr, per_epoch, lambda: checkpoint_state(run, o, schedule, 0))
            elif run.ckpt.step_save_due(stage, p.global_step):
                run.ckpt.save_step(checkpoint_state(run, o, schedule, pos))
            if p.stage_step >= total:
                bar.close()
                return None
            if epoch != perm_epoch:
                perm_epoch, perm = epoch, epoch_permutation(cfg.run.seed, stage, epoch, len(data), rt)
            idx = perm[pos * cfg.train.batch_size : (pos + 1) * cfg.train.batch_size]
            loss = o.step(model, data.x[idx], data.cond[idx], lr, rt.autocast)  # forward, backward, clip, step, zero_grad
            if stage != "vqvae":
                gen.update_ema(cfg.train.ema_decay)
            p.loss_sum = p.loss_sum.to(loss.device) + loss.detach().float()
            p.stage_step, p.global_step = p.stage_step + 1, p.global_step + 1
            bar.update()
            if p.stage_step % cfg.run.log_every == 0:  # the only host sync in the step
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            # Under DDP the agreement is a collective (a sync), so ranks compare notes only at log steps.
            if (not rt.distributed or p.stage_step % cfg.run.log_every == 0) and (reason := stop_requested(run)):
                run.ckpt.save_step(checkpoint_state(run, o, schedule, pos + 1))
                bar.close()
                return reason
    except torch.OutOfMemoryError:
        o.optimizer.zero_grad(set_to_none=True)  # free the partial step; the weights are those of the last full step
        run.ckpt.save_step(checkpoint_state(run, o, schedule, pos))
        bar.close()
        raise


def end_of_epoch(run: Run, stage: str, val: StageData, lr: float, per_epoch: int, state: Callable[[], dict]) -> None:
    cfg, p = run.cfg, run.progress
    record: dict[str, Any] = {"stage": stage, "epoch": p.epochs_done + 1, "step": p.global_step, "lr": lr,
                              "train_loss": float(p.loss_sum) / per_epoch}
    if (p.epochs_done + 1) % cfg.run.val_every == 0 or p.epochs_done + 1 == stage_epochs(cfg, stage):
        record.update(validation.validate(run.gen, stage, val, cfg, run.rt))
    if stage != "vqvae" and cfg.run.sample_every and (p.epochs_done + 1) % cfg.run.sample_every == 0:
        record.update(validation.sample_metrics(run.gen, run.data, cfg, stage, run.rt))
    p.history.append(record)
    p.epochs_done += 1
    p.loss_sum = torch.zeros((), device=p.loss_sum.device)
    run.ckpt.save_epoch_end(state(), record)
    if run.rt.is_main:
        save_history(p.history, Path(cfg.paths.output_dir) / "training_history.json")
        run.log(validation.format_record(record))


def load_data(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> dict[str, torch.Tensor]:
    """The corpus split by whole dungeons, held on the training device for the whole run."""
    data_dir = find_data_dir(cfg.data.data_dir)
    train_c, val_c = split_corpus(load_corpus(data_dir), cfg.data.val_dungeons)
    aug = augment_mirror(train_c) if cfg.data.mirror_augment else train_c
    say(f"data: {data_dir}: {len(train_c)} training rooms ({len(aug)} with mirrors), {len(val_c)} held out ({', '.join(cfg.data.val_dungeons)})")
    dev = rt.device
    return {
        "train_rooms": aug.rooms.to(dev), "train_doors": aug.doors.to(dev), "train_stairs": aug.stairs.to(dev),
        "val_rooms": val_c.rooms.to(dev), "val_doors": val_c.doors.to(dev), "val_stairs": val_c.stairs.to(dev),
        # generation metrics compare against what the model trained on, mirrors included (as `evaluate` does)
        "ref_rooms": aug.rooms, "ref_doors": aug.doors, "ref_stairs": aug.stairs,
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: Config, *, log: Callable[[str], None] = print, stop: StopFlag | None = None) -> TrainResult:
    """Train (or resume) every stage, then write the outputs; see the module docstring."""
    cfg = cfg.resolved()
    rt = setup_runtime(cfg.run.device, cfg.train.use_amp)
    say = log if rt.is_main else (lambda msg: None)
    stop = stop if stop is not None else StopFlag()
    try:
        found = find_resume_checkpoint(cfg.paths.checkpoint_dir, resume_from=cfg.paths.resume_from, auto_resume=cfg.run.auto_resume, is_main=rt.is_main)
        say(found.message)
        ckpt = found.checkpoint
        for msg in check_resume_config(ckpt["config"], cfg) if ckpt else []:
            say(msg)
        say(rt.describe())
        seed_everything(cfg.run.seed + rt.rank)  # each DDP rank draws its own noise
        data = load_data(cfg, rt, say)
        gen = RoomModel.from_config(cfg).to(rt.device)
        manager = CheckpointManager.from_config(cfg, is_main=rt.is_main)
        run = Run(cfg, rt, gen, data, manager, Clock(), stop, say, Progress(), resume=ckpt)
        if ckpt:
            load_training_state(ckpt, models=gen.parts())
            run.progress, run.clock = Progress.from_checkpoint(ckpt), Clock(float(ckpt["elapsed"]))
            manager.restore(ckpt)
        if rt.is_main:
            outputs.write_config(cfg, cfg.paths.output_dir)
        session = Clock()
        reason = train_stages(run)
        st = manager.stats
        say(f"checkpointing: {st.saves} saves, {st.files} files of {st.last_size / 2**20:.1f} MiB, {st.seconds:.1f} s = "
            f"{100 * st.seconds / max(session.elapsed, 1e-9):.1f} % of this session's {session.elapsed:.0f} s")
        if rt.is_main:
            outputs.finish(run.gen, cfg, run.progress.history, final=reason is None, log=say)
        if reason:
            say(f"stopped ({reason}) at {run.progress.stage} step {run.progress.stage_step}; checkpoint_latest.pt saved - re-run to resume")
        return TrainResult(reason is None, reason, Path(cfg.paths.checkpoint_dir), Path(cfg.paths.output_dir), found.path, run.progress.history, gen)
    finally:
        teardown_runtime(rt)


def train_stages(run: Run) -> str | None:
    """Run the stages from the resumed one on; returns why training stopped early, or None when all are done."""
    p = run.progress
    with run.stop.installed():
        for stage in STAGES[STAGES.index(p.stage):]:
            if stage != p.stage:  # entering a new stage: its counters start at zero
                p.stage, p.stage_step, p.epochs_done, p.loss_sum = stage, 0, 0, torch.zeros(())
            if stage_epochs(run.cfg, stage) == 0 and p.stage_step == 0:
                continue
            try:
                reason = run_stage(run, stage)
            except torch.OutOfMemoryError as err:
                raise RuntimeError(
                    f"CUDA out of memory in stage {stage!r} at step {p.stage_step} (batch_size={run.cfg.train.batch_size}, "
                    f"use_amp={run.cfg.train.use_amp}); checkpoint_latest.pt was saved. Lower 'batch_size' (or set 'use_amp': True) and re-run to resume."
                ) from err
            if reason:
                return reason
    return None
