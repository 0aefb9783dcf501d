"""A small DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers") over the latent grid.

The VQ-VAE latent grid is tiny (4x3, 8x6 or 16x12 positions), so every position is one token (no
patchify). Time and the room condition are summed into one vector c that drives adaLN-Zero modulation
in every block; the modulation and output layers start at zero, so a fresh denoiser outputs zeros and
each block starts as the identity (DiT, section 3.2).

The condition is a `(B, K)` long tensor of tokens, one per attribute (the 4 door sides in the order of
`hmolqd.data.tiles.SIDES`, then has-stairs when `cond_stairs`, then the room attributes when
`cond_attributes`; hmolqd.data.attributes): ABSENT=0, PRESENT=1, UNKNOWN=2.
UNKNOWN is the dropped condition of classifier-free guidance (Ho & Salimans 2022); all-UNKNOWN is
unconditional. Each (attribute, value) pair has its own learned embedding, summed over attributes.

With `in_context=True` (ModelConfig.cond_in_context) every condition attribute is also appended as one
extra token that the latent tokens attend to (DiT's "in-context conditioning", section 3.2): a door is a
local feature of a few edge tokens, and attention lets exactly those tokens read its side, where the
summed adaLN vector mixes all attributes into one global modulation. The extra tokens are dropped
before the output layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hmolqd.data.attributes import COND_VALUES

HEAD_DIM = 64  # attention heads = width // 64 (at least 1)
MLP_RATIO = 4


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; DDPM): `(B,)` -> `(B, dim)` float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # x: (B, N, D), shift/scale: (B, D)


class DiTBlock(nn.Module):
    """Pre-norm self-attention + MLP, each modulated (shift, scale) and gated by c (adaLN-Zero)."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)  # on each residual branch (nanoGPT's resid_pdrop); identity in eval mode
        self.heads = max(1, dim // HEAD_DIM)
        if dim % self.heads:
            raise ValueError(
                f"denoiser_dim {dim} must be divisible by its {self.heads} attention heads (dim // {HEAD_DIM})"
            )
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, MLP_RATIO * dim), nn.GELU(approximate="tanh"), nn.Linear(MLP_RATIO * dim, dim)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, N, D)`, c `(B, D)`; attn_mask `(N, N)` bool (True = may attend) or None for full attention."""
        B, N, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        h = modulate(self.norm1(x), shift1, scale1)
        # each (B, H, N, D/H)
        q, k, v = self.qkv(h).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(B, N, D)
        x = x + gate1[:, None] * self.drop(self.proj(h))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.drop(self.mlp(h))


class Denoiser(nn.Module):
    """`(x_t (B, C, h, w), t (B,) long, cond (B, K) long) -> (B, C, h, w)` eps or v prediction."""

    def __init__(
        self, latent_shape: tuple[int, int, int], dim: int, depth: int, cond_size: int, in_context: bool = False
    ) -> None:
        super().__init__()
        channels, h, w = latent_shape
        self.latent_shape = (channels, h, w)
        self.cond_size = cond_size
        self.dim = dim
        self.embed = nn.Linear(channels, dim)
        self.pos = nn.Parameter(torch.randn(1, h * w, dim) * 0.02)  # learned; the grid size is fixed per model
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.cond_embed = nn.Embedding(cond_size * COND_VALUES, dim)
        nn.init.normal_(self.cond_embed.weight, std=0.02)
        self.register_buffer("cond_offset", torch.arange(cond_size) * COND_VALUES, persistent=False)  # (K,)
        self.in_context = in_context
        if in_context:  # one token per (attribute, value); separate from the adaLN table
            self.cond_token = nn.Embedding(cond_size * COND_VALUES, dim)
            nn.init.normal_(self.cond_token.weight, std=0.02)
        self.blocks = nn.ModuleList(DiTBlock(dim) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, channels)
        for layer in (self.ada_out[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition_vector(self, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """c = MLP(sinusoid(t)) + sum_k E[k, cond_k]: `(B,)`, `(B, K)` -> `(B, D)`."""
        if cond.dim() != 2 or cond.shape[1] != self.cond_size:
            raise ValueError(f"denoiser: cond must be (B, {self.cond_size}) tokens, got shape {tuple(cond.shape)}")
        # Value check on CPU only: on an accelerator it would force a host sync every forward.
        if cond.device.type == "cpu" and bool(((cond < 0) | (cond >= COND_VALUES)).any()):
            raise ValueError(
                f"denoiser: cond tokens must be ABSENT=0, PRESENT=1 or UNKNOWN=2, got {cond.unique().tolist()}"
            )
        emb = self.time_mlp(timestep_embedding(t, self.dim).to(self.embed.weight.dtype))
        return emb + self.cond_embed(cond.long() + self.cond_offset).sum(dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, C, h, w = x.shape
        if (C, h, w) != self.latent_shape:
            raise ValueError(f"denoiser: latents must be (B, *{self.latent_shape}), got {tuple(x.shape)}")
        c = self.condition_vector(t, cond)  # (B, D)
        tokens = self.embed(x.flatten(2).transpose(1, 2)) + self.pos  # (B, h*w, D)
        if self.in_context:
            tokens = torch.cat([tokens, self.cond_token(cond.long() + self.cond_offset)], dim=1)  # (B, h*w + K, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        tokens = tokens[:, : h * w]  # (B, h*w, D): the condition tokens carry no output
        shift, scale = self.ada_out(c).chunk(2, dim=1)
        out = self.out(modulate(self.norm_out(tokens), shift, scale))  # (B, h*w, C)
        return out.transpose(1, 2).reshape(B, C, h, w)
