"""Which torch device a `device` setting means: the one definition used by training, evaluation and notebooks."""

from __future__ import annotations

import torch

from hmolqd.config import ConfigError


def resolve_device(setting: str, key: str = "config key 'device'") -> torch.device:
    """'auto' -> cuda:0 when a GPU is visible, else cpu; 'cpu'; 'cuda' -> cuda:0; 'cuda:N'.

    A CUDA setting where torch sees no GPU, or any other string, is a ConfigError naming `key` and the rule.
    """
    what = f"{key} {setting!r}" if key.startswith("--") else f"{key} = {setting!r}"  # a CLI flag or a config key
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting != "cpu" and not setting.startswith("cuda"):
        raise ConfigError(f"{what}: must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
    try:
        dev = torch.device(setting)
    except RuntimeError as err:
        raise ConfigError(f"{what}: must be 'auto', 'cpu', 'cuda' or 'cuda:N' ({err})") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{what}, but no GPU is visible here (torch.cuda.is_available() is False); use 'auto' or 'cpu'"
            )
        return torch.device("cuda", dev.index or 0)
    return dev
