"""Absorbing-state discrete diffusion over the VQ-VAE's code indices (ModelConfig.model_kind = "discrete").

The room is the `(h, w)` grid of codebook indices the VQ-VAE assigns to it (8x6 for downsample 2); the
model generates those exact indices, so no continuous estimate is ever snapped to the codebook. The forward
process masks codes ([MASK] = index num_embeddings), the denoiser predicts the clean code at every position,
and sampling unmasks in a few parallel steps (the math and its citations: hmolqd.diffusion.absorbing;
Austin et al. 2021, Gu et al. 2022, Chang et al. 2022).

CodeDenoiser: the DiT block of hmolqd.models.denoiser (Peebles & Xie 2023) with code embeddings in and code
logits out: `codes (B, h, w) long in [0, K]` + `cond (B, C) tokens` -> `logits (B, h*w, K)`. The condition
(door sides, stairs, room attributes; hmolqd.data.attributes) drives adaLN-Zero and, with
`cond_in_context`, is also appended as tokens. No timestep input: the number of [MASK] tokens tells the
network how far sampling is (MaskGIT; Sahoo et al. 2024 find time conditioning unnecessary here).
`attn_radius` r > 0 lets a code cell attend only to the cells within Chebyshev distance r (a 2x2 tile patch
mostly depends on its neighbours; measured better than global attention, bench/QUALITY.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hmolqd.config import ModelConfig, SamplingSettings
from hmolqd.data.attributes import ATTRIBUTES, UNKNOWN, drop_condition
from hmolqd.device import resolve_sample_dtype
from hmolqd.diffusion import absorbing
from hmolqd.models.conditioned import ConditionedDiffusion
from hmolqd.models.denoiser import COND_VALUES, DiTBlock, modulate

SAMPLERS: tuple[str, ...] = ("random", "confidence")


def _in_dtype(denoiser: nn.Module, dtype: str, device: torch.device) -> Callable[..., torch.Tensor]:
    """`denoiser` as sampling calls it: as is for "float32"; for "bfloat16" its forward under autocast (its
    matrix products in bf16, about half the time on a CPU with native bf16) and its logits back in float32, so
    the guidance, softmax and draws stay float32."""
    if dtype == "float32":
        return denoiser

    def forward(*args: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out = denoiser(*args)
        return out.float()

    return forward


def local_attention_mask(grid: tuple[int, int], extra: int, radius: int) -> torch.Tensor | None:
    """`(N + extra, N + extra)` bool (True = may attend), or None for full attention (radius 0): a code cell
    sees the cells within Chebyshev distance `radius` and every condition token; condition tokens see all."""
    if radius <= 0:
        return None
    h, w = grid
    r = torch.arange(h).repeat_interleave(w)  # (N,) row of each cell
    c = torch.arange(w).repeat(h)  # (N,) column
    near = ((r[:, None] - r[None]).abs() <= radius) & ((c[:, None] - c[None]).abs() <= radius)  # (N, N)
    mask = torch.ones(h * w + extra, h * w + extra, dtype=torch.bool)
    mask[: h * w, : h * w] = near
    return mask


class CodeDenoiser(nn.Module):
    """`(codes (B, h, w) long, cond (B, C) long) -> logits (B, h*w, K)` over the K codebook entries."""

    def __init__(self, cfg: ModelConfig, grid: tuple[int, int], cond_size: int) -> None:
        super().__init__()
        dim, K = cfg.denoiser_dim, cfg.num_embeddings
        self.grid, self.num_codes, self.cond_size = tuple(grid), K, cond_size
        n = grid[0] * grid[1]
        self.embed = nn.Embedding(K + 1, dim)  # the last row is [MASK]
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.cond_embed = nn.Embedding(cond_size * COND_VALUES, dim)
        nn.init.normal_(self.cond_embed.weight, std=0.02)
        self.cond_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("cond_offset", torch.arange(cond_size) * COND_VALUES, persistent=False)  # (C,)
        self.in_context = cfg.cond_in_context
        if self.in_context:
            self.cond_token = nn.Embedding(cond_size * COND_VALUES, dim)
            nn.init.normal_(self.cond_token.weight, std=0.02)
        self.blocks = nn.ModuleList(DiTBlock(dim, cfg.denoiser_dropout) for _ in range(cfg.denoiser_depth))
        extra = cond_size if self.in_context else 0
        self.register_buffer("attn_mask", local_attention_mask(self.grid, extra, cfg.attn_radius), persistent=False)
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, K)
        for layer in (self.ada_out[1], self.out):  # adaLN-Zero: a fresh model predicts uniform logits
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, codes: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B = codes.shape[0]
        if tuple(codes.shape[1:]) != self.grid:
            raise ValueError(
                f"code denoiser: codes must be (B, {', '.join(map(str, self.grid))}), got {tuple(codes.shape)}"
            )
        if tuple(cond.shape) != (B, self.cond_size):
            raise ValueError(f"code denoiser: cond must be ({B}, {self.cond_size}) tokens, got {tuple(cond.shape)}")
        cond_ids = cond.long() + self.cond_offset  # (B, C)
        c = self.cond_embed(cond_ids).sum(1) + self.cond_bias  # (B, D)
        x = self.embed(codes.flatten(1)) + self.pos  # (B, N, D)
        n = x.shape[1]
        if self.in_context:
            x = torch.cat([x, self.cond_token(cond_ids)], dim=1)  # (B, N + C, D)
        for block in self.blocks:
            x = block(x, c, self.attn_mask)
        shift, scale = self.ada_out(c).chunk(2, dim=1)  # (B, D) each
        return self.out(modulate(self.norm_out(x[:, :n]), shift, scale))  # (B, N, K)


class CodeDiffusion(ConditionedDiffusion):
    """CodeDenoiser + the absorbing-state process: `loss` for training, `sample` for generation; the condition
    takes the room attributes when `cond_attributes` (`ConditionedDiffusion`)."""

    def __init__(self, cfg: ModelConfig, grid: tuple[int, int]) -> None:
        super().__init__(cfg, cond_attributes=cfg.cond_attributes)
        self.grid = tuple(grid)
        self.mask_id = cfg.num_embeddings
        self.denoiser = CodeDenoiser(cfg, self.grid, self.cond_size)
        # The code of the mirrored patch, per code (identity until set_mirror_maps): rows = top <-> bottom,
        # cols = left <-> right. With vq_local and column_pad "center" a mirror of the room is a mirror of the
        # code grid followed by this permutation.
        self.register_buffer("mirror_rows", torch.arange(cfg.num_embeddings))  # (K,)
        self.register_buffer("mirror_cols", torch.arange(cfg.num_embeddings))  # (K,)

    @torch.no_grad()
    def set_mirror_maps(self, codes: torch.Tensor, codes_rows: torch.Tensor, codes_cols: torch.Tensor) -> None:
        """Learn the two code permutations from rooms' codes `(M, h, w)` and the codes of the same rooms
        mirrored across rows / columns: the most frequent image of each code; unseen codes map to themselves."""
        K = self.cfg.num_embeddings
        for buf, mirrored in ((self.mirror_rows, codes_rows.flip(1)), (self.mirror_cols, codes_cols.flip(2))):
            # code -> code of its mirror image
            pairs = codes.flatten().long().cpu() * K + mirrored.flatten().long().cpu()
            counts = torch.bincount(pairs, minlength=K * K).view(K, K)
            buf.copy_(torch.where(counts.sum(1) > 0, counts.argmax(1), torch.arange(K)).to(buf.device))

    def tie_mirrors(self, x: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
        """Make the interior of each code grid `x (B, N)` mirror-symmetric where `tie (B, 2)` (rows, cols) asks:
        interior cells of the bottom (right) half take the mirrored code of their top (left) partner; [MASK]
        stays [MASK]. The interior code cells are those of tile rows 2-13 / tile columns 2-8."""
        h, w = self.grid
        g = x.view(-1, h, w).clone()
        inner = (slice(None), slice(1, h - 1), slice(1, w - 1))
        for axis, perm, flag in ((1, self.mirror_rows, tie[:, 0]), (2, self.mirror_cols, tie[:, 1])):
            core = g[inner]  # (B, h-2, w-2)
            size, half = core.shape[axis], core.shape[axis] // 2
            src = core.narrow(axis, 0, half)  # top / left half (an odd middle line stays as it is)
            image = torch.where(src == self.mask_id, src, perm[src.clamp(max=self.mask_id - 1)]).flip(axis)
            tied = torch.cat([src, core.narrow(axis, half, size - 2 * half), image], dim=axis)
            g[inner] = torch.where(flag.view(-1, 1, 1), tied, core)
        return g.view_as(x)

    def loss(
        self, codes: torch.Tensor, cond: torch.Tensor, *, drop_prob: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean masked cross-entropy (hmolqd.diffusion.absorbing) of `codes (B, h, w)` at t ~ U[0, 1]; global RNG."""
        B = codes.shape[0]
        x0 = codes.flatten(1).long()  # (B, N)
        t = torch.rand(B, device=x0.device)  # (B,) the time: how much of each room is masked
        # (B,) float64 where t is: a round trip through the host would sync every training step
        ratio = absorbing.mask_ratio(t.double(), self.cfg.mask_schedule)
        u_mask = torch.rand(x0.shape, device=x0.device)  # (B, N) which tokens are masked
        x_t, masked = absorbing.mask_tokens(x0, ratio, self.mask_id, u_mask)
        cond = drop_condition(cond.long(), drop_prob, self.groups)
        logits = self.denoiser(x_t.view_as(codes), cond)  # (B, N, K)
        loss = absorbing.masked_cross_entropy(logits, x0, masked).mean()
        with torch.no_grad():
            acc = ((logits.argmax(-1) == x0) & masked).sum() / masked.sum().clamp(min=1)
        return loss, {"diffusion_loss": loss.detach(), "masked_accuracy": acc.detach()}

    def _log_probs(
        self,
        denoiser: Callable[..., torch.Tensor],
        x: torch.Tensor,
        cond: torch.Tensor,
        guidance: float,
        guide_from: int,
    ) -> torch.Tensor:
        """Guided log-probabilities `(B, N, K)`, conditional and "unconditional" rows in one batched forward.
        The unconditional rows leave the condition columns from `guide_from` on open (0 = all of them)."""
        B = x.shape[0]
        grid = x.view(B, *self.grid)
        if guidance == 1.0 or bool((cond[:, guide_from:] == UNKNOWN).all()):
            return absorbing.guided_log_probs(denoiser(grid, cond), None, 1.0)
        uncond = cond.clone()
        uncond[:, guide_from:] = UNKNOWN
        out = denoiser(torch.cat([grid, grid]), torch.cat([cond, uncond]))  # (2B, N, K)
        return absorbing.guided_log_probs(out[:B], out[B:], guidance)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        settings: SamplingSettings,
        *,
        generator: torch.Generator | None = None,
        denoiser: nn.Module | None = None,
        batch_size: int | None = None,
        tie: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One code grid per row of `cond (n, K)` tokens -> `(n, h, w)` long, no [MASK] left, sampled as `settings`
        say (sample_steps, guidance_scale, sampler, sample_temperature, mask_noise, guide_attributes). The random
        numbers of all n rooms are drawn per step from `generator` (CPU) and the network runs in chunks of
        `batch_size`: the result does not depend on it. `tie (n, 2)` bool makes the requested mirror axes exact."""
        denoiser = self.denoiser if denoiser is None else denoiser
        device = next(denoiser.parameters()).device
        forward = _in_dtype(denoiser, resolve_sample_dtype(settings.sample_dtype, device), device)
        n, N = cond.shape[0], self.grid[0] * self.grid[1]
        if tuple(cond.shape) != (n, self.cond_size):
            raise ValueError(
                f"CodeDiffusion.sample: cond must be (n, {self.cond_size}) tokens, got {tuple(cond.shape)}"
            )
        if settings.sampler not in SAMPLERS:
            raise ValueError(
                f"CodeDiffusion.sample: sampler {settings.sampler!r} must be one of {SAMPLERS} (config key sampler)"
            )
        steps, guidance = settings.sample_steps, settings.guidance_scale
        batch_size = max(n, 1) if batch_size is None else batch_size
        guide_from = self.cond_size - len(ATTRIBUTES) if settings.guide_attributes and self.cfg.cond_attributes else 0
        ratios = absorbing.step_ratios(steps, self.cfg.mask_schedule)
        cond = cond.to(device=device, dtype=torch.long)
        tie = None if tie is None else tie.to(device)
        x = torch.full((n, N), self.mask_id, dtype=torch.long, device=device)  # (n, N) all [MASK]
        for i in range(steps):
            # Which masked cells this step reveals: the reveal coins ("random") or the Gumbel noise that ranks the
            # confidences ("confidence"); then which code each cell draws. Drawn in this order for every sampler.
            u_reveal = torch.rand((n, N), generator=generator).to(device)
            u_code = torch.rand((n, N), generator=generator).to(device)
            new = torch.empty_like(x)
            for lo in range(0, n, batch_size):
                sl = slice(lo, lo + batch_size)
                lp = self._log_probs(forward, x[sl], cond[sl], guidance, guide_from)  # (b, N, K)
                if settings.sampler == "random":
                    new[sl] = absorbing.unmask_random(
                        x[sl],
                        lp,
                        ratios[i],
                        ratios[i + 1],
                        self.mask_id,
                        u_reveal=u_reveal[sl],
                        u_code=u_code[sl],
                        temperature=settings.sample_temperature,
                    )
                else:
                    keep = int(round(ratios[i + 1] * N))
                    anneal = settings.mask_noise * (1 - (i + 1) / steps)  # MaskGIT's choice temperature, linearly to 0
                    new[sl] = absorbing.unmask_confidence(
                        x[sl],
                        lp,
                        keep,
                        self.mask_id,
                        u_code=u_code[sl],
                        u_reveal=u_reveal[sl],
                        noise=anneal,
                        temperature=settings.sample_temperature,
                    )
            x = new if tie is None else self.tie_mirrors(new, tie)
        return x.view(n, *self.grid)
