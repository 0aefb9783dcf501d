"""Generate rooms from a trained RoomModel: `generate(model, n)`.

A discrete model unmasks code indices (hmolqd.sampling.discrete); a continuous one runs DDIM in latent
space, snaps to the codebook and decodes. Every sampling setting left None comes from the run config
stored with the model (`model.config.run.sampling`: the settings it was trained and measured with), so
`generate(model, n)` samples the way the model's own report did. `generate` is deterministic for a seed
(its own CPU torch.Generator, independent of the global RNG) and its output does not depend on `batch_size`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from hmolqd.config import SamplingSettings
from hmolqd.data.tiles import ROOM_H, ROOM_W, SIDES
from hmolqd.device import resolve_sample_dtype
from hmolqd.models.modes import eval_mode
from hmolqd.models.room_model import RoomModel
from hmolqd.render import SCREEN_SIDES, SCREEN_TO_TEXT_SIDE
from hmolqd.sampling.discrete import Request, generate_discrete, sample_options
from hmolqd.sampling.door_guidance import decoder_logits, door_guide

TRUE_WORDS = ("1", "true", "yes", "y")
FALSE_WORDS = ("0", "false", "no", "n")


DOOR_NAMES_HELP = (
    f"comma-separated sides as seen on screen: {', '.join(SCREEN_SIDES)} (e.g. 'north,west'; '' = no doors); "
    "the text-grid names are accepted too (text "
    + ", ".join(f"{t} = {s}" for s, t in SCREEN_TO_TEXT_SIDE.items())
    + ")"
)


def parse_doors(doors: torch.Tensor | str | None, n: int) -> torch.Tensor | None:
    """None (unconditional), a `(4,)` / `(n, 4)` bool tensor, or a string of sides -> `(n, 4)` bool in SIDES
    order, or None.

    A string names the sides as seen on screen, "north,west" (see `hmolqd.render.TEXT_TO_SCREEN_SIDE`),
    or by their text-grid names "left,top" (the same room: text left = north, text top = west); the
    two vocabularies do not overlap. "" = a room without doors.
    """
    if doors is None:
        return None
    if isinstance(doors, str):
        names = [s.strip().lower() for s in doors.split(",") if s.strip()]
        unknown = [s for s in names if s not in SIDES and s not in SCREEN_TO_TEXT_SIDE]
        if unknown:
            raise ValueError(f"unknown door side(s) {unknown}; use {DOOR_NAMES_HELP}")
        text = {SCREEN_TO_TEXT_SIDE.get(name, name) for name in names}
        doors = torch.tensor([side in text for side in SIDES])
    doors = torch.as_tensor(doors)
    if doors.dtype != torch.bool:
        raise TypeError(f"doors must be a bool tensor (sides {SIDES}), got dtype {doors.dtype}")
    if doors.shape == (len(SIDES),):
        return doors.expand(n, len(SIDES)).clone()
    if doors.shape != (n, len(SIDES)):
        raise ValueError(
            f"doors must have shape ({len(SIDES)},) or ({n}, {len(SIDES)}) (sides {SIDES}), got {tuple(doors.shape)}"
        )
    return doors.cpu()


def parse_stairs(stairs: torch.Tensor | bool | str | None, n: int) -> torch.Tensor | None:
    """None (unconditional), a bool, a `()` / `(n,)` bool tensor, or "yes"/"no" -> `(n,)` bool, or None."""
    if stairs is None:
        return None
    if isinstance(stairs, str):
        word = stairs.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"stairs {stairs!r} is not one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
        stairs = word in TRUE_WORDS
    stairs = torch.as_tensor(stairs)
    if stairs.dtype != torch.bool:
        raise TypeError(f"stairs must be a bool or bool tensor, got dtype {stairs.dtype}")
    if stairs.dim() == 0:
        return stairs.expand(n).clone()
    if stairs.shape != (n,):
        raise ValueError(f"stairs must be a bool, or a tensor of shape ({n},), got {tuple(stairs.shape)}")
    return stairs.cpu()


def sampling_settings(model: RoomModel, **overrides: Any) -> SamplingSettings:
    """The model's own sampling settings (its run config's) with every override that is not None applied;
    an override is a config key or one of generate's short keywords (steps, guidance, eta, temperature, noise).
    sample_dtype "auto" is resolved for the model's device, so the settings say what the rooms were drawn with."""
    settings = model.config.run.sampling.with_overrides(**overrides)
    dtype = resolve_sample_dtype(settings.sample_dtype, next(model.parameters()).device)
    return settings if dtype == settings.sample_dtype else dataclasses.replace(settings, sample_dtype=dtype)


