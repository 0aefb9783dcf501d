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

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hmolqd.checkpointing.fileformat import CheckpointError
from hmolqd.checkpointing.manager import CheckpointManager, SaveStats
from hmolqd.checkpointing.restore import load_training_state
from hmolqd.checkpointing.rng import capture_rng_state, restore_rng_state
from hmolqd.config import Config, Stage, stage_names, stages
from hmolqd.data import find_data_dir
from hmolqd.data.dataset import check_val_dungeons, dungeon_names
from hmolqd.models.room_model import RoomModel
from hmolqd.training import outputs, validation
from hmolqd.training.history import save_history
from hmolqd.training.optim import LRSchedule, Optimization
from hmolqd.training.progress import (
    epoch_permutation,
    rank_share,
    stage_total_steps,
    training_complete,
)
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
    StageData,
    objective,
    set_train_mode,
    stage_data,
    stage_epochs,
    start_diffusion_stage,
    trainable,
)
from hmolqd.training.startup import Run, start_or_resume


@dataclass(frozen=True, kw_only=True)
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


def checkpoint_state(run: Run, o: Optimization, schedule: LRSchedule) -> dict[str, Any]:
    p = run.progress
    order = {
        "seed": run.cfg.run.seed,
        "epoch": p.epochs_done,
        "position": p.epoch_batches,
        "samples": p.epoch_samples,
        "batch_size": run.cfg.train.batch_size,
    }
    return {
        "stage": p.stage,
        "epoch": p.epochs_done,
        "global_step": p.global_step,
        "progress": p.state(),
        "models": {name: part.state_dict() for name, part in run.gen.parts().items()},
        "optimizer": o.optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": o.scaler.state_dict(),
        "rng": capture_rng_state(),
        "data_order": order,
        "history": p.history,
        "elapsed": run.clock.elapsed,
        "config": run.cfg.to_dict(),
    }


