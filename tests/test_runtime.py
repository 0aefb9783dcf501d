"""Device/AMP choice, unsupported-GPU detection, stop signals, the time budget and the LR schedule."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from hmolqd.config import ConfigError, TrainConfig
from hmolqd.training.optim import LRSchedule, lr_factor, make_optimizer
from hmolqd.training.runtime import (
    Clock,
    StopFlag,
    UnsupportedGPUError,
    amp_dtype_for,
    check_gpu_supported,
    setup_runtime,
)


@pytest.mark.parametrize(
    ("capability", "use_amp", "expected"),
    [
        ((7, 5), True, torch.float16),
        ((8, 0), True, torch.bfloat16),
        ((9, 0), True, torch.bfloat16),
        ((7, 5), False, None),
    ],
)
def test_amp_dtype_follows_compute_capability(monkeypatch, capability, use_amp, expected) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert amp_dtype_for(torch.device("cuda", 0), use_amp) == expected


def test_amp_is_off_on_cpu() -> None:
    assert amp_dtype_for(torch.device("cpu"), True) is None
    rt = setup_runtime("cpu", use_amp=True)
    assert rt.amp_dtype is None and not rt.use_scaler and rt.world_size == 1 and rt.is_main


@pytest.mark.parametrize(
    ("capability", "archs", "supported"),
    [
        ((6, 0), ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], False),  # Kaggle P100 on a build without sm_60
        ((7, 5), ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], True),  # T4
        ((9, 0), ["sm_70", "sm_80", "compute_80"], True),  # newer GPU through PTX
        ((6, 0), ["sm_70", "compute_70"], False),  # PTX only runs on equal or newer
    ],
)
def test_unsupported_gpu_is_detected_up_front(monkeypatch, capability, archs, supported) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla P100-PCIE-16GB")
    if supported:
        check_gpu_supported(torch.device("cuda", 0))
    else:
        with pytest.raises(UnsupportedGPUError, match=r"sm_60.*GPU T4 x1.*P100 is not supported"):
            check_gpu_supported(torch.device("cuda", 0))


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"'device' = 'cuda'.*no GPU is visible.*use 'auto' or 'cpu'"):
        setup_runtime("cuda")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_becomes_a_stop_request_and_handlers_are_restored(sig) -> None:
    before = signal.getsignal(sig)
    stop = StopFlag()
    with stop.installed():
        assert not stop
        os.kill(os.getpid(), sig)
        assert stop and stop.reason == signal.Signals(sig).name
    assert signal.getsignal(sig) is before


def test_second_sigint_interrupts_at_once() -> None:
    stop = StopFlag()
    with pytest.raises(KeyboardInterrupt), stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_clock_budget_adds_up_across_resumes() -> None:
    assert Clock(elapsed_before=3600.0).over_budget(1.0)
    assert not Clock(elapsed_before=3599.0).over_budget(2.0)
    assert not Clock(elapsed_before=1e9).over_budget(0.0)  # 0 = no budget


def test_lr_schedule_warmup_then_cosine() -> None:
    # Pinned values: linear warm-up to the peak, then cosine to min_ratio at the last step.
    assert [round(lr_factor(s, 100, 10, 0.1), 4) for s in (0, 4, 9, 10, 55, 99, 100)] == [
        0.1,
        0.5,
        1.0,
        1.0,
        0.55,
        0.1003,
        0.1,
    ]
    assert lr_factor(5, 10, 0, 0.0) == pytest.approx(0.5)


def test_schedule_is_a_pure_function_of_the_config_and_step() -> None:
    train = TrainConfig(learning_rate=2e-3, warmup_steps=5, min_lr_ratio=0.1)
    schedule = LRSchedule.from_config(train, total_steps=50)
    # The same product LambdaLR computes (base_lr * factor), so runs stay bit-identical across the change.
    assert [schedule(s) for s in (0, 4, 30)] == [2e-3 * lr_factor(s, 50, 5, 0.1) for s in (0, 4, 30)]
    assert schedule.state_dict() == {
        "name": "warmup_cosine",
        "peak": 2e-3,
        "total_steps": 50,
        "warmup_steps": 5,
        "min_ratio": 0.1,
        "decay_start": None,
        "start_factor": 1.0,
    }
    assert LRSchedule.from_config(train, total_steps=50) == schedule  # rebuilt on resume, equal by value


def test_optimizer_decays_only_matrices() -> None:
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer(model.parameters(), 0.1)
    # Weight decay only on matrices: the bias group has none.
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


@pytest.mark.parametrize(
    ("use_amp", "expected"), [("fp16", torch.float16), ("bf16", torch.bfloat16), (True, None), (False, None)]
)
def test_forced_amp_applies_on_the_cpu_too(use_amp, expected) -> None:
    assert amp_dtype_for(torch.device("cpu"), use_amp) == expected
    rt = setup_runtime("cpu", use_amp=use_amp)
    assert rt.amp_dtype == expected and rt.use_scaler == (expected == torch.float16)


@pytest.mark.parametrize(("use_amp", "expected"), [("fp16", torch.float16), ("bf16", torch.bfloat16), (False, None)])
def test_forced_amp_overrides_the_compute_capability(monkeypatch, use_amp, expected) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # where auto picks bf16
    assert amp_dtype_for(torch.device("cuda", 0), use_amp) == expected


def test_unknown_amp_name_and_bf16_on_a_gpu_without_it_name_the_key(monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"'use_amp' = 'fp8': must be true, false, 'fp16' or 'bf16'"):
        amp_dtype_for(torch.device("cpu"), "fp8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_70"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ConfigError, match=r"'use_amp' = 'bf16': Tesla V100 has no bf16 support; use true .* or 'fp16'"):
        setup_runtime("cuda", use_amp="bf16")
