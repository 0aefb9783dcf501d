"""A tiny trainee with every kind of training state, for the checkpoint self-checks (`selfcheck`): the real
RoomModel of the default kind with the trainer's optimizer step, schedule, GradScaler and EMA.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hmolqd.checkpointing.rng import capture_rng_state
from hmolqd.config import Config, stage_named
from hmolqd.data.tiles import NUM_TILES, ROOM_H, ROOM_W
from hmolqd.models.room_model import RoomModel
from hmolqd.models.vqvae import vqvae_loss
from hmolqd.training.optim import LRSchedule, Optimization
from hmolqd.training.stages import JointObjective, set_train_mode, trainable

# A model small enough that every state round trip takes milliseconds; all three submodules are real, and the
# model kind is the default one (discrete).
TINY_MODEL = {
    "num_embeddings": 16,
    "latent_dim": 4,
    "embedding_dim": 16,
    "downsample": 4,
    "num_timesteps": 50,
    "denoiser_dim": 16,
    "denoiser_depth": 1,
}


@dataclass
class Trainee:
    """The real RoomModel with the trainer's optimizer step, schedule, scaler and EMA, on tiny sizes."""

    cfg: Config
    gen: RoomModel
    o: Optimization
    schedule: LRSchedule
    device: torch.device
    steps: int = 0


def make_trainee(seed: int, device: torch.device) -> Trainee:
    torch.manual_seed(seed)
    cfg = Config.from_flat({**TINY_MODEL, "warmup_steps": 2, "weight_decay": 0.01})
    gen = RoomModel.from_config(cfg).to(device)
    # the VQ-VAE and the denoiser train together: every parameter has optimizer state
    set_train_mode(gen, stage_named("joint"))
    # An enabled scaler on every device, so its state (scale, growth tracker) is non-trivial.
    o = Optimization.create(trainable(gen, stage_named("joint")), cfg.train, device.type, use_scaler=True)
    return Trainee(cfg, gen, o, LRSchedule.from_config(cfg.train, total_steps=50), device)


class _BothObjective(nn.Module):
    """Reconstruction loss plus the diffusion loss on the rooms' codes, so that one optimizer step moves every
    parameter (the discrete model has no joint stage: `JointObjective` serves the continuous one)."""

    def __init__(self, gen: RoomModel, cfg: Config) -> None:
        super().__init__()
        self.gen, self.cfg = gen, cfg

    def forward(self, rooms: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.gen.vqvae(rooms)
        rec, _ = vqvae_loss(
            out, rooms, rare_tile_weight=self.cfg.train.rare_tile_weight, commitment_beta=self.cfg.train.commitment_beta
        )
        diff, _ = self.gen.diffusion.loss(out.indices.detach(), cond, drop_prob=self.cfg.train.cond_drop_prob)
        return rec + diff, {}


def train_steps(t: Trainee, n: int) -> None:
    """n optimizer steps on random rooms; the batch draws from python, numpy and torch RNGs, so all must be restored."""
    objective = JointObjective(t.gen, t.cfg) if t.cfg.model.model_kind == "continuous" else _BothObjective(t.gen, t.cfg)
    for _ in range(n):
        rooms = torch.randint(0, NUM_TILES, (8, ROOM_H, ROOM_W)).to(t.device)  # (8, 16, 11)
        doors = torch.from_numpy(np.random.rand(8, 4) < 0.5)  # (8, 4) bool
        stairs = torch.tensor([random.random() < 0.3 for _ in range(8)])  # (8,) bool
        if t.cfg.model.model_kind == "continuous":
            cond = t.gen.diffusion.condition_tokens(doors, stairs, 8).to(t.device)  # (8, K)
        else:
            cond = t.gen.diffusion.room_condition(rooms)  # (8, K) doors, stairs, attributes measured on the rooms
        t.o.step(objective, rooms, cond, t.schedule(t.steps))  # the trainer's own step
        t.gen.update_ema(0.9)
        t.steps += 1


def live_state(t: Trainee) -> dict[str, Any]:
    """The trainee's states as the trainer checkpoints them (state dicts alias the live tensors)."""
    return {
        "models": {name: part.state_dict() for name, part in t.gen.parts().items()},
        "optimizer": t.o.optimizer.state_dict(),
        "scheduler": t.schedule.state_dict(),
        "scaler": t.o.scaler.state_dict(),
    }


def training_state(t: Trainee, stage: str, epoch: int) -> dict[str, Any]:
    """A deep copy (the live tensors keep training) of everything the trainer checkpoints."""
    return copy.deepcopy(
        {
            "stage": stage,
            "epoch": epoch,
            "global_step": t.steps,
            **live_state(t),
            "rng": capture_rng_state(),
            "data_order": {"seed": 0, "epoch": epoch, "position": 0},
            "elapsed": 1.5,
            "config": t.cfg.to_dict(),
            "history": [{"stage": stage, "epoch": epoch, "val_loss": 1.0 / (1 + epoch)}],
        }
    )
