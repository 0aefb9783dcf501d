"""Worker processes (hmolqd.dungeon.workers) and the denoiser's sampling dtype (hmolqd.device.resolve_sample_dtype):
same results wherever the work runs, no process left behind, the dtype resolved and checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from model_helpers import TINY_MODEL, randomize_zero_init

from hmolqd.config import ConfigError, SamplingSettings
from hmolqd.device import cpu_has_native_bf16, resolve_sample_dtype
from hmolqd.dungeon.workers import Workers


def _square_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_workers_map_like_the_builtin_map_in_order() -> None:
    items = list(range(37))
    with Workers(2) as pool:
        out = pool.map(_square_pid, items)
        assert pool.started
    assert [r for r, _ in out] == [x * x for x in items]
    assert os.getpid() not in {pid for _, pid in out}  # the work ran in the worker processes
    assert len({pid for _, pid in out}) <= 2


@pytest.mark.parametrize("processes", [0, 1])
def test_one_worker_or_none_runs_in_this_process(processes: int) -> None:
    pool = Workers(processes)
    out = pool.map(_square_pid, range(5))
    assert {pid for _, pid in out} == {os.getpid()} and not pool.started


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_workers_refuse_a_bad_count(bad: object) -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        Workers(bad)  # type: ignore[arg-type]


def test_a_killed_parent_leaves_no_worker_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the process that started the pool: its workers die with it (they would otherwise hold its
    pipes, and any lock it held, forever)."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from hmolqd.dungeon.workers import Workers
        pool = Workers(2).start()
        print(" ".join(str(p) for p in pool._pool._processes), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(pids) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has exited (its parent, init, reaps it later)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("flags\t\t: fpu sse avx2 amx_bf16 amx_tile", True),
        ("flags\t\t: fpu sse avx2 avx512f avx512bw", False),
        ("processor\t: 0\nmodel name\t: avx512_bf16 in a name is no flag", False),
        ("", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(flags: str, native: bool) -> None:
    assert cpu_has_native_bf16(flags) is native


def test_sample_dtype_auto_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmolqd.device as device

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert resolve_sample_dtype("auto", cpu) == "bfloat16"
    assert resolve_sample_dtype("auto", cuda) == "float32"
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert resolve_sample_dtype("auto", cpu) == "float32"
    assert resolve_sample_dtype("bfloat16", cpu) == "bfloat16"
    assert resolve_sample_dtype("float32", cpu) == "float32"
    with pytest.raises(ConfigError, match="sample_dtype = 'float16': must be one of auto, float32, bfloat16"):
        resolve_sample_dtype("float16", cpu)


def test_sample_dtype_is_a_checked_sampling_key() -> None:
    assert SamplingSettings().sample_dtype == "auto"
    with pytest.raises(ConfigError, match="sample_dtype"):
        SamplingSettings(sample_dtype="fp16")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rooms_in_either_dtype_are_rooms_and_repeat_for_a_seed(dtype: str) -> None:
    from hmolqd import generate
    from hmolqd.config import Config
    from hmolqd.models.room_model import RoomModel
    from hmolqd.sampling.generate import sampling_settings

    tiny_model = RoomModel.from_config(Config.from_flat(TINY_MODEL))
    randomize_zero_init(tiny_model.diffusion.denoiser)  # adaLN-Zero: a fresh denoiser ignores its input
    tiny_model.reset_ema()
    assert sampling_settings(tiny_model, sample_dtype=dtype).sample_dtype == dtype
    assert sampling_settings(tiny_model).sample_dtype in ("float32", "bfloat16")  # "auto", resolved
    a = generate(tiny_model, 6, seed=3, sample_dtype=dtype)
    b = generate(tiny_model, 6, seed=3, sample_dtype=dtype, batch_size=4)
    assert a.shape == (6, 16, 11) and a.dtype == torch.uint8
    assert torch.equal(a, b)
