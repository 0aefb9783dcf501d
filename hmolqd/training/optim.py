"""Optimizer, learning-rate schedule and the one optimizer step that every training path runs.

The schedule (linear warm-up, then cosine decay: Loshchilov & Hutter 2017) is a pure function of the step
and a few numbers; on resume it is rebuilt from the current config and the saved progress, which is how a
changed `learning_rate` or epoch count takes effect. A changed step count (more or fewer epochs, another
batch size) does not move the learning rate at the resumed step: the decay goes on from the factor reached
there down to `min_lr_ratio` over the new remaining steps (`LRSchedule.resumed`, which reads the numbers the
checkpoint stored), so raising `num_epochs` after a run ended does not send the rate back up to its peak.
`Optimization.step` is the trainer's step; the checkpoint self-check and the benches call the same method.

On CUDA the step is written to read nothing back to the host (the `gpu` tests of tests/test_step_hygiene.py check
it under CUDA's sync debug mode): AdamW runs its fused kernel (`fused_adamw`), which also takes
the fp16 GradScaler's found-inf flag on the device, and whether the scaler skipped a step is kept as a device
tensor (`Optimization.skipped`), read only when an epoch's record or a checkpoint needs it. On the CPU the
optimizer is torch's default AdamW, as before, so CPU runs stay bit-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hmolqd.config import TrainConfig


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    min_ratio: float,
    decay_start: int | None = None,
    start_factor: float = 1.0,
) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based, before that step runs).

    Linear warm-up over `warmup_steps`, then a cosine from `start_factor` at step `decay_start` (default:
    1.0 at the end of warm-up) down to `min_ratio` at `total_steps`, and `min_ratio` after that.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    begin = warmup_steps if decay_start is None else decay_start
    decay_steps = max(1, total_steps - begin)
    progress = min(1.0, max(0.0, (step - begin) / decay_steps))
    return min_ratio + (start_factor - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate at each optimizer step of a stage: `peak * lr_factor(step, ...)`."""

    peak: float
    total_steps: int
    warmup_steps: int
    min_ratio: float
    decay_start: int | None = None  # the step the cosine starts from (None = end of warm-up); set by `resumed`
    start_factor: float = 1.0  # the factor at decay_start

    @classmethod
    def from_config(cls, train: TrainConfig, total_steps: int) -> LRSchedule:
        return cls(train.learning_rate, total_steps, train.warmup_steps, train.min_lr_ratio)

    def __call__(self, step: int) -> float:
        factor = lr_factor(
            step, self.total_steps, self.warmup_steps, self.min_ratio, self.decay_start, self.start_factor
        )
        return self.peak * factor

    def resumed(self, saved: Mapping[str, Any] | None, step: int) -> LRSchedule:
        """This schedule (rebuilt from the config) for a stage resumed at `step` whose checkpoint stored `saved`
        (`state_dict()`). Same steps, warm-up and floor: the saved decay is kept (a bit-exact resume). Otherwise,
        past the warm-up, the cosine restarts at `step` from the saved schedule's factor there (module docstring)."""
        if not saved or saved.get("name") != "warmup_cosine":
            return self
        old = LRSchedule(
            float(saved["peak"]),
            int(saved["total_steps"]),
            int(saved["warmup_steps"]),
            float(saved["min_ratio"]),
            saved.get("decay_start"),
            float(saved.get("start_factor", 1.0)),
        )
        shape = (self.total_steps, self.warmup_steps, self.min_ratio)
        same = (old.total_steps, old.warmup_steps, old.min_ratio) == shape
        if same:
            return dataclasses.replace(self, decay_start=old.decay_start, start_factor=old.start_factor)
        if step < max(self.warmup_steps, old.warmup_steps):
            return self  # still warming up: the new step count applies from the start of the decay
        factor = lr_factor(step, old.total_steps, old.warmup_steps, old.min_ratio, old.decay_start, old.start_factor)
        return dataclasses.replace(self, decay_start=step, start_factor=max(factor, self.min_ratio))

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers describing the schedule, stored in checkpoints (read back by `resumed`)."""
        return {"name": "warmup_cosine", **dataclasses.asdict(self)}


def fused_adamw(params: list[nn.Parameter]) -> bool:
    """Whether AdamW runs its fused kernel over `params`: one launch for the whole update instead of several per
    tensor group, and with an fp16 GradScaler no host read of the found-inf flag. Only where every parameter is a
    floating-point CUDA tensor, and this torch has the kernel and the load hook that keeps it (`_keep_own_kernel`):
    the CPU keeps torch's default AdamW, so CPU runs stay bit-identical to those before the fused kernel."""
    return (
        bool(params)
        and all(p.is_cuda and p.is_floating_point() for p in params)
        and "fused" in inspect.signature(torch.optim.AdamW).parameters
        and hasattr(torch.optim.Optimizer, "register_load_state_dict_pre_hook")
    )


