"""Speed of the trainer's own training step per preset, precision and stage: a proper benchmark (issue 29).

Each (preset, precision) builds the preset's model (seed 0) and the runtime `setup_runtime` makes of that
`use_amp` value: "fp32" is use_amp false with TF32 matmuls allowed (`torch.set_float32_matmul_precision("high")`
for that row only; the trainer itself leaves torch's default, "highest"), "bf16" is autocast, "fp16" is autocast +
GradScaler. Then, per stage (VQ-VAE, then diffusion on the codes of that briefly trained VQ-VAE), a step is what
the training loop runs: `Optimization.step` (forward under autocast, backward, clip, scaler, AdamW) and, after a
denoiser step, the EMA update, on batches indexed on the device from indices drawn beforehand. `warmup` steps run
untimed (kernel selection, the allocator, the codebook's data-dependent first update); then `repeats` blocks of
`steps` steps are each timed between two `torch.cuda.synchronize()`: steps/s is the median over the blocks, with
their range. One more step runs under CUDA's sync debug mode "warn", and the warnings it raises are counted: the
host syncs left in a step (the training step should have none).

Never run on a GPU yet: the numbers of bench/results/gpu_h200-2026-12-04.md came from the script before this one.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from hbench.suite import Context, base_config
from hmolqd.config import Config, stage_named
from hmolqd.models.room_model import RoomModel
from hmolqd.training.optim import LRSchedule, Optimization
from hmolqd.training.runtime import Runtime, setup_runtime
from hmolqd.training.stages import (
    RoomSet,
    objective,
    set_train_mode,
    stage_data,
    start_diffusion_stage,
    trainable,
)

PRECISIONS: dict[str, bool | str] = {"fp32": False, "bf16": "bf16", "fp16": "fp16"}  # name -> use_amp
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
STAGES = ("vqvae", "diffusion")


@dataclass(frozen=True)
class StepSizes:
    warmup: int  # untimed steps per stage
    steps: int  # steps per timed block
    repeats: int  # timed blocks per stage; steps/s is their median


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """`torch.set_float32_matmul_precision(precision)` for the block, on CUDA only (on the CPU it can change
    oneDNN's kernels, and the CPU plumbing run is there to test this code, not to time it)."""
    before = torch.get_float32_matmul_precision()
    if device.type == "cuda":
        torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_syncs(device: torch.device, step: Callable[[], None]) -> dict[str, Any]:
    """Run `step` once under CUDA's sync debug mode "warn" and count the synchronizing operations it reports."""
    if device.type != "cuda":
        step()
        return {"count": None, "note": "CUDA's sync debug mode exists on CUDA only"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    found = [w for w in caught if "synchroniz" in str(w.message)]
    # where: the Python line that ran the synchronizing operation (torch attributes its warnings to it)
    return {
        "count": len(found),
        "first": [str(w.message) for w in found[:3]],
        "where": [f"{w.filename}:{w.lineno}" for w in found],
    }


def stage_speed(gen: RoomModel, cfg: Config, stage: str, corpus: RoomSet, rt: Runtime, sizes: StepSizes) -> dict:
    """One stage's steps: warm-up, timed blocks, one step counting host syncs; losses checked at the end."""
    dev, row = rt.device, stage_named(stage)
    set_train_mode(gen, row)
    data = stage_data(gen, row, corpus.rooms, corpus.doors, corpus.stairs)
    if row.starts_denoiser:
        start_diffusion_stage(gen, data, corpus.rooms)
    o = Optimization.create(trainable(gen, row), cfg.train, dev.type, rt.use_scaler)
    loss_module = objective(gen, row, cfg)
    total = sizes.warmup + sizes.steps * sizes.repeats + 1
    schedule = LRSchedule.from_config(cfg.train, total)
    g = torch.Generator(device=dev).manual_seed(0)
    idx = torch.randint(len(data), (total, cfg.train.batch_size), generator=g, device=dev)  # no copy in a step
    losses: list[torch.Tensor] = []
    skipped: torch.Tensor | int = 0
    i = 0

    def step() -> None:
        nonlocal i, skipped
        loss = o.step(loss_module, data.x[idx[i]], data.cond[idx[i]], schedule(i), rt.autocast)
        if row.trains_denoiser:
            gen.update_ema(cfg.train.ema_decay)
        losses.append(loss.detach().float())
        skipped = skipped + o.skipped
        i += 1

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(sizes.warmup):
        step()
    rates = []
    for _ in range(sizes.repeats):
        synchronize(dev)
        start = time.perf_counter()
        for _ in range(sizes.steps):
            step()
        synchronize(dev)
        rates.append(sizes.steps / (time.perf_counter() - start))
    syncs = host_syncs(dev, step)
    loss = torch.stack(losses).cpu()  # the one host read of the losses
    k = max(1, len(loss) // 5)
    first, last = float(loss[:k].mean()), float(loss[-k:].mean())
    finite = bool(torch.isfinite(loss).all())
    return {
        "steps_per_s": statistics.median(rates),
        "steps_per_s_min": min(rates),
        "steps_per_s_max": max(rates),
        "ms_per_step": 1000 / statistics.median(rates),
        "rates": rates,
        "loss_first": first,
        "loss_last": last,
        "finite": finite,
        "decreased": last < first,
        "ok": finite and last < first,
        "skipped_steps": int(skipped),
        "grad_scale": o.scaler.get_scale() if o.scaler.is_enabled() else None,
        "host_syncs_per_step": syncs,
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }


def precision_row(ctx: Context, cfg: Config, precision: str, sizes: StepSizes) -> dict[str, Any]:
    """Both stages of one preset's model under one precision."""
    torch.manual_seed(0)
    gen = RoomModel.from_config(cfg).to(ctx.device)
    rt = setup_runtime(str(ctx.device), use_amp=PRECISIONS[precision])
    if rt.amp_dtype != AMP_DTYPES[precision]:
        raise RuntimeError(
            f"use_amp={PRECISIONS[precision]!r} gave the runtime AMP dtype {rt.amp_dtype} on {ctx.device}"
        )
    c = ctx.training_corpus(cfg)
    corpus = RoomSet(c.rooms.to(ctx.device), c.doors.to(ctx.device), c.stairs.to(ctx.device))  # as the trainer holds it
    with matmul_precision(ctx.device, "high") if precision == "fp32" else contextlib.nullcontext():
        return {stage: stage_speed(gen, cfg, stage, corpus, rt, sizes) for stage in STAGES}


def step_speed(
    ctx: Context, presets: tuple[str, ...], precisions: tuple[str, ...], sizes: StepSizes, deadline: float
) -> dict[str, Any]:
    """Every (preset, precision) row while the deadline (time.monotonic) leaves room for one more like the last."""
    bf16 = torch.cuda.is_bf16_supported() if ctx.device.type == "cuda" else True
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    row_s = 0.0  # the last row's duration: the next one is started only if that much is left
    for preset in presets:
        # the preset's model and optimisation; a short warm-up of the learning rate, so that losses fall
        cfg = base_config(preset).with_overrides(warmup_steps=max(1, sizes.steps // 4))
        for precision in precisions:
            what = f"{preset} {precision}"
            if precision == "bf16" and not bf16:
                skipped.append(f"{what}: this GPU has no bf16 (torch.cuda.is_bf16_supported() is False)")
                continue
            if time.monotonic() + row_s > deadline:
                skipped.append(f"{what}: skipped: time budget")
                continue
            start = time.monotonic()
            stages = precision_row(ctx, cfg, precision, sizes)
            row_s = time.monotonic() - start
            rows.append({"preset": preset, "precision": precision, "stages": stages, "seconds": round(row_s, 1)})
            ctx.say(
                f"[gpu_check]   {what}: "
                + ", ".join(
                    f"{s} {r['steps_per_s']:.1f} steps/s ({r['steps_per_s_min']:.1f}-{r['steps_per_s_max']:.1f}), "
                    f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}"
                    for s, r in stages.items()
                )
            )
    return {
        "sizes": asdict(sizes),
        "batch_size": {p: base_config(p).train.batch_size for p in presets},
        "fp32_matmul_precision": "high (TF32 allowed) on CUDA",
        "rows": rows,
        "fastest": fastest(rows),
        "skipped": skipped,
        "ok": all(r["ok"] for row in rows for r in row["stages"].values()),
    }


def fastest(rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per preset and stage, the precision with the highest median steps/s."""
    best: dict[str, dict[str, tuple[float, str]]] = {}
    for row in rows:
        for stage, r in row["stages"].items():
            now = best.setdefault(row["preset"], {}).get(stage)
            if now is None or r["steps_per_s"] > now[0]:
                best[row["preset"]][stage] = (r["steps_per_s"], row["precision"])
    return {p: {s: name for s, (_, name) in stages.items()} for p, stages in best.items()}
