"""Training measurements through the real trainer (`hmolqd.training.loop.train`).

Times come from the trainer's own history records: `train` logs `validation.format_record(record)` at the
end of every epoch (after that epoch's validation, evaluation and checkpoint), so the moment each line
reaches our `log` callback is the wall time of that record. The records themselves carry no time on
purpose: an interrupted and resumed run must log the very same records as an uninterrupted one (the
resume tests and `selfcheck` compare them), and wall time differs between any two runs.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass
from typing import Any

from hbench.suite import Context
from hmolqd.config import Config, stage_names
from hmolqd.training.loop import TrainResult, train
from hmolqd.training.validation import format_record

# Generation metrics of the in-training evaluation (`sample_every`) kept in the quality curve.
CURVE_KEYS = (
    "playable",
    "novel_playable",
    "novel",
    "distinct",
    "symmetric",
    "diversity",
    "door_adherence",
    "pattern_kl_train_gen",
)
THRESHOLDS = (0.5, 0.8)  # novel & playable levels whose first arrival is timed (issue 13)


@dataclass
class TimedRun:
    result: TrainResult
    wall_s: float  # the whole train() call: setup, every stage, the final outputs
    # per history record: seconds after train() began when it was logged (None: an earlier call's)
    record_s: list[float | None]
    messages: list[str]


def record_times(history: list[dict[str, Any]], events: list[tuple[float, str]]) -> list[float | None]:
    """Pair each history record with the time its `format_record` line was logged, in order."""
    times: list[float | None] = []
    i = 0
    for record in history:
        line = format_record(record)
        j = next((k for k in range(i, len(events)) if events[k][1] == line), None)
        times.append(None if j is None else events[j][0])
        i = i if j is None else j + 1
    return times


def timed_train(cfg: Config) -> TimedRun:
    """`train(cfg)` with each logged line timestamped; progress bars (stderr) are captured, not printed."""
    events: list[tuple[float, str]] = []
    start = time.perf_counter()

    def log(msg: str) -> None:
        events.append((time.perf_counter() - start, msg))

    with contextlib.redirect_stderr(io.StringIO()):
        result = train(cfg, log=log)
    wall = time.perf_counter() - start
    return TimedRun(result, wall, record_times(result.history, events), [m for _, m in events])


def training_end_s(run: TimedRun) -> float:
    """Seconds until the last epoch's record (training done, final outputs not yet written)."""
    done = [t for t in run.record_s if t is not None]
    return done[-1] if done else run.wall_s


def stage_throughput(run: TimedRun, stage: str, rooms_per_epoch: int) -> dict[str, Any]:
    """Steps/s and rooms/s of one stage over its epochs 2 .. E-1 (the first holds the stage's setup and
    warm-up, the last its validation and checkpoint)."""
    idx = [i for i, r in enumerate(run.result.history) if r["stage"] == stage]
    if len(idx) < 3:
        return {
            "error": f"stage {stage!r} ran {len(idx)} epoch(s); "
            "throughput needs >= 3 (the first and last are not timed)"
        }
    first, last = idx[0], idx[-2]
    t0, t1 = run.record_s[first], run.record_s[last]
    if t0 is None or t1 is None:
        return {"error": "epoch times missing (resumed run?)"}
    seconds = t1 - t0
    epochs = last - first
    steps = run.result.history[last]["step"] - run.result.history[first]["step"]
    before = run.record_s[first - 1] if first > 0 else 0.0
    return {
        "epochs_timed": epochs,
        "seconds": seconds,
        "optimizer_steps": steps,
        "steps_per_s": steps / seconds,
        "rooms_per_s": epochs * rooms_per_epoch / seconds,
        "first_epoch_s": None if before is None else t0 - before,
    }