# The flags of a param group that choose AdamW's implementation (not its math): the device decides them.
KERNEL_FLAGS = ("fused", "foreach", "capturable")


def _keep_own_kernel(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any] | None:
    """`load_state_dict` adopts the saved param groups' implementation flags: a CUDA run's fused=True resumed on
    the CPU would move the CPU to another kernel, a CPU checkpoint would turn the fused kernel off on CUDA. The
    loading optimizer keeps its own (chosen for its device); torch then puts each `step` where that kernel wants it."""
    saved = state_dict.get("param_groups")
    if not isinstance(saved, list) or len(saved) != len(optimizer.param_groups):
        return None  # load_state_dict reports the mismatch itself
    groups = [
        {**group, **{k: own[k] for k in KERNEL_FLAGS if k in own}} for group, own in zip(saved, optimizer.param_groups)
    ]
    return {**state_dict, "param_groups": groups}


def make_optimizer(params: Iterable[nn.Parameter], weight_decay: float, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable `params`; the learning rate is set by `Optimization.step` at every step.
    `fused`: AdamW's fused kernel; None = where `fused_adamw` allows it (CUDA), else torch's default."""
    params = [p for p in params if p.requires_grad]
    # Decay only matrices (weights), not biases, norms or embeddings' 1-D params (nanoGPT's split).
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = fused_adamw(params) if fused is None else fused
    # The keyword only where fused: the CPU's AdamW is constructed exactly as before it existed.
    kernel = {"fused": True} if fused else {}
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=0.0, betas=(0.9, 0.99), **kernel)
    if hasattr(optimizer, "register_load_state_dict_pre_hook"):
        optimizer.register_load_state_dict_pre_hook(_keep_own_kernel)
    return optimizer


def _scale_now(scaler: torch.amp.GradScaler) -> torch.Tensor:
    """A copy of the scaler's scale, where it lives. GradScaler keeps it in the tensor `_scale` on the device
    (private, in every torch since 1.6); `get_scale()` would read it to the host, a sync per step. Where the
    attribute is gone, that read stands in."""
    scale = getattr(scaler, "_scale", None)
    return scale.clone() if isinstance(scale, torch.Tensor) else torch.tensor(scaler.get_scale())


@dataclass
class Optimization:
    """What one optimizer step touches: optimizer, loss scaler, the parameters it clips, the clip norm."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[nn.Parameter]
    grad_clip: float  # max global grad norm; 0 disables clipping
    # 1 where the fp16 GradScaler skipped the last step (inf/NaN gradients) and lowered its scale: a 0-dim tensor on
    # the scaler's device, so that the step needs no host read; 0 without a scaler
    skipped: torch.Tensor | int = 0

    @property
    def last_step_skipped(self) -> bool:
        """Whether the fp16 GradScaler skipped the last step; a host read (the trainer adds up `skipped` instead)."""
        return bool(self.skipped)

    @classmethod
    def create(
        cls, params: Iterable[nn.Parameter], train: TrainConfig, device_type: str, use_scaler: bool
    ) -> Optimization:
        params = list(params)
        return cls(
            make_optimizer(params, train.weight_decay),
            torch.amp.GradScaler(device_type, enabled=use_scaler),
            params,
            train.grad_clip,
        )

    def step(
        self,
        objective: nn.Module,
        x: torch.Tensor,
        cond: torch.Tensor,
        lr: float,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> torch.Tensor:
        """One step at learning rate `lr`: forward under autocast, backward, unscale + clip, scaler step, zero_grad.

        `objective(x, cond)` returns `(loss, metrics)`; returns the (undetached) loss. Sets `skipped`.
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
        # and only then: a lower scale after `update` is a skipped step. Compared on the device, not read: with
        # the fused AdamW `scaler.step` hands its found-inf flag to the kernel without a host read either.
        scaling = self.scaler.is_enabled()
        before = _scale_now(self.scaler) if scaling else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if before is not None:
            self.skipped = (_scale_now(self.scaler) < before).to(torch.int64)
        self.optimizer.zero_grad(set_to_none=True)
        return loss
