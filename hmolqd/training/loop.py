"""Resumable training of all stages: `train(cfg)` is what the notebook, the CLI and the tests call.

Whatever stops a run (SIGKILL, SIGTERM, "Interrupt kernel", the time budget, CUDA OOM), a re-run resumes
from the newest valid checkpoint and ends with the same weights as a run that never stopped (bit-exact on
CPU): the data order is a permutation seeded by (seed, stage, epoch), and each checkpoint holds every RNG,
the optimizer, scheduler, scaler and EMA state, the position within the epoch and the running epoch loss.
The position is counted in rooms, so a changed `batch_size` continues the same epoch with the same rooms
left (the learning-rate schedule is rescaled to the steps left). The checkpoint directory is locked for
the whole run (`hmolqd.training.session`); every save is waited for before `train` returns or raises.
A re-run of a finished training says so and leaves the outputs as they are unless `rewrite_outputs`.
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

from hmolqd.checkpointing.fileformat import CheckpointError
from hmolqd.checkpointing.manager import CheckpointManager, SaveStats
from hmolqd.checkpointing.restore import load_training_state
from hmolqd.checkpointing.resume import check_resume_config
from hmolqd.checkpointing.rng import capture_rng_state, restore_rng_state
from hmolqd.config import STAGES, Config
from hmolqd.data import augment_doors, augment_mirror, find_data_dir, load_corpus, split_corpus
from hmolqd.data.dataset import check_val_dungeons, dungeon_names
from hmolqd.models.room_model import RoomModel
from hmolqd.training import outputs, validation
from hmolqd.training.history import save_history
from hmolqd.training.optim import LRSchedule, Optimization
from hmolqd.training.runtime import (
    SIGNAL_STOPS,
    Clock,
    Runtime,
    StopFlag,
    TrainingInterrupted,
    setup_runtime,
    teardown_runtime,
)
from hmolqd.training.session import checkpoint_report, open_checkpoints, release_all
from hmolqd.training.stages import (
    OBJECTIVES,
    StageData,
    start_diffusion_stage,
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
    epoch_samples: int = 0  # rooms of this rank's share of the current epoch already trained on (any batch size)
    epoch_batches: int = 0  # optimizer steps in the current epoch (the mean train loss divides by it)
    epoch_skipped: int = 0  # steps of the epoch the fp16 GradScaler skipped (inf/NaN gradients); always 0 without fp16

    def state(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_step": self.stage_step, "global_step": self.global_step,
                "epochs_done": self.epochs_done, "loss_sum": self.loss_sum.detach().cpu(),
                "epoch_samples": self.epoch_samples, "epoch_batches": self.epoch_batches,
                "epoch_skipped": self.epoch_skipped}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Progress:
        p = ckpt["progress"]
        # Files of hmolqd <= 0.1.0 count the position in batches of the batch size they were written with.
        position = int(ckpt.get("data_order", {}).get("position", 0))
        samples = p.get("epoch_samples", position * int(ckpt["config"]["train"]["batch_size"]))
        return cls(p["stage"], int(p["stage_step"]), int(p["global_step"]), int(p["epochs_done"]), p["loss_sum"], list(ckpt["history"]),
                   int(samples), int(p.get("epoch_batches", position)),
                   int(p.get("epoch_skipped", 0)))  # files written before the counter: none counted


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
    stop_files: list[Path] = field(default_factory=list)  # what the stop (or OOM) save wrote, for the message


@dataclass(frozen=True)
class TrainResult:
    finished: bool  # all stages ran to their last epoch
    stopped: str | None  # why it stopped early (signal name, "time budget"), None if finished
    checkpoint_dir: Path
    output_dir: Path
    resumed_from: Path | None
    history: list[dict[str, Any]]
    generator: RoomModel
    checkpoint_stats: SaveStats = field(default_factory=SaveStats)  # what saving cost in this call (bench/)
    already_finished: bool = False  # the resumed checkpoint was the end of training: nothing was trained


def epoch_permutation(seed: int, stage: str, epoch: int, n: int, rt: Runtime) -> torch.Tensor:
    """This rank's share of one epoch's data order: a pure function of (seed, stage, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_007 + epoch)
    perm = torch.randperm(n, generator=g)
    perm = perm[: n - n % rt.world_size][rt.rank :: rt.world_size]
    return perm.to(rt.device)  # one small copy per epoch, none per step


