"""Sampling a discrete (code-index) RoomModel: condition tokens with room attributes, the unmasking loop of
CodeDiffusion.sample, then the VQ-VAE decoder; a requested mirror axis is made exact (`tie_mirrors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hmolqd.data.attributes import ATTRIBUTES, PRESENT, UNKNOWN, attribute_request
from hmolqd.data.tiles import INTERIOR, ROOM_H, ROOM_W
from hmolqd.models.room_model import RoomModel

MIRROR_SEED_OFFSET = 1  # the "one axis" draw uses its own generator, seeded seed + this


def default_requests(run: Any) -> dict[str, str]:
    """What a run config asks for when `generate` is not told: playable / symmetric as `ask_*` say."""
    return {"playable": run.ask_playable, "symmetric": run.ask_symmetric}


def mirror_request(n: int, ask_mirror: str, seed: int) -> torch.Tensor:
    """`(n, 2)` tokens for (mirror_rows, mirror_cols): "one" = one axis drawn 50/50 per room (the other
    open), "both" = both axes, "open" = neither asked."""
    out = torch.full((n, 2), UNKNOWN, dtype=torch.long)
    if ask_mirror == "both":
        out[:] = PRESENT
    elif ask_mirror == "one":
        rows = torch.rand(n, generator=torch.Generator().manual_seed(seed + MIRROR_SEED_OFFSET)) < 0.5  # (n,)
        out[:, 0] = torch.where(rows, PRESENT, UNKNOWN)
        out[:, 1] = torch.where(rows, UNKNOWN, PRESENT)
    elif ask_mirror != "open":
        raise ValueError(f"ask_mirror {ask_mirror!r} must be 'one', 'both' or 'open'")
    return out


def attribute_tokens(model: RoomModel, n: int, asked: Mapping[str, Any] | None, seed: int) -> torch.Tensor | None:
    """`(n, 6)` attribute tokens for a model with `cond_attributes` (None without): the request, then the run
    config's defaults; a mirror axis is asked (`ask_mirror`) only where the room is asked to be symmetric and
    neither axis was given."""
    if not model.cfg.cond_attributes:
        if asked:
            raise ValueError(f"generate: this model was trained without room attributes (cond_attributes false), got {sorted(asked)}")
        return None
    run = model.config.run
    tokens = attribute_request(n, asked, default_requests(run))
    if not {"mirror_rows", "mirror_cols"} & set(asked or {}):
        wants = tokens[:, ATTRIBUTES.index("symmetric")] == PRESENT  # (n,)
        axes = mirror_request(n, run.ask_mirror, seed)  # (n, 2)
        tokens[:, -2:] = torch.where(wants[:, None], axes, tokens[:, -2:])
    return tokens


def symmetrize_logits(logits: torch.Tensor, tie: torch.Tensor) -> torch.Tensor:
    """Average the decoder's tile log-probabilities `(B, 10, 16, 11)` over the requested mirror images of the
    interior (`tie (B, 2)`: rows, cols), so the argmax room is exactly symmetric: the symmetric room that
    maximises the summed log-probability of each mirrored pair of tiles."""
    lp = torch.log_softmax(logits.float(), dim=1)
    inner = lp[(slice(None), slice(None), *INTERIOR)]  # (B, 10, 12, 7)
    for axis, flag in ((2, tie[:, 0]), (3, tie[:, 1])):
        inner = torch.where(flag.view(-1, 1, 1, 1), 0.5 * (inner + inner.flip(axis)), inner)
    out = lp.clone()
    out[(slice(None), slice(None), *INTERIOR)] = inner
    return out


def generate_discrete(
    model: RoomModel, n: int, doors: torch.Tensor | None, stairs: torch.Tensor | None, attributes: Mapping[str, Any] | None,
    settings: dict[str, Any], *, seed: int, batch_size: int, use_ema: bool,
) -> torch.Tensor:
    """`generate` for model_kind "discrete": `(n, 16, 11)` uint8 rooms on the CPU."""
    cond = model.diffusion.condition_tokens(doors, stairs, n, attributes=attribute_tokens(model, n, attributes, seed))  # (n, K)
    if n == 0:
        return torch.empty((0, ROOM_H, ROOM_W), dtype=torch.uint8)
    tie = (cond[:, -2:] == PRESENT) if settings["tie_mirrors"] and model.cfg.cond_attributes else None  # (n, 2)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            codes = model.diffusion.sample(
                n, cond, steps=settings["steps"], guidance=settings["guidance"], sampler=settings["sampler"],
                temperature=settings["temperature"], noise=settings["noise"], generator=generator,
                denoiser=model.sampling_denoiser(use_ema), batch_size=batch_size, tie=tie, guide_attributes=settings["guide_attributes"],
            )  # (n, h, w)
            rooms = []
            for lo in range(0, n, batch_size):
                logits = model.vqvae.decode(model.vqvae.quantizer.lookup(codes[lo : lo + batch_size]))  # (b, 10, 16, 11)
                if tie is not None:
                    logits = symmetrize_logits(logits, tie[lo : lo + batch_size].to(logits.device))
                rooms.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(rooms).to(torch.uint8)
