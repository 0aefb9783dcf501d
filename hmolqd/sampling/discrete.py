"""Sampling a discrete (code-index) RoomModel: condition tokens with room attributes, the unmasking loop of
CodeDiffusion.sample, then the VQ-VAE decoder; a requested mirror axis is made exact (`tie_mirrors`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hmolqd.config import SamplingSettings
from hmolqd.data import augment_mirror, find_data_dir, load_corpus, split_corpus
from hmolqd.data.attributes import ABSENT, ATTRIBUTES, PRESENT, UNKNOWN, attribute_request
from hmolqd.data.tiles import INTERIOR, ROOM_H, ROOM_W, SIDES, nearest_distance, pattern_codes
from hmolqd.models.modes import eval_mode
from hmolqd.models.room_model import RoomModel

MIRROR_SEED_OFFSET = 1  # the "one axis" draw uses its own generator, seeded seed + this
# The counts of the `counting_redraws()` block this call runs in, if any (a context variable: threads stay apart).
_REDRAWS: ContextVar[dict[str, int] | None] = ContextVar("hmolqd_guard_redraws", default=None)
GUARD_SEED_STEP = 104_729  # the guards' round r redraws with seed + r * this (a prime, unlike other seed steps)


@dataclass(frozen=True)
class Request:
    """What the rooms are asked to be: `doors (n, 4)` / `stairs (n,)` bool or None (open), attribute requests."""

    doors: torch.Tensor | None = None
    stairs: torch.Tensor | None = None
    attributes: Mapping[str, Any] | None = None


def default_requests(settings: SamplingSettings) -> dict[str, str]:
    """What `generate` asks for when not told: playable / symmetric as `ask_*` say."""
    playable = "yes" if settings.ask_playable == "with_doors" else settings.ask_playable  # narrowed in attribute_tokens
    return {"playable": playable, "symmetric": settings.ask_symmetric}


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


def attribute_tokens(
    model: RoomModel,
    n: int,
    asked: Mapping[str, Any] | None,
    seed: int,
    settings: SamplingSettings | None = None,
    doors: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """`(n, 6)` attribute tokens for a model with `cond_attributes` (None without): the request, then the
    defaults of `settings` (the model's own when None); a mirror axis is asked (`ask_mirror`) only where the
    room is asked to be symmetric and neither axis was given. With ask_playable "with_doors", a room whose
    requested `doors (n, 4)` has no door is not asked to be playable (the playability rule needs a door, so such a
    request could never be met; in the corpus these rooms are often void or stair rooms)."""
    if not model.cfg.cond_attributes:
        if asked:
            raise ValueError(
                f"generate: this model was trained without room attributes (cond_attributes false), got {sorted(asked)}"
            )
        return None
    settings = model.config.run.sampling if settings is None else settings
    tokens = attribute_request(n, asked, default_requests(settings))
    if settings.ask_playable == "with_doors" and doors is not None and "playable" not in (asked or {}):
        doorless = ~doors.bool().any(1)  # (n,)
        tokens[:, ATTRIBUTES.index("playable")] = torch.where(
            doorless, UNKNOWN, tokens[:, ATTRIBUTES.index("playable")]
        )
    if not {"mirror_rows", "mirror_cols"} & set(asked or {}):
        wants = tokens[:, ATTRIBUTES.index("symmetric")] == PRESENT  # (n,)
        axes = mirror_request(n, settings.ask_mirror, seed)  # (n, 2)
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


def sample_options(model: RoomModel, settings: SamplingSettings, *, seed: int, batch_size: int) -> dict[str, Any]:
    """The keywords both diffusion models' `sample` get from `generate`: the CPU generator, seeded `seed`, that
    every random draw of the sampler comes from; the chunk size of the network's forwards (the result does not
    depend on it); the denoiser that samples (the EMA copy unless `use_ema` is off)."""
    return {
        "generator": torch.Generator().manual_seed(seed),
        "batch_size": batch_size,
        "denoiser": model.sampling_denoiser(settings.use_ema),
    }


def decode_codes(model: RoomModel, codes: torch.Tensor, tie: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """`codes (n, h, w)` -> `(n, 16, 11)` rooms on the CPU: the argmax of the decoder's tiles, in chunks of
    `batch_size`; the interior mirrored exactly where `tie (n, 2)` asks (`symmetrize_logits`)."""
    rooms = []
    for lo in range(0, codes.shape[0], batch_size):
        # (b, 10, 16, 11)
        logits = model.vqvae.decode(model.vqvae.quantizer.lookup(codes[lo : lo + batch_size]))
        if tie is not None:
            logits = symmetrize_logits(logits, tie[lo : lo + batch_size].to(logits.device))
        rooms.append(logits.argmax(1).cpu())
    return torch.cat(rooms)


@dataclass(frozen=True)
class TrainingReference:
    """What the guards compare generated rooms with: the rooms the model trained on (its training split of the
    corpus, with mirrors where it had `mirror_augment`; recombined and door-redrawn rooms are not the corpus)."""

    interiors: torch.Tensor  # (U, 84) the distinct interiors
    patterns: torch.Tensor  # (P,) the distinct 2 x 2 tile windows (`tiles.pattern_codes`), sorted


def use_training_rooms(model: RoomModel, rooms: torch.Tensor) -> TrainingReference:
    """Give the model's guards the rooms it trained on, `(N, 16, 11)` (its training split, with mirrors where it had
    `mirror_augment`), where the caller holds them already (training, `evaluate`): no second read of the corpus."""
    rooms = rooms.cpu()
    interiors = torch.unique(rooms[(slice(None), *INTERIOR)].flatten(1), dim=0)
    model._training_reference = TrainingReference(interiors=interiors, patterns=torch.unique(pattern_codes(rooms, 2)))
    return model._training_reference


def training_reference(model: RoomModel) -> TrainingReference:
    """The model's `TrainingReference`: as given by `use_training_rooms`, else read once per model object from the
    corpus: the data_dir stored with the model where that folder exists here (a model trained on Kaggle sampled
    elsewhere), else discovered as training discovers it (`find_data_dir`: a missing corpus is an error with the
    download command)."""
    cached = getattr(model, "_training_reference", None)
    if cached is not None:
        return cached
    data = model.config.data
    stored = data.data_dir if data.data_dir is not None and Path(data.data_dir).is_dir() else None
    train, _ = split_corpus(load_corpus(find_data_dir(stored)), data.val_dungeons)
    return use_training_rooms(model, (augment_mirror(train) if data.mirror_augment else train).rooms)


def guard_rejects(
    model: RoomModel, rooms: torch.Tensor, settings: SamplingSettings, asked: torch.Tensor | None = None
) -> torch.Tensor:
    """`(n, 16, 11)` -> `(n,)` bool: the rooms a guard draws again: an interior within copy_guard - 1 tiles of a
    training interior, (pattern_guard) a 2 x 2 tile window that no training room has, or (request_guard) a door
    side, stairs or attribute measured on the room that differs from the condition tokens `asked (n, K)` (open
    columns never differ; nor does "playable" where no door is asked: the rule needs a door, so no draw could pass)."""
    bad = torch.zeros(rooms.shape[0], dtype=torch.bool)
    if settings.request_guard and asked is not None:
        measured = model.diffusion.room_condition(rooms).cpu()  # (n, K) in the layout of the asked tokens
        differs = (asked != UNKNOWN) & (measured != asked)  # (n, K)
        if model.cfg.cond_attributes:  # the attribute columns close the tokens (hmolqd.data.attributes)
            no_door = (asked[:, : len(SIDES)] == ABSENT).all(1)  # (n,) asked for a room without doors
            differs[:, asked.shape[1] - len(ATTRIBUTES) + ATTRIBUTES.index("playable")] &= ~no_door
        bad |= differs.any(1)
    if settings.copy_guard > 0:
        inner = rooms[(slice(None), *INTERIOR)].flatten(1)  # (n, 84)
        bad |= nearest_distance(inner, training_reference(model).interiors) < settings.copy_guard
    if settings.pattern_guard:
        windows = pattern_codes(rooms, 2).view(rooms.shape[0], -1)  # (n, 150)
        bad |= ~torch.isin(windows, training_reference(model).patterns).all(1)
    return bad


@contextmanager
def counting_redraws() -> Iterator[dict[str, int]]:
    """Count the guards' work in the block: every discrete `generate` in it adds its rooms drawn again (every round
    counted) to "redrawn" and the rejected rooms it kept to "kept" of the yielded dict."""
    counts = {"redrawn": 0, "kept": 0}
    token = _REDRAWS.set(counts)
    try:
        yield counts
    finally:
        _REDRAWS.reset(token)


def _sample_rooms(
    model: RoomModel, cond: torch.Tensor, tie: torch.Tensor | None, settings: SamplingSettings, seed: int, batch: int
) -> torch.Tensor:
    """Rooms `(n, 16, 11)` for condition tokens `cond (n, K)`: unmask the codes, decode them."""
    options = sample_options(model, settings, seed=seed, batch_size=batch)
    with eval_mode(model), torch.inference_mode():
        codes = model.diffusion.sample(cond, settings, tie=tie, **options)  # (n, h, w)
        rooms = decode_codes(model, codes, tie, batch)
    return rooms.clone()  # a normal tensor: the copy guard writes redrawn rooms into it


def generate_discrete(
    model: RoomModel,
    n: int,
    request: Request,
    settings: SamplingSettings,
    *,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """`generate` for model_kind "discrete": `(n, 16, 11)` uint8 rooms on the CPU.

    With a guard on, a room the guard rejects (`guard_rejects`: copy_guard, pattern_guard, request_guard) is drawn
    again, with the same condition and the next seed, up to `guard_draws` draws in all; one still rejected then is
    kept. Inside `counting_redraws()` the counts are added up there."""
    attributes = attribute_tokens(model, n, request.attributes, seed, settings, request.doors)
    cond = model.diffusion.condition_tokens(request.doors, request.stairs, n, attributes=attributes)  # (n, K)
    if n == 0:
        return torch.empty((0, ROOM_H, ROOM_W), dtype=torch.uint8)
    tie = (cond[:, -2:] == PRESENT) if settings.tie_mirrors and model.cfg.cond_attributes else None  # (n, 2)
    rooms = _sample_rooms(model, cond, tie, settings, seed, batch_size)
    redrawn, bad = 0, torch.zeros(n, dtype=torch.bool)
    if settings.copy_guard > 0 or settings.pattern_guard or settings.request_guard:
        for round_ in range(1, settings.guard_draws + 1):
            bad = guard_rejects(model, rooms, settings, cond.cpu())  # (n,)
            again = bad.nonzero().flatten()  # (r,) rooms to draw again
            if round_ == settings.guard_draws or again.numel() == 0:
                break
            redrawn += again.numel()
            tied = None if tie is None else tie[again]
            rooms[again] = _sample_rooms(
                model, cond[again], tied, settings, seed + round_ * GUARD_SEED_STEP, batch_size
            )
    counts = _REDRAWS.get()
    if counts is not None:
        counts["redrawn"] += redrawn
        counts["kept"] += int(bad.sum())
    return rooms.to(torch.uint8)
