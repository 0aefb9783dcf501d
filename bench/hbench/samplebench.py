"""Sampling throughput (rooms/s) and quality for each sampler and step count the model supports.

Rooms come from the real `hmolqd.generate`, conditioned like `evaluate` does (door sides and stairs of
training rooms drawn with replacement, seed 0), and are scored by `evaluate_rooms` against the training
rooms. `generate`'s output does not depend on `batch_size` (see `LatentDiffusion.sample`), so quality is
scored once per (sampler, steps), on the rooms of the largest batch; throughput is timed at every batch.
"""

from __future__ import annotations

import importlib
import statistics
import time
from typing import Any

import torch

from hbench.suite import Context
from hmolqd.evaluation.metrics import evaluate_rooms
from hmolqd.evaluation.report import draw_conditions, json_safe
from hmolqd.models.room_model import RoomModel
from hmolqd.sampling.generate import generate

MIN_TIMED_S = 1.0  # a fast setting is repeated (up to MAX_REPEATS calls) until this much time is measured
MAX_REPEATS = 5


def sampler_options(model: RoomModel) -> tuple[dict[str, dict[str, Any]], str]:
    """Every sampler the model supports -> the `generate` keyword arguments that select it, and where that list came from.

    The package's own list (`hmolqd.sampling.generate.sampler_options(model)`) is used when it exists; until
    then the continuous latent model's: DDIM (eta 0), DDIM with eta 1, and DDIM + decoder door guidance at
    the model's `door_guidance` (when > 0). Guidance scale: the model's `guidance_scale`.
    """
    run = model.config.run
    api = getattr(importlib.import_module("hmolqd.sampling.generate"), "sampler_options", None)
    if api is not None:
        return {name: {"guidance": run.guidance_scale, **kwargs} for name, kwargs in api(model).items()}, "hmolqd.sampling.generate.sampler_options"
    options = {
        "ddim": {"guidance": run.guidance_scale, "eta": 0.0, "door_guidance": 0.0},
        "ddim_eta1": {"guidance": run.guidance_scale, "eta": 1.0, "door_guidance": 0.0},
    }
    if run.door_guidance > 0:
        options["ddim+door_guidance"] = {"guidance": run.guidance_scale, "eta": 0.0, "door_guidance": run.door_guidance}
    return options, "bench fallback for the continuous latent model (no sampler_options in hmolqd.sampling.generate yet)"


def timed_generate(model: RoomModel, n: int, conditions: dict[str, Any], steps: int, kwargs: dict[str, Any],
                   batch_size: int | None = None) -> tuple[float, torch.Tensor]:
    """Median seconds of `generate(model, n, ...)` (one batch of n unless `batch_size`), and its rooms (CPU
    tensors: the device work is done when it returns)."""
    times: list[float] = []
    rooms = None
    while len(times) < MAX_REPEATS and (not times or sum(times) < MIN_TIMED_S):
        start = time.perf_counter()
        rooms = generate(model, n, steps=steps, seed=0, batch_size=batch_size or n, **conditions, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), rooms


def sampling_throughput(ctx: Context, model: RoomModel) -> dict[str, Any]:
    options, source = sampler_options(model)
    corpus = ctx.training_corpus(model.config)
    batches = ctx.sizes.batches
    n_max = max(batches)
    doors, stairs = draw_conditions(corpus, n_max, seed=0)  # (n_max, 4), (n_max,)
    take_stairs = model.cfg.cond_stairs
    steps_list = [s for s in ctx.sizes.sample_steps if s <= model.cfg.num_timesteps]
    rows, quality = [], []
    for name, kwargs in options.items():
        cond = {"doors": doors[:2], "stairs": stairs[:2] if take_stairs else None}
        generate(model, 2, steps=2, seed=0, batch_size=2, **cond, **kwargs)  # warm-up: kernels, allocator, lazy init
        for steps in steps_list:
            rooms = None
            for batch in batches:
                cond = {"doors": doors[:batch], "stairs": stairs[:batch] if take_stairs else None}
                seconds, rooms = timed_generate(model, batch, cond, steps, kwargs)
                rows.append({"sampler": name, "steps": steps, "batch": batch, "seconds": seconds, "rooms_per_s": batch / seconds})
                ctx.say(f"[bench]   {name} steps={steps} batch={batch}: {batch / seconds:.1f} rooms/s")
            metrics = evaluate_rooms(rooms, corpus.rooms, requested_doors=doors[:n_max])
            quality.append({"sampler": name, "steps": steps, "rooms": n_max, **json_safe(metrics)})
    return {
        "samplers": {name: kwargs for name, kwargs in options.items()}, "samplers_from": source,
        "model_kind": getattr(model.cfg, "model_kind", "latent (continuous DDIM)"),
        "conditions": "door sides (and stairs, if the model takes them) of training rooms drawn with replacement, seed 0",
        "quality_note": f"scored on the {n_max} rooms of the largest batch (generate's output does not depend on batch_size)",
        "throughput": rows, "quality": quality,
    }
