"""Pure diffusion math: noise schedules, forward noising, prediction targets and DDIM steps.

Tensor functions only, no module state. Schedules are float64 (the products of 1000 factors lose
precision in float32); each function gathers its coefficients in float64 and casts them to the dtype
of the data it is given.

References:
- DDPM: Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (linear schedule, q_sample,
  posterior q(x_{t-1} | x_t, x_0)).
- Cosine schedule: Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", eq. 17.
- v-prediction: Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models".
- DDIM: Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eqs. 12 and 16.
- "Trailing" timestep spacing: Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
  Flawed", table 2 (the first DDIM step starts at t = T-1, where the model was trained on pure noise).

Timesteps `t` index the schedule from 0 (least noise) to T-1 (most noise). In `ddim_step`, `t_prev = -1`
stands for the clean end point (alpha_bar = 1).
"""

from __future__ import annotations

import math

import torch

SCHEDULES: tuple[str, ...] = ("linear", "cosine")
PREDICTIONS: tuple[str, ...] = ("eps", "v")

LINEAR_BETA_START = 1e-4  # Ho et al. 2020, section 4
LINEAR_BETA_END = 0.02
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal 2021, eq. 17
COSINE_MAX_BETA = 0.999  # their clip that keeps the last steps from being singular


def make_schedule(kind: str, num_timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(betas, alphas_cumprod)`, both float64 of shape `(T,)`.

    linear: betas evenly spaced from 1e-4 to 0.02 (Ho et al. 2020), for any T.
    cosine: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), betas = 1 - alpha_bar(t+1)/alpha_bar(t)
            clipped at 0.999 (Nichol & Dhariwal 2021).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"make_schedule: kind {kind!r} must be one of {SCHEDULES}")
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"make_schedule: num_timesteps must be an integer >= 1, got {num_timesteps!r}")
    if kind == "linear":
        betas = torch.linspace(LINEAR_BETA_START, LINEAR_BETA_END, num_timesteps, dtype=torch.float64)
    else:
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T+1,) in [0, 1]
        alpha_bar = torch.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=COSINE_MAX_BETA)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return betas, alphas_cumprod


def _coef(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Cast a float64 coefficient of shape `()` or `(B,)` to `like`'s dtype/device, broadcastable to `like`."""
    values = values.to(device=like.device)
    if values.dim() == 1:
        values = values.reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, ...)
    return values.to(like.dtype)


def _alpha_bar(t: torch.Tensor | int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """alpha_bar at integer timestep(s) `t` (int or `(B,)` long); t = -1 is the clean end point (1.0)."""
    T = alphas_cumprod.shape[0]
    # Tensors are range-checked on CPU only: on an accelerator that would force a host sync every step.
    checked = isinstance(t, int) or t.device.type == "cpu"
    t = torch.as_tensor(t, dtype=torch.long).to(alphas_cumprod.device)
    if checked and bool(((t < -1) | (t >= T)).any()):
        raise ValueError(f"timestep(s) {t.tolist()} out of range [-1, {T - 1}] (T = {T})")
    one = torch.ones((), dtype=alphas_cumprod.dtype, device=alphas_cumprod.device)
    return torch.where(t >= 0, alphas_cumprod[t.clamp(min=0)], one)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward noising x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps (Ho et al. 2020, eq. 4); x0, noise: `(B, ...)`,
    t: `(B,)`."""
    a = _alpha_bar(t, alphas_cumprod)
    return _coef(a.sqrt(), x0) * x0 + _coef((1 - a).sqrt(), x0) * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Velocity v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (Salimans & Ho 2022, section 4)."""
    a = _alpha_bar(t, alphas_cumprod)
    return _coef(a.sqrt(), x0) * noise - _coef((1 - a).sqrt(), x0) * x0


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: str, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """What the denoiser regresses: the noise itself ("eps") or the velocity ("v")."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        return v_target(x0, noise, t, alphas_cumprod)
    raise ValueError(f"prediction {prediction!r} must be one of {PREDICTIONS}")


def predict_x0_and_eps(
    model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, prediction: str, alphas_cumprod: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a denoiser output at `x_t` into the implied clean sample x0 and noise eps.

    eps: x0 = (x_t - sqrt(1 - a) eps) / sqrt(a).
    v:   x0 = sqrt(a) x_t - sqrt(1 - a) v,  eps = sqrt(1 - a) x_t + sqrt(a) v  (Salimans & Ho 2022).
    """
    a = _alpha_bar(t, alphas_cumprod)
    if (isinstance(t, int) and t < 0) or (a.device.type == "cpu" and bool((a >= 1).any())):
        raise ValueError("predict_x0_and_eps: t must be a real timestep in [0, T-1], not the clean end point -1")
    sa, s1a = _coef(a.sqrt(), x_t), _coef((1 - a).sqrt(), x_t)
    if prediction == "eps":
        return (x_t - s1a * model_out) / sa, model_out
    if prediction == "v":
        return sa * x_t - s1a * model_out, s1a * x_t + sa * model_out
    raise ValueError(f"prediction {prediction!r} must be one of {PREDICTIONS}")


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The noise implied by x_t and a clean estimate x0: eps = (x_t - sqrt(a) x0) / sqrt(1 - a)
    (Ho et al. 2020, eq. 4)."""
    a = _alpha_bar(t, alphas_cumprod)
    if float(a) >= 1:
        raise ValueError("eps_from_x0: t must be a real timestep in [0, T-1], not the clean end point -1")
    return (x_t - _coef(a.sqrt(), x_t) * x0) / _coef((1 - a).sqrt(), x_t)


def ddim_timesteps(num_timesteps: int, steps: int) -> torch.Tensor:
    """Descending `(steps,)` long timesteps for DDIM, "trailing" spacing: round(T * (steps - i) / steps) - 1.

    steps == T gives every timestep T-1, ..., 0 (plain ancestral DDPM when eta = 1); T=1000, steps=50 gives
    999, 979, ..., 19. Pair each with the next one, and the last with -1 (the clean end point).
    """
    if not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"ddim_timesteps: steps must be an integer in [1, T={num_timesteps}], got {steps!r}")
    frac = torch.arange(steps, 0, -1, dtype=torch.float64) * num_timesteps / steps  # (steps,) T ... T/steps
    return frac.round().long() - 1


def ddim_step(
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    x0: torch.Tensor,
    eps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM update x_t -> x_{t_prev} (Song et al. 2021, eq. 12):

    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma * noise,
    sigma  = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)   (eq. 16).

    eta = 0 is deterministic DDIM; eta = 1 with t_prev = t - 1 is the DDPM posterior q(x_{t-1} | x_t, x0)
    (Ho et al. 2020, eq. 7). `noise` (shaped like x_t) is needed only when sigma > 0.
    """
    if eta < 0:
        raise ValueError(f"ddim_step: eta must be >= 0, got {eta}")
    if not t_prev < t:
        raise ValueError(f"ddim_step: t_prev ({t_prev}) must be below t ({t})")
    a_t, a_prev = _alpha_bar(t, alphas_cumprod), _alpha_bar(t_prev, alphas_cumprod)
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
    direction = (1 - a_prev - sigma**2).clamp(min=0).sqrt()
    x_prev = _coef(a_prev.sqrt(), x_t) * x0 + _coef(direction, x_t) * eps
    if float(sigma) > 0:
        if noise is None:
            raise ValueError("ddim_step: eta > 0 needs a noise tensor")
        x_prev = x_prev + _coef(sigma, x_t) * noise
    return x_prev
