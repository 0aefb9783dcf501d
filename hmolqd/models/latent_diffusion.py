"""Door-conditioned latent diffusion over the VQ-VAE's continuous (pre-quantization) latent grid.

Latents are multiplied by `latent_scale` (a buffer, 1/std of a batch of training latents) so the
diffusion works on roughly unit-variance data, as in latent diffusion (Rombach et al. 2022, section
4.3.2 / appendix G). Training is the DDPM simple loss (Ho et al. 2020) on eps or v (Salimans & Ho
2022); sampling is DDIM (Song et al. 2021) with classifier-free guidance (Ho & Salimans 2022).

Condition tokens `(B, K)` (see hmolqd.data.attributes): K = 4 door sides (hmolqd.data.tiles.SIDES
order) + 1 has-stairs when `ModelConfig.cond_stairs`; values ABSENT / PRESENT / UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hmolqd.config import ModelConfig, SamplingSettings
from hmolqd.data.attributes import UNKNOWN, drop_condition
from hmolqd.diffusion import gaussian
from hmolqd.models.conditioned import ConditionedDiffusion
from hmolqd.models.denoiser import Denoiser


class LatentDiffusion(ConditionedDiffusion):
    """Denoiser + schedule buffers + latent scale; `loss` for training, `sample` for DDIM generation; the condition
    is door sides (+ stairs), never room attributes (`ConditionedDiffusion`)."""

    def __init__(self, cfg: ModelConfig, latent_shape: tuple[int, int, int]) -> None:
        super().__init__(cfg, cond_attributes=False)
        self.latent_shape = tuple(latent_shape)
        self.prediction = cfg.prediction
        self.num_timesteps = cfg.num_timesteps
        betas, alphas_cumprod = gaussian.make_schedule(cfg.schedule, cfg.num_timesteps)
        self.register_buffer("betas", betas)  # (T,) float64
        self.register_buffer("alphas_cumprod", alphas_cumprod)  # (T,) float64
        self.register_buffer("latent_scale", torch.tensor(1.0))  # set by set_latent_scale before training
        self.denoiser = Denoiser(
            self.latent_shape, cfg.denoiser_dim, cfg.denoiser_depth, self.cond_size, in_context=cfg.cond_in_context
        )

    @torch.no_grad()
    def set_latent_scale(self, latents: torch.Tensor) -> float:
        """Set latent_scale = 1 / std of a batch of raw latents `(B, C, h, w)` (Rombach et al. 2022); returns it."""
        std = latents.detach().float().std()
        if not torch.isfinite(std) or float(std) < 1e-8:
            raise ValueError(
                f"set_latent_scale: latent std is {float(std)}; need a batch of finite, non-constant latents"
            )
        self.latent_scale.fill_(1.0 / float(std))
        return float(self.latent_scale)

    def loss(
        self, z0: torch.Tensor, cond: torch.Tensor, *, drop_prob: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """DDPM simple loss (Ho et al. 2020, eq. 14) on raw latents `z0 (B, C, h, w)` and condition `cond (B, K)`
        (tokens, or a bool tensor: False/True are ABSENT/PRESENT; see `room_condition`).

        t ~ U{0..T-1}, noise and condition dropout come from the global RNG. Gradients flow into z0 (detach
        it to keep the VQ-VAE fixed). Metrics are detached 0-dim tensors: diffusion_loss (the MSE on the
        target) and x0_mse (the implied x0 error, in scaled-latent units).
        """
        if z0.shape[1:] != self.latent_shape:
            raise ValueError(f"LatentDiffusion.loss: z0 must be (B, *{self.latent_shape}), got {tuple(z0.shape)}")
        x0 = z0 * self.latent_scale.to(z0.dtype)
        B = x0.shape[0]
        t = torch.randint(0, self.num_timesteps, (B,), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = gaussian.q_sample(x0, t, noise, self.alphas_cumprod)
        cond = drop_condition(cond.long(), drop_prob, self.groups)
        out = self.denoiser(x_t, t, cond).float()
        target = gaussian.training_target(x0, noise, t, self.prediction, self.alphas_cumprod).float()
        loss = F.mse_loss(out, target)
        with torch.no_grad():
            x0_hat, _ = gaussian.predict_x0_and_eps(out, x_t.float(), t, self.prediction, self.alphas_cumprod)
            x0_mse = F.mse_loss(x0_hat, x0.float())
        return loss, {"diffusion_loss": loss.detach(), "x0_mse": x0_mse}

    def guided_output(
        self, denoiser: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, guidance: float
    ) -> torch.Tensor:
        """Classifier-free guidance: uncond + s * (cond - uncond), both from one batched forward
        (Ho & Salimans 2022)."""
        B = x.shape[0]
        uncond = torch.full_like(cond, UNKNOWN)
        out = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))  # (2B, C, h, w)
        out_cond, out_uncond = out[:B], out[B:]
        return out_uncond + guidance * (out_cond - out_uncond)

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None,
        settings: SamplingSettings,
        *,
        generator: torch.Generator | None = None,
        denoiser: nn.Module | None = None,
        batch_size: int | None = None,
        x0_guide: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """DDIM-sample `n` raw (unscaled) latents `(n, C, h, w)`; `cond` is `(n, K)` tokens or None (unconditional);
        `settings` give sample_steps, ddim_eta and guidance_scale.

        All random draws (x_T, and per-step noise when eta > 0) come from `generator` (a CPU generator
        is fine; draws are moved to the model's device) for all n at once, and the n latents advance in
        lockstep with forwards chunked by `batch_size`, so the result does not depend on `batch_size`.
        `denoiser` defaults to self.denoiser; pass the EMA copy for sampling. Guidance 1 (or an all-UNKNOWN
        cond) runs the conditional forward only. `x0_guide(x0, t) -> x0` (e.g.
        `hmolqd.sampling.door_guidance.door_guide`) may move each step's clean estimate (scaled units); eps is
        then re-derived from x_t and the new x0.
        """
        steps, eta, guidance = settings.sample_steps, settings.ddim_eta, settings.guidance_scale
        denoiser = self.denoiser if denoiser is None else denoiser
        device = self.alphas_cumprod.device
        dtype = next(denoiser.parameters()).dtype
        if cond is None:
            cond = torch.full((n, self.cond_size), UNKNOWN, dtype=torch.long)
        if cond.shape != (n, self.cond_size):
            raise ValueError(
                f"LatentDiffusion.sample: cond must be ({n}, {self.cond_size}) tokens, got {tuple(cond.shape)}"
            )
        batch_size = n if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"LatentDiffusion.sample: batch_size must be >= 1, got {batch_size}")
        cond = cond.to(device=device, dtype=torch.long)
        needs_uncond = guidance != 1.0 and not bool((cond == UNKNOWN).all())
        timesteps = gaussian.ddim_timesteps(self.num_timesteps, steps).tolist()
        # x_T (n, C, h, w)
        x = torch.randn((n, *self.latent_shape), generator=generator, dtype=torch.float32).to(device)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            out = torch.empty_like(x)
            for lo in range(0, n, batch_size):
                xb, cb = x[lo : lo + batch_size], cond[lo : lo + batch_size]
                tb = torch.full((xb.shape[0],), t, dtype=torch.long, device=device)
                if needs_uncond:
                    out[lo : lo + batch_size] = self.guided_output(denoiser, xb.to(dtype), tb, cb, guidance).float()
                else:
                    out[lo : lo + batch_size] = denoiser(xb.to(dtype), tb, cb).float()
            x0, eps = gaussian.predict_x0_and_eps(out, x, t, self.prediction, self.alphas_cumprod)
            if x0_guide is not None:
                x0 = x0_guide(x0, t)
                eps = gaussian.eps_from_x0(x, x0, t, self.alphas_cumprod)
            fresh_noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device) if eta > 0 else None
            x = gaussian.ddim_step(x, t, t_prev, x0, eps, self.alphas_cumprod, eta, fresh_noise)
        return x / self.latent_scale.float()
