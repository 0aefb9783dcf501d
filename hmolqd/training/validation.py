"""Per-epoch validation and generation metrics during training, without touching the training RNG.

Validation runs under `torch.random.fork_rng` with a fixed seed, so (a) every epoch is scored on the same
noise and timesteps and (b) the training run's random stream is identical whether or not it validated:
an interrupted and resumed run stays bit-exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from hmolqd.config import Config, Stage
from hmolqd.models.room_model import RoomModel
from hmolqd.training.runtime import Runtime
from hmolqd.training.stages import RunData, StageData, set_train_mode

VAL_SEED_OFFSET = 7919  # validation noise seed = run seed + this


@contextlib.contextmanager
def evaluating(gen: RoomModel, stage: Stage, rt: Runtime, seed: int) -> Iterator[None]:
    """Eval mode (no codebook EMA updates, no dropout) and a private RNG stream; training mode after."""
    devices = [rt.device] if rt.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        gen.eval()
        try:
            yield
        finally:
            set_train_mode(gen, stage)


def validate(gen: RoomModel, stage: Stage, val: StageData, cfg: Config, rt: Runtime) -> dict[str, float]:
    """Held-out losses: reconstruction (+ VQ-VAE accuracy and codebook use) and/or diffusion loss."""
    out: dict[str, float] = {}
    with evaluating(gen, stage, rt, cfg.run.seed + VAL_SEED_OFFSET), rt.autocast():
        total = torch.zeros((), device=rt.device)
        if stage.trains_vqvae:
            rec, _ = gen.vqvae.loss(
                val.x, rare_tile_weight=cfg.train.rare_tile_weight, commitment_beta=cfg.train.commitment_beta
            )
            total = total + rec.float()
            out.update({f"val_{k}": v for k, v in gen.vqvae.evaluate(val.x).items()})
        if stage.trains_denoiser:
            z0 = val.x if stage.on_latents else gen.vqvae.encode(val.x)
            diff, _ = gen.diffusion.loss(z0, val.cond, drop_prob=0.0)
            total = total + diff.float()
            out["val_diffusion_loss"] = float(diff)
    out["val_loss"] = float(total)
    return out


def sample_metrics(gen: RoomModel, data: RunData, cfg: Config, stage: Stage, rt: Runtime) -> dict[str, Any]:
    """Generate `eval_samples` rooms (door conditions drawn from the training set) and score them."""
    from hmolqd.evaluation.report import generation_metrics

    with evaluating(gen, stage, rt, cfg.run.seed):
        metrics = generation_metrics(
            gen,
            data.ref.rooms,
            data.ref.doors,
            data.ref.stairs,
            cfg.run.logging.eval_samples,
            seed=cfg.run.seed,
            sampling=dataclasses.asdict(cfg.run.sampling),  # this run's (gen.config may be older)
        )
    # Timings stay out of the history: an interrupted and resumed run must log the very same records.
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.endswith("_seconds")}


def format_record(record: dict[str, Any]) -> str:
    keys = [
        "train_loss",
        "val_loss",
        "val_tile_accuracy",
        "val_room_accuracy",
        "val_codebook_usage",
        "playable",
        "novel_playable",
        "novel_playable_symmetric",
        "symmetric",
        "door_adherence",
    ]
    parts = [f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), (int, float))]
    if record.get("skipped_steps"):  # said only when the fp16 GradScaler skipped steps (overflowing gradients)
        parts.append(f"skipped_steps={record['skipped_steps']} (fp16 overflow)")
    return f"[{record['stage']}] epoch {record['epoch']} step {record['step']}: " + " ".join(parts)
