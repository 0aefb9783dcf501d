"""Helpers shared by the model tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn

from hmolqd.training.trainee import TINY_MODEL as _TINY_MODEL


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
