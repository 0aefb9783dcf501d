"""Pure math of absorbing-state ([MASK]) discrete diffusion over code indices: tensor functions only.

Forward process (Austin et al. 2021, "Structured Denoising Diffusion Models in Discrete State-Spaces",
D3PM with an absorbing state, section 3 / appendix B.2): at time t in [0, 1] every token of x_0 is
independently replaced by [MASK] with probability m(t), and kept otherwise:

    q(x_t | x_0) = m(t) * [x_t = MASK] + (1 - m(t)) * [x_t = x_0],   m(0) = 0, m(1) = 1.

Schedules m(t): "linear" m = t (the continuous-time absorbing process; Sahoo et al. 2024, "Simple and
Effective Masked Diffusion Language Models"), "cosine" m = sin(pi t / 2), which is MaskGIT's
cos(pi r / 2) mask ratio at progress r = 1 - t (Chang et al. 2022, section 3.2).

Loss: cross-entropy of the clean code at the masked positions only (an unmasked token is already known),
averaged over the masked tokens of each sequence (MaskGIT eq. 1; VQ-Diffusion, Gu et al. 2022, trains the
same x_0-parameterisation). Under the linear schedule the continuous-time ELBO is
-E_t[(1/t) sum_masked log p(x_0 | x_t)] (Sahoo et al. 2024, eq. 10) and E[#masked] = t N, so N times the
mean masked cross-entropy is its per-t estimate.

Reverse step t -> s < t (Austin et al. 2021, absorbing posterior): a masked token stays masked with
probability m(s) / m(t) and is otherwise revealed as a draw from p_theta(x_0 | x_t); a revealed token never
changes (`unmask_random`, ancestral sampling in random order). `unmask_confidence` is MaskGIT's parallel
decoding: draw every masked token, keep the round(m(s) N) least confident draws masked; confidence =
log p(draw) + noise * Gumbel, the noise annealed to 0 by the caller.

Every random number is passed in (uniforms shaped like the tokens), so a caller can draw them for a whole
sample at once and run the network in chunks: the result does not depend on the chunking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MASK_SCHEDULES: tuple[str, ...] = ("linear", "cosine")


def mask_ratio(t: torch.Tensor | float, schedule: str) -> torch.Tensor:
    """m(t): the masked fraction at time t in [0, 1]; m(0) = 0, m(1) = 1, increasing. float64, on t's device."""
    t = torch.as_tensor(t, dtype=torch.float64)
    # Checked on CPU only: on an accelerator the check would be a host sync in every training step.
    if t.device.type == "cpu" and bool(((t < 0) | (t > 1)).any()):
        raise ValueError(f"mask_ratio: t must lie in [0, 1], got {t.tolist()}")
    if schedule == "linear":
        return t
    if schedule == "cosine":
        return torch.sin(t * math.pi / 2)
    raise ValueError(f"mask_ratio: schedule {schedule!r} must be one of {MASK_SCHEDULES} (config key mask_schedule)")


