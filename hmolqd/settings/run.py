"""`RunConfig` and its three nested sections (checkpointing, logging/validation, sampling), frozen.

Every field is a flat config key (the notebook's CONFIG dict, `--set key=value`); the comment beside it is
its one-line meaning and goes into the configuration table of docs/configuration.md (tools/config_table.py).
What the defaults were measured against lives in bench/results/config_defaults.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hmolqd.settings.rules import at_least, booleans, check, one_of
from hmolqd.settings.sampling import SamplingSettings


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
        at_least(self, ("checkpoint_every", "keep_last_n"), 1)
        at_least(self, ("checkpoint_every_steps", "checkpoint_every_minutes", "disk_budget_gb"), 0)
        booleans(self, ("checkpoint_async",))
        one_of(self, "monitor_mode", ("min", "max"))


@dataclass(frozen=True)
class LoggingConfig:
    """How often training logs, validates and measures its generated rooms."""

    log_every: int = 10  # batches between logged losses
    val_every: int = 25  # epochs between validations (chances to write checkpoint_best.pt); the last epoch always
    sample_every: int = 25  # epochs between generation metrics in diffusion training (0 = off)
    eval_samples: int = 300  # rooms generated at each sample_every evaluation

    def __post_init__(self) -> None:
        at_least(self, ("log_every", "val_every", "eval_samples"), 1)
        at_least(self, ("sample_every",), 0)


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
        at_least(self, ("max_runtime_hours",), 0)
        check(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "device",
            "must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
            self.device,
        )
