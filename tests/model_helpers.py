"""Helpers shared by the model tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn


def randomize_zero_init(module: nn.Module, std: float = 0.2) -> nn.Module:
    """adaLN-Zero makes a fresh denoiser output exactly 0 whatever its inputs; give those layers weights."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


# A tiny discrete room model for the CLI tests (an untrained export is enough to exercise the commands).
TINY_CLI_MODEL = {
    "num_embeddings": 16,
    "latent_dim": 4,
    "embedding_dim": 16,
    "denoiser_dim": 32,
    "denoiser_depth": 1,
    "num_timesteps": 50,
    "sample_steps": 2,
}