def batches_per_epoch(n: int, cfg: Config, rt: Runtime) -> int:
    return max(1, math.ceil((n // rt.world_size) / cfg.train.batch_size))


def rank_share(n: int, rt: Runtime) -> int:
    """Rooms of one epoch that this rank trains on (`epoch_permutation`'s length)."""
    return (n - n % rt.world_size) // rt.world_size


def stage_total_steps(p: Progress, n: int, epochs: int, cfg: Config, rt: Runtime) -> int:
    """The stage's optimizer steps: those done plus those left at the current batch size (the rest of this
    epoch's rooms, then whole epochs). With an unchanged batch size this is epochs * batches_per_epoch."""
    if p.epochs_done >= epochs:
        return p.stage_step
    left = math.ceil((rank_share(n, rt) - p.epoch_samples) / cfg.train.batch_size) + (epochs - p.epochs_done - 1) * batches_per_epoch(n, cfg, rt)
    return p.stage_step + max(0, left)


def checkpoint_state(run: Run, o: Optimization, schedule: LRSchedule) -> dict[str, Any]:
    p = run.progress
    order = {"seed": run.cfg.run.seed, "epoch": p.epochs_done, "position": p.epoch_batches, "samples": p.epoch_samples,
             "batch_size": run.cfg.train.batch_size}
    return {
        "stage": p.stage, "epoch": p.epochs_done, "global_step": p.global_step, "progress": p.state(),
        "models": {name: part.state_dict() for name, part in run.gen.parts().items()},
        "optimizer": o.optimizer.state_dict(), "scheduler": schedule.state_dict(), "scaler": o.scaler.state_dict(),
        "rng": capture_rng_state(), "data_order": order, "history": p.history, "elapsed": run.clock.elapsed, "config": run.cfg.to_dict(),
    }


_EPOCH_KEYS = {"vqvae": "vqvae_epochs", "diffusion": "num_epochs", "joint": "joint_epochs"}


def training_complete(cfg: Config, p: Progress) -> bool:
    """Nothing left to train: the current stage is at (or past) its last epoch and no later stage has epochs."""
    later = STAGES[STAGES.index(p.stage) + 1 :]
    return p.epochs_done >= stage_epochs(cfg, p.stage) and all(stage_epochs(cfg, s) == 0 for s in later)


def past_end_notes(cfg: Config, p: Progress) -> list[str]:
    """What a lowered (or raised, too late) epoch count means for a resumed run."""
    notes = []
    for stage in STAGES[: STAGES.index(p.stage)]:
        done = sum(1 for r in p.history if r.get("stage") == stage)
        if stage_epochs(cfg, stage) > done:
            notes.append(f"{_EPOCH_KEYS[stage]}={stage_epochs(cfg, stage)} but stage {stage} ended after {done} epochs and the run "
                         f"is already in stage {p.stage}: the extra {stage} epochs are not trained")
    end = stage_epochs(cfg, p.stage)
    if p.epochs_done > end or (p.epochs_done == end and p.epoch_samples > 0):
        notes.append(f"the run is already past the new end of stage {p.stage}: it trained {p.epochs_done} epochs"
                     f"{' and part of the next' if p.epoch_samples else ''}, and {_EPOCH_KEYS[p.stage]} is now {end}; "
                     f"nothing more is trained in stage {p.stage}")
    return notes


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
    log_every = cfg.run.logging.log_every
    set_train_mode(gen, stage)
    data = stage_data(gen, stage, run.data["train_rooms"], run.data["train_doors"], run.data["train_stairs"])
    val = stage_data(gen, stage, run.data["val_rooms"], run.data["val_doors"], run.data["val_stairs"])
    if stage == "diffusion" and p.stage_step == 0 and (run.resume is None or run.resume["stage"] != stage):
        start_diffusion_stage(gen, data, run.data["train_rooms"])
    n, epochs, bs = rank_share(len(data), rt), stage_epochs(cfg, stage), cfg.train.batch_size
    p.epoch_samples = min(p.epoch_samples, n)
    total = stage_total_steps(p, len(data), epochs, cfg, rt)
    # The schedule is rebuilt from the config on resume too: a changed learning_rate, epoch count or batch size applies.
    schedule = LRSchedule.from_config(cfg.train, total)
    o = Optimization.create(trainable(gen, stage), cfg.train, rt.device.type, rt.use_scaler)
    if run.resume is not None and run.resume["stage"] == stage:
        for note in load_training_state(run.resume, models={}, optimizer=o.optimizer, scaler=o.scaler):
            run.log(note)
        schedule = schedule.resumed(run.resume.get("scheduler"), p.stage_step)  # another step count keeps the lr
        restore_rng_state(run.resume["rng"])
        run.resume = None
    model = OBJECTIVES[stage](gen, cfg)
    model = DistributedDataParallel(model) if rt.distributed else model
    bar = tqdm(total=total, initial=p.stage_step, desc=stage, disable=not rt.is_main, dynamic_ncols=True)
    perm_epoch, perm = -1, None
    try:
        while True:
            lr = schedule(p.stage_step)
            if p.epoch_samples >= n:  # every room of the epoch is trained: validate, log it, save latest / epoch / best
                end_of_epoch(run, stage, val, lr, lambda: checkpoint_state(run, o, schedule))
            elif run.ckpt.step_save_due(stage, p.global_step):
                run.ckpt.save_step(checkpoint_state(run, o, schedule), skippable=True)
            if p.epochs_done >= epochs:
                bar.close()
                return None
            if p.epochs_done != perm_epoch:
                perm_epoch, perm = p.epochs_done, epoch_permutation(cfg.run.seed, stage, p.epochs_done, len(data), rt)
            idx = perm[p.epoch_samples : p.epoch_samples + bs]
            loss = o.step(model, data.x[idx], data.cond[idx], lr, rt.autocast)  # forward, backward, clip, step, zero_grad
            if stage != "vqvae":
                gen.update_ema(cfg.train.ema_decay)
            p.loss_sum = p.loss_sum.to(loss.device) + loss.detach().float()
            p.epoch_samples, p.epoch_batches = p.epoch_samples + len(idx), p.epoch_batches + 1
            p.epoch_skipped += o.last_step_skipped
            p.stage_step, p.global_step = p.stage_step + 1, p.global_step + 1
            bar.update()
            if p.stage_step % log_every == 0:  # the only host sync in the step
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            # Under DDP the agreement is a collective (a sync), so ranks compare notes only at log steps.
            if (not rt.distributed or p.stage_step % log_every == 0) and (reason := stop_requested(run)):
                run.stop_files = run.ckpt.save_step(checkpoint_state(run, o, schedule))
                bar.close()
                return reason
    except torch.OutOfMemoryError:
        o.optimizer.zero_grad(set_to_none=True)  # free the partial step; the weights are those of the last full step
        run.stop_files = run.ckpt.save_step(checkpoint_state(run, o, schedule))  # the position before the failed batch
        bar.close()
        raise


def end_of_epoch(run: Run, stage: str, val: StageData, lr: float, state: Callable[[], dict]) -> None:
    cfg, p = run.cfg, run.progress
    record: dict[str, Any] = {"stage": stage, "epoch": p.epochs_done + 1, "step": p.global_step, "lr": lr,
                              "train_loss": float(p.loss_sum) / max(1, p.epoch_batches),
                              "skipped_steps": p.epoch_skipped}  # fp16 GradScaler overflow skips (0 without fp16)
    if (p.epochs_done + 1) % cfg.run.logging.val_every == 0 or p.epochs_done + 1 == stage_epochs(cfg, stage):
        record.update(validation.validate(run.gen, stage, val, cfg, run.rt))
    if stage != "vqvae" and cfg.run.logging.sample_every and (p.epochs_done + 1) % cfg.run.logging.sample_every == 0:
        record.update(validation.sample_metrics(run.gen, run.data, cfg, stage, run.rt))
    p.history.append(record)
    p.epochs_done, p.epoch_samples, p.epoch_batches, p.epoch_skipped = p.epochs_done + 1, 0, 0, 0
    p.loss_sum = torch.zeros((), device=p.loss_sum.device)
    run.ckpt.save_epoch_end(state(), record, last=p.epochs_done == stage_epochs(cfg, stage))
    if run.rt.is_main:
        save_history(p.history, Path(cfg.paths.output_dir) / "training_history.json")
        run.log(validation.format_record(record))


def load_data(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> dict[str, torch.Tensor]:
    """The corpus split by whole dungeons, held on the training device for the whole run."""
    data_dir = find_data_dir(cfg.data.data_dir)
    train_c, val_c = split_corpus(load_corpus(data_dir), cfg.data.val_dungeons)
    aug = augment_mirror(train_c) if cfg.data.mirror_augment else train_c
    fit = augment_doors(aug, cfg.data.door_augment, cfg.run.seed)
    say(f"data: {data_dir}: {len(train_c)} training rooms ({len(aug)} with mirrors, {len(fit)} trained on), "
        f"{len(val_c)} held out ({', '.join(cfg.data.val_dungeons)})")
    dev = rt.device
    return {
        "train_rooms": fit.rooms.to(dev), "train_doors": fit.doors.to(dev), "train_stairs": fit.stairs.to(dev),
        "val_rooms": val_c.rooms.to(dev), "val_doors": val_c.doors.to(dev), "val_stairs": val_c.stairs.to(dev),
        # generation metrics compare against what the model trained on, mirrors included (as `evaluate` does)
        "ref_rooms": aug.rooms, "ref_doors": aug.doors, "ref_stairs": aug.stairs,
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: Config, *, log: Callable[[str], None] = print, stop: StopFlag | None = None, rewrite_outputs: bool = False) -> TrainResult:
    """Train (or resume) every stage, then write the outputs; see the module docstring.

    A re-run of a finished training trains nothing and leaves the outputs as they are, unless
    `rewrite_outputs` (or an output is missing: then the final outputs are written). A stop by a signal
    raises `TrainingInterrupted` after its checkpoint is written; the time budget returns (finished=False).
    """
    cfg = cfg.resolved()
    # A missing or empty data_dir, or a held-out dungeon it lacks, is reported before any other start-up line.
    check_val_dungeons(cfg.data.val_dungeons, dungeon_names(find_data_dir(cfg.data.data_dir)))
    rt = setup_runtime(cfg.run.device, cfg.train.use_amp)
    say = log if rt.is_main else (lambda msg: None)
    stop = stop if stop is not None else StopFlag()
    locks, manager = [], None
    try:
        locks, found = open_checkpoints(cfg, rt, say)  # checked and locked before any training
        say(found.message)
        ckpt = found.checkpoint
        for msg in check_resume_config(ckpt["config"], cfg) if ckpt else []:
            say(msg)
        say(rt.describe())
        seed_everything(cfg.run.seed + rt.rank)  # each DDP rank draws its own noise
        data = load_data(cfg, rt, say)
        gen = RoomModel.from_config(cfg).to(rt.device)
        manager = CheckpointManager.from_config(cfg, is_main=rt.is_main, run_id=found.run_id)
        run = Run(cfg, rt, gen, data, manager, Clock(), stop, say, Progress(), resume=ckpt)
        if ckpt:
            load_training_state(ckpt, models=gen.parts())
            run.progress, run.clock = Progress.from_checkpoint(ckpt), Clock(float(ckpt["elapsed"]))
            manager.restore(ckpt)
            for note in past_end_notes(cfg, run.progress):
                say(note)
        p = run.progress
        done_before = ckpt is not None and training_complete(cfg, p)
        if done_before:
            say(f"training already finished (stage {p.stage}, epoch {p.epochs_done}): nothing to train")
        elif rt.is_main and (note := outputs.set_aside_final_outputs(cfg.paths.output_dir, found.run_id)):
            say(note)
        final_outputs = [Path(cfg.paths.output_dir) / name for name in (outputs.FINAL_MODEL, outputs.ZIP_NAME)]
        write_outputs = rt.is_main and (not done_before or rewrite_outputs or not all(f.is_file() for f in final_outputs))
        if write_outputs:
            outputs.write_config(cfg, cfg.paths.output_dir)
        session = Clock()
        # A budget already used up trains nothing (not one step per re-run); only a raised max_runtime_hours goes on.
        budget = cfg.run.max_runtime_hours
        spent = ckpt is not None and not done_before and budget > 0 and run.clock.elapsed_before >= budget * 3600.0
        reason = None if done_before else "time budget" if spent else train_stages(run)
        manager.flush()  # the last save is on disk (its write error raised here) before anything says so
        if not done_before:
            say(checkpoint_report(manager, session.elapsed))
        if write_outputs:
            if done_before and not rewrite_outputs:
                say(f"writing the final outputs that are missing from {cfg.paths.output_dir}")
            outputs.finish(run.gen, cfg, p.history, final=reason is None, log=say)
        elif done_before:
            say(f"outputs in {cfg.paths.output_dir} left as they are (rewrite_outputs=True, or --rewrite-outputs, writes them again)")
        result = TrainResult(reason is None, reason, Path(cfg.paths.checkpoint_dir), Path(cfg.paths.output_dir), found.path, p.history,
                             gen, manager.stats, done_before)
        saved = " and ".join(f.name for f in run.stop_files) or "nothing new (the last save holds this state)"
        where = f"at {p.stage} epoch {p.epochs_done + 1}, global step {p.global_step}"
        if reason == "time budget":
            hours = run.clock.elapsed / 3600
            did = "nothing trained: the budget was used up before this run" if spent else f"saved {saved} in {cfg.paths.checkpoint_dir}"
            say(f"stopped (time budget: {hours:.3g} h trained of max_runtime_hours={budget:g}) {where}; "
                f"{did} - raise max_runtime_hours (0 = no limit) and re-run to go on")
        elif reason:
            message = f"stopped ({reason}) {where}; saved {saved} in {cfg.paths.checkpoint_dir} - re-run to resume"
            say(message)
            if reason in SIGNAL_STOPS:
                raise TrainingInterrupted(message, result)
        return result
    finally:
        try:
            _wait_for_last_save(manager, say)
        finally:
            release_all(locks)
            teardown_runtime(rt)


def _wait_for_last_save(manager: CheckpointManager | None, say: Callable[[str], None]) -> None:
    """On the way out of an exception (OOM, a second Ctrl-C, a crash): the save in flight still completes."""
    if manager is None:
        return
    try:
        manager.flush()
    except CheckpointError as err:  # the exception already on its way out is the one reported; this one is said here
        say(f"the last checkpoint save failed too: {err}")


def train_stages(run: Run) -> str | None:
    """Run the stages from the resumed one on; returns why training stopped early, or None when all are done."""
    p = run.progress
    with run.stop.installed():
        for stage in STAGES[STAGES.index(p.stage):]:
            if stage != p.stage:  # entering a new stage: its counters start at zero
                p.stage, p.stage_step, p.epochs_done, p.loss_sum = stage, 0, 0, torch.zeros(())
                p.epoch_samples, p.epoch_batches, p.epoch_skipped = 0, 0, 0
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
