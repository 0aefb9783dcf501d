"""hmolqd: a VQ-VAE + latent diffusion generator of The Legend of Zelda dungeon rooms (VGLC)."""

from __future__ import annotations

from typing import Any

from hmolqd.config import Config, ConfigError

__all__ = ["Config", "ConfigError", "generate", "load_generator", "train"]
__version__ = "0.1.0"

# The heavy entry points import torch and matplotlib; load them on first use so `import hmolqd` stays light.
_LAZY = {"train": "hmolqd.train", "load_generator": "hmolqd.outputs", "generate": "hmolqd.sample"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hmolqd' has no attribute {name!r}")
