"""Where training runs: device, AMP dtype, optional DDP, stop signals and the time budget.

DDP is optional, not a fork (nanoGPT): `RANK`/`WORLD_SIZE`/`LOCAL_RANK` come from `torchrun`; without
them this is one process. Only the main rank writes files or prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hmolqd.config import ConfigError
from hmolqd.device import resolve_device


class UnsupportedGPUError(RuntimeError):
    """The installed torch has no kernels for this GPU (e.g. Kaggle's P100 with a build lacking sm_60)."""


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None  # None = full precision

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def use_scaler(self) -> bool:
        # fp16 needs loss scaling to keep small gradients representable; bf16 has fp32's exponent range.
        return self.amp_dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        amp = {None: "off (fp32)", torch.bfloat16: "bf16", torch.float16: "fp16 + GradScaler"}[self.amp_dtype]
        where = str(self.device)
        if self.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(self.device)})"
        return f"device {where}, AMP {amp}, world size {self.world_size}"


def check_gpu_supported(device: torch.device) -> None:
    """Fail up front, with the reason, if this torch build cannot run kernels on the GPU."""
    major, minor = torch.cuda.get_device_capability(device)
    arch = f"sm_{major}{minor}"
    built = torch.cuda.get_arch_list()  # e.g. ['sm_70', 'sm_75', 'sm_80', ...]
    # A build runs on its listed archs and, through PTX (compute_XY), on newer ones.
    runnable = {a for a in built if a.startswith("sm_")}
    ptx = [int(a.split("_")[1]) for a in built if a.startswith("compute_")]
    if built and arch not in runnable and not any(p <= major * 10 + minor for p in ptx):
        name = torch.cuda.get_device_name(device)
        raise UnsupportedGPUError(
            f"{name} has compute capability {major}.{minor} ({arch}), but this torch {torch.__version__} was built "
            f"for {', '.join(built)} only. On Kaggle choose the 'GPU T4 x1' or 'GPU T4 x2' accelerator "
            "(the P100 is not supported by Kaggle's current torch build), or set device='cpu'."
        )


FORCED_AMP: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}  # `use_amp` names a dtype


def amp_dtype_for(device: torch.device, use_amp: bool | str) -> torch.dtype | None:
    """`use_amp` True: bf16 where the GPU supports it natively (compute capability >= 8.0), fp16 below (T4), off
    on CPU; False: off; "fp16" / "bf16": that dtype on any device (CPU autocast runs both, slowly without AVX-512)."""
    if isinstance(use_amp, str):
        if use_amp not in FORCED_AMP:
            raise ConfigError(f"config key 'use_amp' = {use_amp!r}: must be true, false, 'fp16' or 'bf16'")
        return FORCED_AMP[use_amp]
    if not use_amp or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def setup_runtime(device: str = "auto", use_amp: bool | str = True) -> Runtime:
    """Read torchrun's environment (or fall back to one process) and pick the device and AMP dtype."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank) if world_size > 1 else dev  # torchrun: one GPU per process
        torch.cuda.set_device(dev)
        check_gpu_supported(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    amp = amp_dtype_for(dev, use_amp)
    if amp == torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"config key 'use_amp' = 'bf16': {torch.cuda.get_device_name(dev)} has no bf16 support; "
            "use true (auto: fp16 + GradScaler there) or 'fp16'"
        )
    return Runtime(dev, rank, world_size, local_rank, amp)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


class TrainingInterrupted(KeyboardInterrupt):
    """`train` stopped on a signal (SIGINT: "Interrupt kernel" or Ctrl-C; SIGTERM: a shutdown) after its checkpoint
    was written. Raised, not returned, so that a notebook's "Run all" stops at the training cell instead of
    showing older pictures and models as if they were this run's. A KeyboardInterrupt, so that code catching
    `Exception` does not swallow a user's interrupt; `.result` is the TrainResult, the message names the files."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


SIGNAL_STOPS = ("SIGINT", "SIGTERM", "another rank stopped")  # the stop reasons that raise TrainingInterrupted


class StopFlag:
    """Turns SIGTERM / SIGINT (Kaggle's shutdown, Ctrl-C, the notebook's "Interrupt kernel") into a request
    that the loop honours at its stop check, after saving `latest`. A second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return

        def on_signal(signum: int, frame: object) -> None:
            if signum == signal.SIGINT and self.reason is not None:
                raise KeyboardInterrupt  # second Ctrl-C: the user really wants out now
            self.request(signal.Signals(signum).name)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class Clock:
    """Training time that adds up across resumes (for `max_runtime_hours`)."""

    def __init__(self, elapsed_before: float = 0.0) -> None:
        self.elapsed_before = elapsed_before
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.start

    def over_budget(self, hours: float) -> bool:
        return hours > 0 and self.elapsed >= hours * 3600.0
