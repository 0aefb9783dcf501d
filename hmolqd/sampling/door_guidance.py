"""Door guidance: steer DDIM's clean-latent estimate towards the requested door sides through the frozen decoder.

The door condition enters the denoiser as tokens, but the diffusion MSE barely rewards obeying it: a door
is a few band tiles, a small part of the latent, and at the high noise levels where doors are decided the
conditional and unconditional x0 estimates differ little. So at every DDIM step the estimate x0 is moved
down the gradient of a door loss on the VQ-VAE decoder's tile probabilities (guidance by a differentiable
loss on x0, as in Bansal et al. 2023, "Universal Guidance for Diffusion Models", forward guidance; the
decoder plays the classifier). Rooms whose door group is UNKNOWN are left alone.

Door regions are those of `hmolqd.data.tiles.door_sides`: rows 0-1 / 14-15 within columns 2-8 (top /
bottom), columns 0-1 / 9-10 within rows 2-13 (left / right).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hmolqd.data.tiles import DOOR, ROOM_W

# (rows, cols) of each side's door region, in SIDES order (top, bottom, left, right).
DOOR_REGIONS: tuple[tuple[slice, slice], ...] = (
    (slice(0, 2), slice(2, 9)),
    (slice(14, 16), slice(2, 9)),
    (slice(2, 14), slice(0, 2)),
    (slice(2, 14), slice(9, 11)),
)


def door_loss(logits: torch.Tensor, doors: torch.Tensor) -> torch.Tensor:
    """Tile logits `(B, NUM_TILES, 16, 11)`, requested doors `(B, 4)` bool -> `(B,)` loss.

    Per side: requested -> -log P(some region tile is a door) ~ -logsumexp of the door log-probs;
    not requested -> -sum log(1 - P(door)) over the region (every tile must avoid D).
    """
    logp = logits[..., :ROOM_W].float().log_softmax(dim=1)[:, DOOR]  # (B, 16, 11) log P(D)
    loss = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    for side, (rows, cols) in enumerate(DOOR_REGIONS):
        lp = logp[:, rows, cols].flatten(1)  # (B, region tiles)
        present = -torch.logsumexp(lp, dim=1).clamp(max=0)
        absent = -torch.log1p(-lp.exp().clamp(max=1 - 1e-6)).sum(dim=1)
        loss = loss + torch.where(doors[:, side].to(loss.device), present, absent)
    return loss


def door_guide(
    decode: Callable[[torch.Tensor], torch.Tensor],
    latent_scale: float,
    doors: torch.Tensor,
    strength: float,
    iters: int = 1,
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """A hook `(x0 (n, C, h, w) scaled latents, t) -> x0` for `LatentDiffusion.sample`.

    `decode` maps raw latents to tile logits (the VQ-VAE decoder, frozen); `doors` `(n, 4)` bool; the
    step is `strength` times the per-room gradient of `door_loss`, `iters` times.
    """
    if strength < 0:
        raise ValueError(f"door guidance strength must be >= 0 (config key door_guidance), got {strength}")

    def guide(x0: torch.Tensor, t: int) -> torch.Tensor:
        if strength == 0:
            return x0
        x = x0.detach()
        for _ in range(iters):
            with torch.enable_grad():
                x = x.requires_grad_(True)
                loss = door_loss(decode(x / latent_scale), doors).sum()
                (grad,) = torch.autograd.grad(loss, x)
            x = (x - strength * grad).detach()
        return x

    return guide


def decoder_logits(vqvae: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Continuous latents `(B, C, h, w)` -> tile logits through the VQ-VAE decoder (no snapping, differentiable)."""
    return lambda z: vqvae.decoder(z)
