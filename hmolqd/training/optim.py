"""Optimizer, learning-rate schedule and the one optimizer step that every training path runs.

The schedule (linear warm-up, then cosine decay: Loshchilov & Hutter 2017) is a pure function of the step,
so it has no state to checkpoint: on resume it is rebuilt from the current config and the saved progress,
which is how a changed `learning_rate` or epoch count takes effect. `Optimization.step` is the trainer's
step; the checkpoint self-check and the benches call the same method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hmolqd.config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based, before that step runs)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate at each optimizer step of a stage: `peak * lr_factor(step, ...)`."""

    peak: float
    total_steps: int
    warmup_steps: int
    min_ratio: float

    @classmethod
    def from_config(cls, train: TrainConfig, total_steps: int) -> LRSchedule:
        return cls(train.learning_rate, total_steps, train.warmup_steps, train.min_lr_ratio)

    def __call__(self, step: int) -> float:
        return self.peak * lr_factor(step, self.total_steps, self.warmup_steps, self.min_ratio)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers describing the schedule, stored in checkpoints for inspection (never loaded back)."""
        return {"name": "warmup_cosine", **dataclasses.asdict(self)}


def make_optimizer(params: Iterable[nn.Parameter], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable `params`; the learning rate is set by `Optimization.step` at every step."""
    params = [p for p in params if p.requires_grad]
    # Decay only matrices (weights), not biases, norms or embeddings' 1-D params (nanoGPT's split).
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=0.0, betas=(0.9, 0.99))


@dataclass
class Optimization:
    """What one optimizer step touches: optimizer, loss scaler, the parameters it clips, the clip norm."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[nn.Parameter]
    grad_clip: float  # max global grad norm; 0 disables clipping
    last_step_skipped: bool = False  # the fp16 GradScaler skipped the last step (inf/NaN gradients) and lowered its scale

    @classmethod
    def create(cls, params: Iterable[nn.Parameter], train: TrainConfig, device_type: str, use_scaler: bool) -> Optimization:
        params = list(params)
        return cls(make_optimizer(params, train.weight_decay), torch.amp.GradScaler(device_type, enabled=use_scaler), params, train.grad_clip)

    def step(self, objective: nn.Module, x: torch.Tensor, cond: torch.Tensor, lr: float,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> torch.Tensor:
        """One step at learning rate `lr`: forward under autocast, backward, unscale + clip, scaler step, zero_grad.

        `objective(x, cond)` returns `(loss, metrics)`; returns the (undetached) loss. Sets `last_step_skipped`.
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast():
            loss, _ = objective(x, cond)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        # An enabled scaler skips the optimizer step on inf/NaN gradients and then lowers its scale (backoff < 1),
        # and only then: a lower scale after `update` is a skipped step. `get_scale` reads the scale to the host,
        # a sync the fp16 path already pays (`scaler.step` reads its found-inf flag with `.item()`).
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 0.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_step_skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale
        self.optimizer.zero_grad(set_to_none=True)
        return loss
