"""`RunConfig` and its three nested sections (checkpointing, logging/validation, sampling), frozen.

Every field is a flat config key (the notebook's CONFIG dict, `--set key=value`); the comment beside it is
its one-line meaning and goes into the README's configuration table (tools/readme_config_table.py). What the
defaults were measured against lives in bench/results/config_defaults.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration key is unknown or its value breaks a rule; the message names the key."""


def check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r}: {rule}")


def _at_least(section: Any, keys: tuple[str, ...], low: float) -> None:
    for key in keys:
        check(getattr(section, key) >= low, key, f"must be >= {low}", getattr(section, key))


@dataclass(frozen=True)
class CheckpointConfig:
    """When to save and what to keep (hmolqd.checkpointing.manager.CheckpointPolicy)."""

    checkpoint_every: int = 25  # save checkpoint_epoch_N.pt every N epochs (why 25: bench/results/config_defaults.md)
    checkpoint_every_steps: int = 0  # also save a step checkpoint every N optimizer steps (0 = off)
    checkpoint_every_minutes: float = 10.0  # also save a step checkpoint every N minutes of training (0 = off)
    checkpoint_async: bool = True  # save on a background thread (training waits for a snapshot); False = inline
    keep_last_n: int = 3  # epoch/step files kept per stage (latest and best are never rotated)
    disk_budget_gb: float = 0.0  # cap on checkpoint_dir size, oldest epoch files go first (0 = off)
    monitor_metric: str = "val_loss"  # metric that selects checkpoint_best.pt
    monitor_mode: str = "min"  # "min" or "max"

    def __post_init__(self) -> None:
        _at_least(self, ("checkpoint_every", "keep_last_n"), 1)
        _at_least(self, ("checkpoint_every_steps", "checkpoint_every_minutes", "disk_budget_gb"), 0)
        check(
            isinstance(self.checkpoint_async, bool), "checkpoint_async", "must be true or false", self.checkpoint_async
        )
        check(self.monitor_mode in ("min", "max"), "monitor_mode", "must be 'min' or 'max'", self.monitor_mode)


@dataclass(frozen=True)
class LoggingConfig:
    """How often training logs, validates and measures its generated rooms."""

    log_every: int = 10  # batches between logged losses
    val_every: int = 25  # epochs between validations (chances to write checkpoint_best.pt); the last epoch always
    sample_every: int = 25  # epochs between generation metrics in diffusion training (0 = off)
    eval_samples: int = 300  # rooms generated at each sample_every evaluation

    def __post_init__(self) -> None:
        _at_least(self, ("log_every", "val_every", "eval_samples"), 1)
        _at_least(self, ("sample_every",), 0)


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
    ask_playable: str = "yes"  # discrete: what generate asks for when not told: "yes", "no" or "open"
    ask_symmetric: str = "yes"  # discrete: what generate asks for when not told: "yes", "no" or "open"
    ask_mirror: str = "one"  # discrete: mirror axes asked when not told: "one" (drawn 50/50 per room), "both", "open"
    ddim_eta: float = 0.0  # continuous: DDIM stochasticity (0 = deterministic)
    door_guidance: float = 0.0  # continuous: decoder-gradient door guidance strength per DDIM step (0 = off)
    use_ema: bool = True  # sample with the EMA copy of the denoiser (false: the trained weights)

    def __post_init__(self) -> None:
        _at_least(self, ("sample_steps",), 1)
        _at_least(self, ("ddim_eta", "guidance_scale", "door_guidance", "mask_noise"), 0)
        check(self.sampler in ("random", "confidence"), "sampler", "must be 'random' or 'confidence'", self.sampler)
        check(self.sample_temperature > 0, "sample_temperature", "must be > 0", self.sample_temperature)
        for key in ("ask_playable", "ask_symmetric"):
            check(getattr(self, key) in ("yes", "no", "open"), key, "must be 'yes', 'no' or 'open'", getattr(self, key))
        check(
            self.ask_mirror in ("one", "both", "open"), "ask_mirror", "must be 'one', 'both' or 'open'", self.ask_mirror
        )
        for key in ("guide_attributes", "tie_mirrors", "use_ema"):
            check(isinstance(getattr(self, key), bool), key, "must be true or false", getattr(self, key))

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


@dataclass(frozen=True)
class RunConfig:
    name: str = "default"  # run name: ./runs/<name>/ off Kaggle
    seed: int = 0  # seeds data order, initialisation, noise and the sample grids (bit-exact resume on CPU)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:N"
    auto_resume: bool = True  # resume from the newest valid checkpoint in checkpoint_dir
    max_runtime_hours: float = 11.5  # cumulative training time budget across resumes (0 = off)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def __post_init__(self) -> None:
        check(bool(self.name) and "/" not in self.name, "name", "must be a non-empty name without '/'", self.name)
        _at_least(self, ("max_runtime_hours",), 0)
        check(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "device",
            "must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
            self.device,
        )
