"""Helpers shared by the model tests (not a test module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from hmolqd.training.trainee import TINY_MODEL as _TINY_MODEL

if TYPE_CHECKING:
    from hmolqd.training.optim import Optimization
    from hmolqd.training.runtime import Runtime


def randomize_zero_init(module: nn.Module, std: float = 0.2) -> nn.Module:
    """adaLN-Zero makes a fresh denoiser output exactly 0 whatever its inputs; give those layers weights."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


# The one tiny model of the tests: the package's own (the trainer self-check's), a real discrete RoomModel whose
# every state round trip takes milliseconds. A test that needs other values says why beside them.
TINY_MODEL = dict(_TINY_MODEL)

# The CLI tests: the tiny model with two sampling steps (an untrained export is enough to exercise the commands).
TINY_CLI_MODEL = {**TINY_MODEL, "sample_steps": 2}


def fp16_toy() -> tuple[nn.Module, Runtime, Optimization, Callable[..., tuple[torch.Tensor, dict]]]:
    """A small MLP with the trainer's fp16 step on the CPU (GradScaler on) and its objective: `cond` (B, 1) scales
    the loss, so a large `cond` gives gradients beyond fp16's range once scaled (a step the scaler skips)."""
    from hmolqd.config import Config
    from hmolqd.training.optim import Optimization
    from hmolqd.training.runtime import setup_runtime

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    rt = setup_runtime("cpu", use_amp="fp16")
    o = Optimization.create(model.parameters(), Config().train, "cpu", rt.use_scaler)

    def objective(x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return (model(x).float() * cond).mean(), {}

    return model, rt, o, objective
