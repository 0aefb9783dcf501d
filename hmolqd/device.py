"""Which torch device a `device` setting means, and which dtype the denoiser samples in: the one definition used by
training, evaluation, sampling and notebooks."""

from __future__ import annotations

import functools

import torch

from hmolqd.config import ConfigError
from hmolqd.settings.sampling import SAMPLE_DTYPES


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


_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process (`generate` resolves sample_dtype "auto" at every call); "" where the
    file does not exist."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (x86 flags avx512_bf16 or amx_bf16 in
    /proc/cpuinfo, or the text given); False where that file does not exist (not Linux): there bf16 may be
    emulated, slower than float32."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    flags = {
        flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()
    }
    return bool(flags & _BF16_CPU_FLAGS)


def resolve_sample_dtype(setting: str, device: torch.device) -> str:
    """'auto' -> 'bfloat16' on a CPU with native bf16 (the denoiser's forward took half the time there, at the
    same room quality: bench/QUALITY.md), else 'float32' (a GPU samples this small model launch-bound, where
    autocast only adds casts); 'float32' and 'bfloat16' as given."""
    if setting not in SAMPLE_DTYPES:
        raise ConfigError(f"config key sample_dtype = {setting!r}: must be one of {', '.join(SAMPLE_DTYPES)}")
    if setting != "auto":
        return setting
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"