def sampler_options(model: RoomModel) -> dict[str, dict[str, Any]]:
    """Every sampler this model supports, by name -> the `generate` keywords that select it (for benchmarks
    and sweeps; the model's own choice is its run config's `sampler` / `eta` / `door_guidance`)."""
    if model.cfg.model_kind == "discrete":
        return {"random": {"sampler": "random"}, "confidence": {"sampler": "confidence"}}
    options = {"ddim": {"eta": 0.0, "door_guidance": 0.0}, "ddim_eta1": {"eta": 1.0, "door_guidance": 0.0}}
    if model.config.run.sampling.door_guidance > 0:
        options["ddim+door_guidance"] = {"eta": 0.0, "door_guidance": model.config.run.sampling.door_guidance}
    return options


def generate(
    model: RoomModel,
    n: int,
    doors: torch.Tensor | str | None = None,
    stairs: torch.Tensor | bool | str | None = None,
    attributes: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
    **sampling: Any,
) -> torch.Tensor:
    """Generate `n` rooms -> `(n, 16, 11)` uint8 tile indices on the CPU (hmolqd.data.tiles.TILES order).

    doors / stairs condition the rooms (None leaves that part open). attributes (a discrete model with
    `cond_attributes`): {name: True / False / "open" / an `(n,)` bool tensor} for names in
    `model.attribute_names` (monsters, water, playable, symmetric, mirror_rows, mirror_cols); what is not
    given follows the model's sampling settings (`ask_playable`, `ask_symmetric`, `ask_mirror`: by default
    playable, symmetric rooms about one mirror axis). `sampling` keywords override the model's own
    `SamplingSettings` (its run config's): a config key (sample_steps, guidance_scale, sampler, use_ema, ...)
    or a short name (steps, guidance, eta, temperature, noise); guidance is the classifier-free guidance
    scale (1 = conditional only). The model is put in eval mode for the call and restored afterwards.
    How many rooms the guards drew again: `hmolqd.sampling.discrete.counting_redraws`.
    """
    if n < 0:
        raise ValueError(f"generate: n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"generate: batch_size must be >= 1, got {batch_size}")
    settings = sampling_settings(model, **sampling)
    request = Request(parse_doors(doors, n), parse_stairs(stairs, n), attributes)
    if model.cfg.model_kind == "discrete":
        return generate_discrete(model, n, request, settings, seed=seed, batch_size=batch_size)
    if attributes:
        raise ValueError(
            f"generate: this model takes no room attributes (model_kind {model.cfg.model_kind!r}), "
            f"got {sorted(attributes)}"
        )
    return _generate_continuous(model, n, request, settings, seed=seed, batch_size=batch_size)


def _generate_continuous(
    model: RoomModel, n: int, request: Request, settings: SamplingSettings, *, seed: int, batch_size: int
) -> torch.Tensor:
    """DDIM in latent space; door_guidance > 0 (with doors given) steers every step towards the requested
    doors through the decoder (`hmolqd.sampling.door_guidance`)."""
    door_mask = request.doors
    cond = model.diffusion.condition_tokens(door_mask, request.stairs, n)  # (n, K) CPU
    if n == 0:
        return torch.empty((0, ROOM_H, ROOM_W), dtype=torch.uint8)
    options = sample_options(model, settings, seed=seed, batch_size=batch_size)
    with eval_mode(model):
        guide = None
        if settings.door_guidance and door_mask is not None:
            device = model.diffusion.alphas_cumprod.device
            guide = door_guide(
                decoder_logits(model.vqvae),
                float(model.diffusion.latent_scale),
                door_mask.to(device),
                settings.door_guidance,
            )
        # The door guide needs autograd through the decoder, which inference mode forbids.
        with torch.inference_mode() if guide is None else torch.no_grad():
            # (n, C, h, w), raw VQ-VAE latent units
            latents = model.diffusion.sample(n, cond, settings, x0_guide=guide, **options)
            rooms = torch.cat([model.vqvae.decode_latents(z).cpu() for z in latents.split(batch_size)])
    return rooms.to(torch.uint8)
