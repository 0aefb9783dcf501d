"""`SamplingSettings`: how rooms are sampled (the run config's `sampling` part), frozen.

Its field names are the config keys. `generate` also accepts five shorter keywords for the longest of them
(`SAMPLING_KEYWORDS`: steps, guidance, eta, temperature, noise), and a report lists the settings under
those keywords; that is the one place where a sampling setting has a second name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hmolqd.settings.rules import at_least, booleans, check, integers_at_least, one_of

SAMPLE_DTYPES = ("auto", "float32", "bfloat16")  # sample_dtype's values (hmolqd.device.resolve_sample_dtype)

# `generate`'s public short keywords for the settings whose config key is longer; every other keyword is the key.
SAMPLING_KEYWORDS: dict[str, str] = {
    "steps": "sample_steps",
    "guidance": "guidance_scale",
    "eta": "ddim_eta",
    "temperature": "sample_temperature",
    "noise": "mask_noise",
}


@dataclass(frozen=True)
class SamplingSettings:
    """How rooms are sampled: built from a run config (`RunConfig.sampling`), overridden by `with_overrides`,
    and passed whole from `generate` to the model's sampler."""

    sample_steps: int = 8  # sampling steps: unmasking steps (discrete) or DDIM steps (continuous)
    guidance_scale: float = 1.25  # classifier-free guidance scale (1 = conditional only; chosen in bench/QUALITY.md)
    sampler: str = "random"  # discrete: "random" (ancestral unmasking, Austin et al. 2021) or "confidence" (MaskGIT)
    sample_temperature: float = 1.1  # discrete: softmax temperature of the code draws
    mask_noise: float = 1.0  # discrete "confidence": Gumbel noise on the confidence, annealed linearly to 0 (MaskGIT)
    guide_attributes: bool = True  # discrete: guidance contrasts with the attributes left open (doors, stairs given)
    tie_mirrors: bool = True  # discrete: a requested mirror axis is made exact (mirrored codes copied)
    #: discrete: what generate asks for when not told: "yes", "no", "open", or "with_doors" (yes where a door is asked)
    ask_playable: str = "yes"
    ask_symmetric: str = "yes"  # discrete: what generate asks for when not told: "yes", "no" or "open"
    ask_mirror: str = "one"  # discrete: mirror axes asked when not told: "one" (drawn 50/50 per room), "both", "open"
    ddim_eta: float = 0.0  # continuous: DDIM stochasticity (0 = deterministic)
    door_guidance: float = 0.0  # continuous: decoder-gradient door guidance strength per DDIM step (0 = off)
    #: sample with the EMA copy of the denoiser (false: the trained weights); model_final.pt keeps only that one
    use_ema: bool = True
    #: discrete: redraw a room whose interior is within copy_guard - 1 tiles of a training interior (1 = no copied
    #: interior; 0 = off); needs the corpus at sampling time
    copy_guard: int = 0
    #: discrete: redraw a room holding a 2x2 tile window that no training room has; needs the corpus at sampling time
    pattern_guard: bool = False
    #: discrete: redraw a room whose doors, stairs or attributes (playable, symmetric, ...) are not what was asked
    request_guard: bool = False
    guard_draws: int = 4  # discrete: draws of a room at most (the first included) while a guard rejects it
    #: discrete: the denoiser's forward under autocast in this dtype: "float32", "bfloat16", or "auto" (bfloat16 on
    #: a CPU with native bf16, float32 elsewhere: hmolqd.device.resolve_sample_dtype); generate resolves "auto"
    sample_dtype: str = "auto"

    def __post_init__(self) -> None:
        at_least(self, ("sample_steps",), 1)
        integers_at_least(self, ("copy_guard",), 0)
        integers_at_least(self, ("guard_draws",), 1)
        at_least(self, ("ddim_eta", "guidance_scale", "door_guidance", "mask_noise"), 0)
        one_of(self, "sampler", ("random", "confidence"))
        check(self.sample_temperature > 0, "sample_temperature", "must be > 0", self.sample_temperature)
        one_of(self, "ask_playable", ("yes", "no", "open", "with_doors"))
        one_of(self, "ask_symmetric", ("yes", "no", "open"))
        one_of(self, "ask_mirror", ("one", "both", "open"))
        one_of(self, "sample_dtype", SAMPLE_DTYPES)
        booleans(self, ("guide_attributes", "tie_mirrors", "use_ema", "pattern_guard", "request_guard"))

    def with_overrides(self, **overrides: Any) -> SamplingSettings:
        """These settings with every override that is not None applied; a keyword is a field name or one of
        `generate`'s short names (`SAMPLING_KEYWORDS`); an unknown one is a TypeError that lists the known ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(k for k in overrides if k not in names and k not in SAMPLING_KEYWORDS)
        if unknown:
            known = ", ".join([*SAMPLING_KEYWORDS, *sorted(names - set(SAMPLING_KEYWORDS.values()))])
            raise TypeError(f"unknown sampling setting(s) {unknown}; known: {known}")
        given = {SAMPLING_KEYWORDS.get(k, k): v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    def as_keywords(self) -> dict[str, Any]:
        """The settings under `generate`'s keyword names (a report's "settings", a benchmark's record)."""
        short = {key: word for word, key in SAMPLING_KEYWORDS.items()}
        return {short.get(k, k): v for k, v in dataclasses.asdict(self).items()}