def stop_requested(run: Run) -> str | None:
    """Signals and the time budget, agreed across DDP ranks so that all stop at the same step."""
    reason = run.stop.reason or ("time budget" if run.clock.over_budget(run.cfg.run.max_runtime_hours) else None)
    if run.rt.distributed:
        flag = torch.tensor(float(reason is not None), device=run.rt.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        reason = reason or ("another rank stopped" if flag.item() > 0 else None)
    return reason


def bar_wanted(stream: IO[str] | None = None) -> bool:
    """A progress bar only where it is redrawn in place: a terminal, or a notebook (its widget). Written to a file
    (a redirected log) every redraw would be kept, so there the per-epoch lines that `train` logs are all."""
    stream = sys.stderr if stream is None else stream  # where tqdm draws
    return "ipykernel" in sys.modules or bool(getattr(stream, "isatty", lambda: False)())


def run_stage(run: Run, stage: Stage) -> str | None:
    """Train one stage to its last epoch; returns why it stopped early, or None when the stage is done."""
    cfg, rt, p = run.cfg, run.rt, run.progress
    log_every = cfg.run.logging.log_every
    data, val = enter_stage_data(run, stage)
    n, epochs, bs = rank_share(len(data), rt), stage_epochs(cfg, stage), cfg.train.batch_size
    p.fit_epoch(n)
    total = stage_total_steps(p, len(data), epochs, cfg, rt)
    # The schedule is rebuilt from the config on resume too: a changed learning_rate, epoch count or batch size applies.
    schedule = LRSchedule.from_config(cfg.train, total)
    o = Optimization.create(trainable(run.gen, stage), cfg.train, rt.device.type, rt.use_scaler)
    schedule = restore_stage_state(run, stage, o, schedule)
    model = wrap_for_ddp(objective(run.gen, stage, cfg), rt)

    def state() -> dict[str, Any]:
        return checkpoint_state(run, o, schedule)

    bar = tqdm(
        total=total,
        initial=p.stage_step,
        desc=stage.name,
        disable=not (rt.is_main and bar_wanted()),
        dynamic_ncols=True,
    )
    perm_epoch, perm = -1, None
    try:
        while True:
            lr = schedule(p.stage_step)
            if p.epoch_samples >= n:  # every room of the epoch is trained: validate, log it, save latest / epoch / best
                end_of_epoch(run, stage, val, lr, state)
            elif run.ckpt.step_save_due(stage.name, p.global_step):
                run.ckpt.save_step(state(), skippable=True)
            if p.epochs_done >= epochs:
                return None
            if p.epochs_done != perm_epoch:
                perm_epoch = p.epochs_done
                perm = epoch_permutation(cfg.run.seed, stage.name, p.epochs_done, len(data), rt)
            idx = perm[p.epoch_samples : p.epoch_samples + bs]
            # forward, backward, clip, step, zero_grad
            loss = o.step(model, data.x[idx], data.cond[idx], lr, rt.autocast)
            if stage.trains_denoiser:
                run.gen.update_ema(cfg.train.ema_decay)
            p.advance(len(idx), loss, o.skipped)
            bar.update()
            # The loss is read to the host only where a bar shows it, once per log_every steps: no other step syncs.
            if not bar.disable and p.stage_step % log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            # Under DDP the agreement is a collective (a sync), so ranks compare notes only at log steps.
            if (not rt.distributed or p.stage_step % log_every == 0) and (reason := stop_requested(run)):
                run.stop_files = run.ckpt.save_step(state())
                return reason
    except torch.OutOfMemoryError:
        save_after_out_of_memory(run, o, state)
        raise
    finally:
        bar.close()


def enter_stage_data(run: Run, stage: Stage) -> tuple[StageData, StageData]:
    """Train mode for the stage's parts and its (train, val) data; a fresh denoiser stage sets its latent scale."""
    gen, p, train, held_out = run.gen, run.progress, run.data.train, run.data.val
    set_train_mode(gen, stage)
    data = stage_data(gen, stage, train.rooms, train.doors, train.stairs)
    val = stage_data(gen, stage, held_out.rooms, held_out.doors, held_out.stairs)
    if stage.starts_denoiser and p.stage_step == 0 and (run.resume is None or run.resume["stage"] != stage.name):
        start_diffusion_stage(gen, data, train.rooms)
    return data, val


def restore_stage_state(run: Run, stage: Stage, o: Optimization, schedule: LRSchedule) -> LRSchedule:
    """The resumed stage gets its optimizer, scaler, schedule position and RNG streams back (once)."""
    if run.resume is None or run.resume["stage"] != stage.name:
        return schedule
    for note in load_training_state(run.resume, models={}, optimizer=o.optimizer, scaler=o.scaler):
        run.log(note)
    schedule = schedule.resumed(run.resume.get("scheduler"), run.progress.stage_step)  # another step count keeps the lr
    restore_rng_state(run.resume["rng"])
    run.resume = None
    return schedule


def wrap_for_ddp(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    return DistributedDataParallel(model) if rt.distributed else model


def save_after_out_of_memory(run: Run, o: Optimization, state: Callable[[], dict[str, Any]]) -> None:
    o.optimizer.zero_grad(set_to_none=True)  # free the partial step; the weights are those of the last full step
    run.stop_files = run.ckpt.save_step(state())  # the position before the failed batch


def end_of_epoch(run: Run, stage: Stage, val: StageData, lr: float, state: Callable[[], dict]) -> None:
    cfg, p = run.cfg, run.progress
    record: dict[str, Any] = {
        "stage": stage.name,
        "epoch": p.epochs_done + 1,
        "step": p.global_step,
        "lr": lr,
        "train_loss": float(p.loss_sum) / max(1, p.epoch_batches),
        "skipped_steps": p.skipped_steps(),
    }  # fp16 GradScaler overflow skips (0 without fp16)
    if (p.epochs_done + 1) % cfg.run.logging.val_every == 0 or p.epochs_done + 1 == stage_epochs(cfg, stage):
        record.update(validation.validate(run.gen, stage, val, cfg, run.rt))
    if (
        stage.trains_denoiser
        and cfg.run.logging.sample_every
        and (p.epochs_done + 1) % cfg.run.logging.sample_every == 0
    ):
        record.update(validation.sample_metrics(run.gen, run.data, cfg, stage, run.rt))
    p.finish_epoch(record)
    run.ckpt.save_epoch_end(state(), record, last=p.epochs_done == stage_epochs(cfg, stage))
    if run.rt.is_main:
        save_history(p.history, Path(cfg.paths.output_dir) / "training_history.json")
        run.log(validation.format_record(record))


def train(
    cfg: Config, *, log: Callable[[str], None] = print, stop: StopFlag | None = None, rewrite_outputs: bool = False
) -> TrainResult:
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
    locks, run = [], None
    try:
        locks, found = open_checkpoints(cfg, rt, say)  # checked and locked before any training
        run = start_or_resume(cfg, rt, found, stop if stop is not None else StopFlag(), say)
        p = run.progress
        done_before = found.checkpoint is not None and training_complete(cfg, p)
        if done_before:
            say(f"training already finished (stage {p.stage}, epoch {p.epochs_done}): nothing to train")
        elif rt.is_main and (note := outputs.set_aside_final_outputs(cfg.paths.output_dir, found.run_id)):
            say(note)
        write = rt.is_main and (not done_before or rewrite_outputs or not final_outputs_present(cfg))
        if write:
            outputs.write_config(cfg, cfg.paths.output_dir)
        session = Clock()
        # A budget already used up trains nothing (not one step per re-run); only a raised max_runtime_hours goes on.
        budget = cfg.run.max_runtime_hours
        resumed = found.checkpoint is not None and not done_before
        spent = resumed and budget > 0 and run.clock.elapsed_before >= budget * 3600.0
        reason = None if done_before else "time budget" if spent else train_stages(run)
        run.ckpt.flush()  # the last save is on disk (its write error raised here) before anything says so
        if not done_before:
            say(checkpoint_report(run.ckpt, session.elapsed))
        write_outputs(run, write=write, done_before=done_before, rewrite=rewrite_outputs, final=reason is None)
        result = TrainResult(
            finished=reason is None,
            stopped=reason,
            checkpoint_dir=Path(cfg.paths.checkpoint_dir),
            output_dir=Path(cfg.paths.output_dir),
            resumed_from=found.path,
            history=p.history,
            generator=run.gen,
            checkpoint_stats=run.ckpt.stats,
            already_finished=done_before,
        )
        report_stop(run, result, budget_spent=spent)  # raises TrainingInterrupted after a signal
        return result
    finally:
        try:
            _wait_for_last_save(run.ckpt if run is not None else None, say)
        finally:
            release_all(locks)
            teardown_runtime(rt)


def final_outputs_present(cfg: Config) -> bool:
    return all((Path(cfg.paths.output_dir) / name).is_file() for name in (outputs.FINAL_MODEL, outputs.ZIP_NAME))


def write_outputs(run: Run, *, write: bool, done_before: bool, rewrite: bool, final: bool) -> None:
    """Curves (and after the last stage the final model, samples and zip), or why a finished run leaves them."""
    out = run.cfg.paths.output_dir
    if write:
        if done_before and not rewrite:
            run.log(f"writing the final outputs that are missing from {out}")
        only_missing = done_before and not rewrite  # a finished run writes what is missing, nothing more
        outputs.finish(run.gen, run.cfg, run.progress.history, final=final, log=run.log, only_missing=only_missing)
    elif done_before:
        run.log(f"outputs in {out} left as they are (rewrite_outputs=True, or --rewrite-outputs, writes them again)")


def report_stop(run: Run, result: TrainResult, *, budget_spent: bool) -> None:
    """Say why training stopped early and what was saved; a signal stop raises `TrainingInterrupted`."""
    cfg, p, reason = run.cfg, run.progress, result.stopped
    saved = " and ".join(f.name for f in run.stop_files) or "nothing new (the last save holds this state)"
    where = f"at {p.stage} epoch {p.epochs_done + 1}, global step {p.global_step}"
    if reason == "time budget":
        hours = run.clock.elapsed / 3600
        did = (
            "nothing trained: the budget was used up before this run"
            if budget_spent
            else f"saved {saved} in {cfg.paths.checkpoint_dir}"
        )
        run.log(
            f"stopped (time budget: {hours:.3g} h trained of max_runtime_hours={cfg.run.max_runtime_hours:g}) "
            f"{where}; {did} - raise max_runtime_hours (0 = no limit) and re-run to go on"
        )
    elif reason:
        message = f"stopped ({reason}) {where}; saved {saved} in {cfg.paths.checkpoint_dir} - re-run to resume"
        run.log(message)
        if reason in SIGNAL_STOPS:
            raise TrainingInterrupted(message, result)


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
        for stage in stages()[stage_names().index(p.stage) :]:
            if stage.name != p.stage:  # entering a new stage: its counters start at zero
                p.enter_stage(stage.name)
            if stage_epochs(run.cfg, stage) == 0 and p.stage_step == 0:
                continue
            try:
                reason = run_stage(run, stage)
            except torch.OutOfMemoryError as err:
                raise RuntimeError(
                    f"CUDA out of memory in stage {stage.name!r} at step {p.stage_step} "
                    f"(batch_size={run.cfg.train.batch_size}, use_amp={run.cfg.train.use_amp}); checkpoint_latest.pt "
                    "was saved. Lower 'batch_size' (or set 'use_amp': True) and re-run to resume."
                ) from err
            if reason:
                return reason
    return None
