"""Sampling throughput (rooms/s) and quality for each sampler and step count the model supports.

Rooms come from the real `hmolqd.generate`, conditioned like `evaluate` does (door sides and stairs of
training rooms drawn with replacement, seed 0; room attributes as the model asks by default), and are
scored by `evaluate_rooms` against the training rooms. `generate`'s output does not depend on `batch_size`,
so quality is scored once per (sampler, steps), on the rooms of the largest batch; throughput is timed at
every batch.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from hbench.suite import Context
from hmolqd.evaluation.metrics import evaluate_rooms
from hmolqd.evaluation.report import draw_conditions, json_safe
from hmolqd.models.room_model import RoomModel
from hmolqd.sampling import generate as sampling
from hmolqd.sampling.generate import generate

MIN_TIMED_S = 1.0  # a fast setting is repeated (up to MAX_REPEATS calls) until this much time is measured
MAX_REPEATS = 5


def sampler_options(model: RoomModel) -> tuple[dict[str, dict[str, Any]], str]:
    """Every sampler the model supports -> the `generate` keyword arguments that select it (the package's
    `hmolqd.sampling.generate.sampler_options`), and where that list came from. Every other setting
    (guidance scale, ...) is the model's own."""
    return sampling.sampler_options(model), "hmolqd.sampling.generate.sampler_options"


def timed_generate(
    model: RoomModel,
    n: int,
    conditions: dict[str, Any],
    steps: int,
    kwargs: dict[str, Any],
    batch_size: int | None = None,
) -> tuple[float, torch.Tensor]:
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
    if model.cfg.model_kind == "discrete":
        steps_list = list(ctx.sizes.discrete_steps)
    else:
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
                rows.append(
                    {
                        "sampler": name,
                        "steps": steps,
                        "batch": batch,
                        "seconds": seconds,
                        "rooms_per_s": batch / seconds,
                    }
                )
                ctx.say(f"[bench]   {name} steps={steps} batch={batch}: {batch / seconds:.1f} rooms/s")
            metrics = evaluate_rooms(rooms, corpus.rooms, requested_doors=doors[:n_max])
            quality.append({"sampler": name, "steps": steps, "rooms": n_max, **json_safe(metrics)})
    return {
        "samplers": {name: kwargs for name, kwargs in options.items()},
        "samplers_from": source,
        "model_kind": model.cfg.model_kind,
        "conditions": "door sides (and stairs, if the model takes them) of training rooms drawn with replacement, "
        "seed 0",
        "quality_note": f"scored on the {n_max} rooms of the largest batch "
        "(generate's output does not depend on batch_size)",
        "throughput": rows,
        "quality": quality,
    }
