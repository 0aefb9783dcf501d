"""The sections of the configuration, one frozen dataclass per concern, and the rules they check.

Owns: `DataConfig` and `PathsConfig` (data.py), `ModelConfig` (model.py), `TrainConfig` (train.py), `RunConfig`
with its parts `CheckpointConfig` / `LoggingConfig` (run.py) and `SamplingSettings` (sampling.py, passed whole
down to the samplers); `ConfigError` and the checks every section states its rules with (rules.py); the parsing
of a flat key's value against its field's type (coerce.py). `hmolqd.config` assembles the sections into the one
`Config` and maps the flat keys onto them.

May import: nothing of hmolqd outside this package (the bottom layer).
"""

from hmolqd.settings.data import DataConfig, PathsConfig
from hmolqd.settings.model import MODEL_KINDS, ModelConfig
from hmolqd.settings.rules import ConfigError, check
from hmolqd.settings.run import CheckpointConfig, LoggingConfig, RunConfig
from hmolqd.settings.sampling import SAMPLING_KEYWORDS, SamplingSettings
from hmolqd.settings.train import AMP_DTYPES, TrainConfig

__all__ = [
    "AMP_DTYPES",
    "MODEL_KINDS",
    "SAMPLING_KEYWORDS",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "LoggingConfig",
    "ModelConfig",
    "PathsConfig",
    "RunConfig",
    "SamplingSettings",
    "TrainConfig",
    "check",
]
