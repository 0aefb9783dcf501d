"""The run section of the configuration, split by concern: `RunConfig` (name, seed, device, resume, time
budget) holds `CheckpointConfig` (when to save, what to keep), `LoggingConfig` (logging, validation and
generation-metric cadence) and `SamplingSettings` (how `generate` samples; passed whole down to the samplers).
`hmolqd.config` assembles them into the one `Config` and maps the flat keys onto them.

May import: nothing of hmolqd (the bottom layer).
"""

from hmolqd.settings.run import (
    SAMPLING_KEYWORDS,
    CheckpointConfig,
    ConfigError,
    LoggingConfig,
    RunConfig,
    SamplingSettings,
    check,
)

__all__ = [
    "SAMPLING_KEYWORDS",
    "CheckpointConfig",
    "ConfigError",
    "LoggingConfig",
    "RunConfig",
    "SamplingSettings",
    "check",
]