def mask_tokens(
    x0: torch.Tensor, ratio: torch.Tensor, mask_id: int, uniform: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward process q(x_t | x_0): `x0 (B, N)` long, `ratio (B,)` = m(t), `uniform (B, N)` in [0, 1).

    Returns `(x_t (B, N), masked (B, N) bool)`: a token is masked where uniform < m(t).
    """
    if x0.shape != uniform.shape:
        raise ValueError(
            f"mask_tokens: x0 {tuple(x0.shape)} and uniform {tuple(uniform.shape)} must have the same shape"
        )
    masked = uniform < ratio.to(uniform.dtype).reshape(-1, *([1] * (x0.dim() - 1)))  # (B, N)
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def masked_cross_entropy(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean cross-entropy over the masked positions: `logits (B, N, V)`, `x0 (B, N)`,
    `masked (B, N)` -> `(B,)`; 0 for a sequence with nothing masked (t = 0: nothing to predict)."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), x0, reduction="none")  # (B, N)
    return (ce * masked).sum(1) / masked.sum(1).clamp(min=1)


def guided_log_probs(cond_logits: torch.Tensor, uncond_logits: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits (Ho & Salimans 2022, applied to categorical outputs as in
    VQ-Diffusion, Gu et al. 2022): log p_u + s (log p_c - log p_u), renormalised. `(..., V)` -> `(..., V)`."""
    lc = F.log_softmax(cond_logits.float(), dim=-1)
    if uncond_logits is None or scale == 1.0:
        return lc
    lu = F.log_softmax(uncond_logits.float(), dim=-1)
    return F.log_softmax(lu + scale * (lc - lu), dim=-1)


def sample_categorical(log_probs: torch.Tensor, uniform: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Inverse-CDF draw from softmax(log_probs / temperature): `(..., V)`, `uniform (...)` -> `(...)` long."""
    if temperature <= 0:
        raise ValueError(
            f"sample_categorical: temperature must be > 0 (config key sample_temperature), got {temperature}"
        )
    cdf = F.softmax(log_probs / temperature, dim=-1).cumsum(-1)  # (..., V)
    idx = (cdf < uniform.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return idx.clamp(max=log_probs.shape[-1] - 1)


def unmask_random(
    x_t: torch.Tensor,
    log_probs: torch.Tensor,
    ratio_t: float,
    ratio_s: float,
    mask_id: int,
    u_reveal: torch.Tensor,
    u_code: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Ancestral step t -> s of the absorbing reverse process: `x_t (B, N)`, `log_probs (B, N, V)` -> `(B, N)`.

    Each masked token is revealed with probability (m(t) - m(s)) / m(t) (all of them when m(s) = 0) as a
    draw from the (guided) model distribution; revealed tokens are kept. The uniforms `(B, N)`: `u_reveal`
    decides which masked tokens are revealed (u_reveal >= m(s) / m(t)), `u_code` the code each one draws.
    """
    if not 0 <= ratio_s < ratio_t <= 1:
        raise ValueError(f"unmask_random: need 0 <= m(s) < m(t) <= 1, got m(t)={ratio_t}, m(s)={ratio_s}")
    reveal = (x_t == mask_id) & (u_reveal >= ratio_s / ratio_t)  # (B, N)
    return torch.where(reveal, sample_categorical(log_probs, u_code, temperature), x_t)


def unmask_confidence(
    x_t: torch.Tensor,
    log_probs: torch.Tensor,
    keep_masked: int,
    mask_id: int,
    u_code: torch.Tensor,
    u_reveal: torch.Tensor,
    noise: float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """MaskGIT step: draw every masked token, keep `keep_masked` of them masked (the least confident).

    The uniforms `(B, N)`: `u_code` decides the code each masked token draws, `u_reveal` the Gumbel noise that
    ranks the confidences, i.e. which draws are revealed: confidence = log p(draw) + noise * Gumbel(u_reveal)
    for masked tokens; tokens already revealed never change. `keep_masked` is clipped to the number of masked
    tokens minus 1 per row, so a step reveals at least one token while any remain; 0 reveals everything.
    """
    masked = x_t == mask_id  # (B, N)
    draw = sample_categorical(log_probs, u_code, temperature)  # (B, N)
    chosen = log_probs.gather(-1, draw.unsqueeze(-1)).squeeze(-1)  # (B, N) log p(draw), untempered
    gumbel = -torch.log(-torch.log(u_reveal.clamp(1e-20, 1 - 1e-7)))
    conf = torch.where(masked, chosen + noise * gumbel, torch.full_like(chosen, math.inf))
    n_masked = masked.sum(1, keepdim=True)  # (B, 1)
    keep = torch.minimum(torch.full_like(n_masked, keep_masked), (n_masked - 1).clamp(min=0))  # (B, 1)
    rank = conf.argsort(1).argsort(1)  # (B, N) 0 = least confident
    return torch.where(masked & (rank >= keep), draw, x_t)


def step_ratios(steps: int, schedule: str) -> list[float]:
    """m(t_i) at t_i = 1 - i / steps, i = 0..steps: from 1 (all masked) down to 0."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"step_ratios: steps must be an integer >= 1 (config key sample_steps), got {steps!r}")
    t = torch.tensor([1 - i / steps for i in range(steps + 1)], dtype=torch.float64)
    return mask_ratio(t.clamp(0, 1), schedule).tolist()