def training_throughput(ctx: Context, base: Config, amp: bool) -> dict[str, Any]:
    """One run of every stage for `throughput_epochs` epochs; nothing but training between the timed epochs
    (validation only at each stage's last epoch, no evaluation, no checkpoint before it)."""
    e = ctx.sizes.throughput_epochs
    joint = e if base.model.model_kind == "continuous" else 0  # the discrete model has no joint stage
    cfg = ctx.config(
        base,
        f"throughput_amp_{'on' if amp else 'off'}",
        vqvae_epochs=e,
        num_epochs=e,
        joint_epochs=joint,
        val_every=10**6,
        sample_every=0,
        checkpoint_every=10**6,
        checkpoint_every_steps=0,
        checkpoint_every_minutes=0.0,
        sample_steps=2,
        use_amp=amp,
    )
    run = timed_train(cfg)
    n = ctx.training_rooms(cfg)
    return {
        "use_amp": amp,
        "amp_dtype": ctx.amp_name(amp),
        "batch_size": cfg.train.batch_size,
        "rooms_per_epoch": n,
        "stages": {stage: stage_throughput(run, stage, n) for stage in stage_names() if stage != "joint" or joint},
        "train_wall_s": run.wall_s,
    }


def quality_curve(run: TimedRun) -> list[dict[str, Any]]:
    """Every in-training evaluation: when it was logged and its generation metrics."""
    return [
        {
            "wall_s": t,
            "stage": r["stage"],
            "epoch": r["epoch"],
            "step": r["step"],
            **{k: r[k] for k in CURVE_KEYS if k in r},
        }
        for r, t in zip(run.result.history, run.record_s)
        if "novel_playable" in r and t is not None
    ]


def first_reaching(curve: list[dict[str, Any]], key: str, level: float) -> dict[str, Any] | None:
    hit = next((p for p in curve if isinstance(p.get(key), float) and math.isfinite(p[key]) and p[key] >= level), None)
    return (
        None
        if hit is None
        else {"wall_s": hit["wall_s"], "stage": hit["stage"], "epoch": hit["epoch"], "step": hit["step"], key: hit[key]}
    )


def time_to_quality(ctx: Context, base: Config) -> tuple[dict[str, Any], TrainResult]:
    """Train with in-training evaluation on; wall time until novel & playable first reaches each threshold.

    The run keeps the preset's model and optimisation; checkpoints are saved every evaluation (their cost
    is measured on its own, by `ckptbench`). Returns the measurement and the trained model's run."""
    s = ctx.sizes
    flat: dict[str, Any] = {}
    if s.ttq_epochs is not None:
        flat.update(vqvae_epochs=s.ttq_epochs[0], num_epochs=s.ttq_epochs[1])
    epochs = flat.get("num_epochs", base.train.num_epochs)
    every = s.ttq_sample_every or base.run.logging.sample_every or max(1, epochs // 10)
    flat.update(sample_every=every, checkpoint_every=every, checkpoint_every_steps=0, checkpoint_every_minutes=0.0)
    if s.ttq_eval_samples:
        flat["eval_samples"] = s.ttq_eval_samples
    cfg = ctx.config(base, "time_to_quality", **flat)
    run = timed_train(cfg)
    curve = quality_curve(run)
    return {
        "settings": {
            "vqvae_epochs": cfg.train.vqvae_epochs,
            "num_epochs": cfg.train.num_epochs,
            "joint_epochs": cfg.train.joint_epochs,
            **{
                k: cfg.to_flat()[k]
                for k in (
                    "sample_every",
                    "eval_samples",
                    "sample_steps",
                    "guidance_scale",
                    "door_guidance",
                    "checkpoint_every",
                )
            },
            "use_amp": cfg.train.use_amp,
        },
        "wall_clock": "seconds after train() began, including data loading, the VQ-VAE stage and the evaluations "
        "themselves",
        "reached": {f"novel_playable>={level}": first_reaching(curve, "novel_playable", level) for level in THRESHOLDS},
        "curve": curve,
        "train_wall_s": run.wall_s,
        "training_end_s": training_end_s(run),
    }, run.result
