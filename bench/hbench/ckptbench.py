"""What checkpointing costs, read from the trainer's own accounting (`TrainResult.checkpoint_stats`, the
`CheckpointManager`'s `SaveStats`): file size, bytes written per save, the time the training thread is
blocked per save, the total save time, the load time, and the share of training wall time; sync vs async.

The same short training (the notebook's default model unless the sizes say otherwise) runs once per mode:
`checkpoint_async` false, then true, when that config key exists; until then sync alone is measured and
async is reported as pending. Those runs save every epoch (latest + epoch_N + best), so each measures
several saves; the share of training time at the configured cadence (`checkpoint_every` epochs or
`checkpoint_every_minutes`, whichever comes first) is then projected from the blocked time per save and
the measured diffusion epoch time.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from hbench.suite import Context
from hbench.trainbench import TimedRun, timed_train, training_end_s
from hmolqd.checkpointing.fileformat import LATEST, load_checkpoint
from hmolqd.config import Config, flat_keys

ASYNC_KEY = "checkpoint_async"


def files_on_disk(folder: Path) -> dict[str, Any]:
    """Checkpoint files, their sizes, and the bytes they hold on disk (hard links to one file counted once)."""
    files = sorted(folder.glob("checkpoint_*.pt"))
    inodes = {p.stat().st_ino: p.stat().st_size for p in files}
    return {
        "names": {p.name: p.stat().st_size for p in files},
        "distinct_files": len(inodes),
        "bytes_on_disk": sum(inodes.values()),
    }


def diffusion_epochs(run: TimedRun) -> tuple[float, int] | None:
    """(median wall seconds, optimizer steps) of a diffusion epoch after the first; None with fewer than 2."""
    rows = [
        (t, r["step"]) for r, t in zip(run.result.history, run.record_s) if r["stage"] == "diffusion" and t is not None
    ]
    if len(rows) < 2:
        return None
    return statistics.median(b[0] - a[0] for a, b in zip(rows, rows[1:])), rows[1][1] - rows[0][1]


def projected_share(blocked_per_save: float, epochs: tuple[float, int] | None, cadence: Config) -> dict[str, Any]:
    """Share of training time blocked by saves at `cadence`'s checkpoint keys (the first of epochs, steps,
    minutes to come due), from the blocked time of one save and the measured diffusion epoch."""
    if epochs is None:
        return {"share": None, "why": "needs >= 2 diffusion epochs"}
    epoch_s, steps = epochs
    train_epoch_s = max(epoch_s - blocked_per_save, 1e-9)  # the measured epochs saved every time
    run = cadence.run.checkpoint
    intervals = [run.checkpoint_every * train_epoch_s]
    if run.checkpoint_every_minutes > 0:
        intervals.append(run.checkpoint_every_minutes * 60.0)
    if run.checkpoint_every_steps > 0:
        intervals.append(run.checkpoint_every_steps * train_epoch_s / max(steps, 1))
    interval = min(intervals)
    return {"share": blocked_per_save / interval, "seconds_between_saves": interval, "diffusion_epoch_s": train_epoch_s}


def summarize(run: TimedRun, cfg: Config) -> dict[str, Any]:
    stats = dataclasses.asdict(run.result.checkpoint_stats)
    saves = max(stats["saves"], 1)
    # Field names of SaveStats with asynchronous saving; before it, `seconds` was the whole (blocking) save time.
    blocked = stats["blocked_seconds"] if "blocked_seconds" in stats else stats["seconds"]
    write = stats["write_seconds"] if "write_seconds" in stats else stats["seconds"]
    latest = Path(cfg.paths.checkpoint_dir) / LATEST
    start = time.perf_counter()
    load_checkpoint(latest)  # what a resume reads: the file, its checksum verified
    load_s = time.perf_counter() - start
    train_s = training_end_s(run)
    return {
        "saves": stats["saves"],
        "files_per_save": stats["files"] / saves,
        "file_mib": stats["last_size"] / 2**20,
        "bytes_written_per_save_mib": stats["bytes_written"] / saves / 2**20,
        "blocked_per_save_s": blocked / saves,
        "blocked_total_s": blocked,
        "write_total_s": write,
        "flush_s": stats.get("flush_seconds", 0.0),
        "skipped": stats.get("skipped", 0),
        "load_s": load_s,
        "train_wall_s": train_s,
        "share_of_train_wall": blocked / train_s,
        "disk": files_on_disk(latest.parent),
        "stats": stats,
    }


def checkpoint_costs(ctx: Context, base: Config) -> dict[str, Any]:
    """Sync (and async) runs of `base`'s model saving every epoch; `base`'s own cadence for the projection."""
    v, d = ctx.sizes.checkpoint_epochs
    has_async = ASYNC_KEY in flat_keys()
    modes: dict[str, dict[str, Any]] = (
        {"sync": {ASYNC_KEY: False}, "async": {ASYNC_KEY: True}} if has_async else {"sync": {}}
    )
    out: dict[str, Any] = {
        "cadence": {
            **{
                k: getattr(base.run.checkpoint, k)
                for k in ("checkpoint_every", "checkpoint_every_steps", "checkpoint_every_minutes", "keep_last_n")
            },
            "val_every": base.run.logging.val_every,
        },
        "run": f"{v} VQ-VAE + {d} diffusion epochs saving every epoch (latest + epoch_N + best), "
        f"batch {base.train.batch_size}, "
        f"the model of {'the notebook CONFIG' if ctx.sizes.checkpoint_model == 'notebook' else 'the preset'}",
    }
    for mode, extra in modes.items():
        cfg = ctx.config(
            base,
            f"checkpoint_{mode}",
            vqvae_epochs=v,
            num_epochs=d,
            joint_epochs=0,
            sample_every=0,
            sample_steps=2,
            checkpoint_every=1,
            val_every=1,
            checkpoint_every_steps=0,
            checkpoint_every_minutes=0.0,
            **extra,
        )
        run = timed_train(cfg)
        out[mode] = summarize(run, cfg)
        out[mode]["at_cadence"] = projected_share(out[mode]["blocked_per_save_s"], diffusion_epochs(run), base)
        share = out[mode]["at_cadence"]["share"]
        ctx.say(
            f"[bench]   {mode}: {out[mode]['saves']} saves of {out[mode]['file_mib']:.1f} MiB, "
            f"{out[mode]['blocked_per_save_s']:.3f} s "
            f"blocked per save, {100 * out[mode]['share_of_train_wall']:.1f} % of this run's training"
            + ("" if share is None else f", {100 * share:.2f} % at the configured cadence")
        )
        ctx.discard(cfg)
    if has_async:
        out["async_blocked_vs_sync_save"] = out["async"]["blocked_per_save_s"] / max(
            out["sync"]["blocked_per_save_s"], 1e-12
        )
    else:
        out["async"] = {
            "status": f"pending: config key {ASYNC_KEY!r} does not exist yet, so only synchronous saving was measured"
        }
    return out
