"""Mixed precision run for real on the CPU (issue 20): `use_amp="fp16"` / `"bf16"` puts the real trainer under
torch.autocast("cpu", ...) (fp16 with a GradScaler) end to end: it trains, its GradScaler state is checkpointed
and resumed (bit-exact after a time-budget stop and after SIGKILL), an fp16 overflow step is skipped and counted
in the history, the VQ codebook distances stay float32, and an fp16 checkpoint resumes under fp32 and bf16.

Bit-exact is the bar for resume: the reference and the interrupted runs are single-threaded processes on the
same CPU running the same fp16 / bf16 kernels on the same inputs in the same order (the CPU autocast kernels
are deterministic there, as the fp32 ones are; tests/test_train.py's SIGKILL test relies on the same).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from model_helpers import fp16_toy
from test_train import TINY as TRAIN_TINY
from test_train import assert_same_training, final_state, run_cli, write_config
from torch import nn

from hmolqd.checkpointing.fileformat import load_checkpoint
from hmolqd.config import Config
from hmolqd.models import quantizer as quantizer_module
from hmolqd.models.quantizer import VectorQuantizerEMA, nearest_code
from hmolqd.training.loop import TrainResult, train
from hmolqd.training.optim import Optimization
from hmolqd.training.runtime import StopFlag, TrainingInterrupted, setup_runtime
from hmolqd.training.validation import format_record

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Wider than the tests' tiny model (TRAIN_TINY's): with a 16-wide denoiser, fp16 overflows once in the first diffusion
# epoch, and these tests count on none where they do not cause one (skipped_steps == 0, one growth tick per step).
AMP_MODEL = {
    "num_embeddings": 32,
    "latent_dim": 8,
    "embedding_dim": 32,
    "denoiser_dim": 32,
    "num_timesteps": 100,
}
# test_train's run settings with AMP_MODEL, discrete (the default kind), on the 404 unmirrored training rooms: 7 steps
# per epoch.
SMALL = {
    **TRAIN_TINY,
    **AMP_MODEL,
    "model_kind": "discrete",
    "joint_epochs": 0,
    "mirror_augment": False,
    "door_augment": 0,
    "batch_size": 64,
}
EPOCH = 7  # optimizer steps per epoch of SMALL (tests check it against the history)
INIT_SCALE = torch.amp.GradScaler("cpu").get_scale()  # 65536.0, torch's default


def small_config(vglc_dir: Path, root: Path, **extra: Any) -> Config:
    return Config.from_flat(
        {
            **SMALL,
            "data_dir": str(vglc_dir),
            "checkpoint_dir": str(root / "ckpt"),
            "output_dir": str(root / "out"),
            **extra,
        }
    )


def assert_same_amp_state(a: dict, b: dict) -> None:
    """assert_same_training plus the GradScaler state and the whole progress (the epoch's skip counter too)."""
    assert_same_training(a, b)
    assert a["scaler"] == b["scaler"]
    assert {k: v for k, v in a["progress"].items() if k != "loss_sum"} == {
        k: v for k, v in b["progress"].items() if k != "loss_sum"
    }
    assert torch.equal(a["progress"]["loss_sum"], b["progress"]["loss_sum"])


class StepSpy:
    """Wraps `Optimization.step` (the trainer's step): what autocast and scaler each step ran under, whether it
    changed the weights, and the weights before the first step; optionally scales one step's loss to overflow."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        overflow_at: int | None = None,
        stop_at: tuple[int, StopFlag] | None = None,
    ) -> None:
        self.calls, self.modes, self.unchanged, self.first_params = 0, set(), [], None
        self.overflow_at, self.stop_at = overflow_at, stop_at
        real = Optimization.step

        def step(
            o: Optimization, objective: Any, x: torch.Tensor, cond: torch.Tensor, lr: float, autocast: Any
        ) -> torch.Tensor:
            with autocast():
                self.modes.add(
                    (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), o.scaler.is_enabled())
                )
            if self.first_params is None:
                self.first_params = [p.detach().clone() for p in o.params]
            if self.calls == self.overflow_at:
                # x 1e8: the loss stays finite in float32, but its gradient overflows fp16's range (max 65504).
                def objective(
                    x: torch.Tensor, c: torch.Tensor, real_objective: Any = objective
                ) -> tuple[torch.Tensor, dict]:
                    loss, metrics = real_objective(x, c)
                    return loss * 1e8, metrics

            before = [p.detach().clone() for p in o.params]
            loss = real(o, objective, x, cond, lr, autocast)
            self.unchanged.append(all(torch.equal(a, p) for a, p in zip(before, o.params)))
            self.calls += 1
            if self.stop_at is not None and self.calls == self.stop_at[0]:
                self.stop_at[1].request("SIGTERM")  # as the handler does; the loop saves latest and stops
            return loss

        monkeypatch.setattr(Optimization, "step", step)


# ---------------------------------------------------------------- the config and the runtime (no data)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_forced_amp_takes_the_autocast_path_on_the_cpu(amp: str) -> None:
    rt = setup_runtime("cpu", use_amp=Config.from_flat({"use_amp": amp}).train.use_amp)
    assert rt.amp_dtype == DTYPES[amp] and rt.use_scaler == (amp == "fp16")
    with rt.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == DTYPES[amp]
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == DTYPES[amp]
    assert rt.describe() == f"device cpu, AMP {'fp16 + GradScaler' if amp == 'fp16' else 'bf16'}, world size 1"
    scaler = Optimization.create(nn.Linear(2, 2).parameters(), Config().train, rt.device.type, rt.use_scaler).scaler
    assert scaler.is_enabled() == (amp == "fp16")


# ---------------------------------------------------------------- the codebook stays float32 (no data)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_vq_codebook_distances_stay_float32_under_autocast(monkeypatch: pytest.MonkeyPatch, amp: str) -> None:
    seen: list[tuple[torch.dtype, torch.dtype, bool, torch.dtype]] = []

    def spy(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        # The distances' matmul in the context nearest_code runs in: float32 only where autocast is off.
        seen.append((flat.dtype, codebook.dtype, torch.is_autocast_enabled("cpu"), (flat @ codebook.t()).dtype))
        return nearest_code(flat, codebook)

    vq = VectorQuantizerEMA(16, 8)
    z = torch.randn(4, 8, 3, 4) * 3
    vq.train()
    vq(z)  # the data-dependent codebook init, in float32
    vq.eval()
    expected = nearest_code(z.permute(0, 2, 3, 1).reshape(-1, 8), vq.embedding).view(4, 3, 4)  # float32, no autocast
    monkeypatch.setattr(quantizer_module, "nearest_code", spy)
    with torch.autocast("cpu", dtype=DTYPES[amp]):
        # autocast is on: an unguarded matmul would be low precision
        assert (z @ torch.randn(4, 4)).dtype == DTYPES[amp]
        out = vq(z.to(DTYPES[amp]))  # the encoder's output under autocast
        nearest = vq.nearest(z.to(DTYPES[amp]))
    assert seen == [(torch.float32, torch.float32, False, torch.float32)] * 2  # forward, then nearest
    assert out.z_q.dtype == torch.float32 and out.commit_loss.dtype == torch.float32
    # z rounded to the low dtype (what the encoder hands over) is assigned as float32 math assigns it.
    low = z.to(DTYPES[amp]).float()
    assert torch.equal(nearest, nearest_code(low.permute(0, 2, 3, 1).reshape(-1, 8), vq.embedding).view(4, 3, 4))
    assert torch.equal(out.indices, nearest) and (nearest == expected).float().mean() > 0.8


# ---------------------------------------------------------------- the optimizer step skips an overflow (no data)


def test_fp16_step_skips_an_overflow_and_says_so() -> None:
    model, rt, o, objective = fp16_toy()
    x, ok, huge = torch.randn(32, 8), torch.full((32, 1), 1e-2), torch.full((32, 1), 1e9)  # 1e-2: scaled grads fit fp16
    o.step(objective, x, ok, 1e-3, rt.autocast)
    assert not o.last_step_skipped and o.scaler.get_scale() == INIT_SCALE
    before = [p.detach().clone() for p in model.parameters()]
    o.step(objective, x, huge, 1e-3, rt.autocast)  # finite loss, gradients beyond fp16's range once scaled
    assert o.last_step_skipped and o.scaler.get_scale() == INIT_SCALE / 2
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the step was not taken
    o.step(objective, x, ok, 1e-3, rt.autocast)
    assert not o.last_step_skipped and not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


# ---------------------------------------------------------------- the real trainer on the real corpus


@dataclass
class AutocastRun:
    """One uninterrupted training under one autocast dtype, spied on: what it returned, logged and stepped under."""

    root: Path
    result: TrainResult
    lines: list[str]
    modes: set


@pytest.fixture(scope="session")
def autocast_run(vglc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], AutocastRun]:
    """The uninterrupted run of each dtype, trained once for the session: the training test checks it and the
    stop-and-resume test compares with it (the spy only reads: a spied run steps as an unspied one)."""
    runs: dict[str, AutocastRun] = {}

    def get(amp: str) -> AutocastRun:
        if amp not in runs:
            root = tmp_path_factory.mktemp(f"autocast_{amp}")
            lines: list[str] = []
            with pytest.MonkeyPatch.context() as mp:
                spy = StepSpy(mp)
                result = train(small_config(vglc_dir, root, use_amp=amp), log=lines.append)
            runs[amp] = AutocastRun(root, result, lines, spy.modes)
        return runs[amp]

    return get


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_trainer_trains_under_cpu_autocast(autocast_run: Callable[[str], AutocastRun], amp: str) -> None:
    run = autocast_run(amp)
    result, lines = run.result, run.lines
    assert result.finished
    assert f"device cpu, AMP {'fp16 + GradScaler' if amp == 'fp16' else 'bf16'}, world size 1" in lines
    assert run.modes == {(True, DTYPES[amp], amp == "fp16")}  # every step: autocast on, that dtype, scaler iff fp16
    history = result.history
    assert [(r["stage"], r["epoch"], r["step"]) for r in history] == [
        ("vqvae", 1, EPOCH),
        ("vqvae", 2, 2 * EPOCH),
        ("diffusion", 1, 3 * EPOCH),
        ("diffusion", 2, 4 * EPOCH),
    ]
    for r in history:
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and r["skipped_steps"] == 0, r
    for stage in ("vqvae", "diffusion"):
        first, last = [r["train_loss"] for r in history if r["stage"] == stage]
        assert last < first, f"{stage}: train loss {first} -> {last} under {amp}"
    ckpt = final_state(run.root)
    if amp == "fp16":  # the diffusion stage's scaler: its initial scale (no overflow), one growth-tracker tick per step
        assert (
            ckpt["scaler"]["scale"] == INIT_SCALE
            and ckpt["scaler"]["_growth_tracker"] == ckpt["progress"]["stage_step"] == 2 * EPOCH
        )
    else:
        assert ckpt["scaler"] == {}  # bf16 needs no loss scaling: the disabled scaler's state is empty
    floats = [t for part in ckpt["models"].values() for t in part.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)  # float32 master weights under autocast


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_stop_mid_stage_resumes_bit_exact_under_autocast(
    autocast_run: Callable[[str], AutocastRun],
    vglc_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    amp: str,
) -> None:
    reference = autocast_run(amp).root  # the uninterrupted run of this dtype
    stop = StopFlag()
    StepSpy(monkeypatch, stop_at=(2 * EPOCH + 3, stop))  # 3 steps into the diffusion stage
    cfg = small_config(vglc_dir, tmp_path / "run", use_amp=amp)
    with pytest.raises(TrainingInterrupted) as interrupted:  # a signal stop raises after its save
        train(cfg, log=lambda msg: None, stop=stop)
    assert interrupted.value.result.stopped == "SIGTERM"
    stopped = final_state(tmp_path / "run")
    assert stopped["stage"] == "diffusion" and stopped["progress"]["stage_step"] == 3
    if amp == "fp16":
        assert stopped["scaler"]["_growth_tracker"] == 3  # the stage's GradScaler state is in the checkpoint
    else:
        assert stopped["scaler"] == {}  # bf16: no scaler state, in the stop's checkpoint as in the finished one
    # Every checkpoint the stop left (what a SIGKILL would leave too) is of this dtype.
    files = sorted((tmp_path / "run" / "ckpt").glob("checkpoint_*.pt"))
    assert files and all(load_checkpoint(f)["config"]["train"]["use_amp"] == amp for f in files)
    assert train(cfg, log=lambda msg: None).finished
    assert_same_amp_state(final_state(reference), final_state(tmp_path / "run"))


@pytest.mark.real_data
@pytest.mark.parametrize(("amp", "skipped"), [("fp16", 1), ("bf16", 0)])
def test_fp16_overflow_step_is_skipped_and_counted_in_the_history(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amp: str, skipped: int
) -> None:
    spy = StepSpy(monkeypatch, overflow_at=2)
    result = train(small_config(vglc_dir, tmp_path, use_amp=amp, vqvae_epochs=2, num_epochs=0), log=lambda msg: None)
    # fp16: the scaler skips the overflowing step (the weights stay as they were) and halves its scale.
    # bf16 has fp32's exponent range and no scaler: the same step is taken (clipped to grad_clip).
    assert spy.unchanged == [False, False, bool(skipped)] + [False] * (2 * EPOCH - 3)
    assert [r["skipped_steps"] for r in result.history] == [skipped, 0]
    said = format_record(result.history[0])
    assert ("skipped_steps=1 (fp16 overflow)" in said) == (amp == "fp16") and "skipped_steps" not in format_record(
        result.history[1]
    )
    scaler = final_state(tmp_path)["scaler"]
    assert scaler == {} if amp == "bf16" else scaler["scale"] == INIT_SCALE / 2


@pytest.mark.real_data
@pytest.mark.parametrize("amp", [False, "bf16"])
def test_fp16_checkpoint_resumes_under_fp32_and_bf16(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amp: bool | str
) -> None:
    stop = StopFlag()
    StepSpy(monkeypatch, stop_at=(2 * EPOCH + 3, stop))
    cfg = small_config(vglc_dir, tmp_path, use_amp="fp16")
    with pytest.raises(TrainingInterrupted) as interrupted:  # a signal stop raises after its save
        train(cfg, log=lambda msg: None, stop=stop)
    assert interrupted.value.result.stopped == "SIGTERM"
    saved = final_state(tmp_path)
    assert saved["stage"] == "diffusion" and saved["scaler"]["scale"] == INIT_SCALE
    monkeypatch.undo()  # the first spy's step wrapper off again
    spy = StepSpy(monkeypatch)
    lines: list[str] = []
    resumed = train(cfg.with_overrides(use_amp=amp), log=lines.append)
    assert resumed.finished and resumed.resumed_from is not None
    assert (
        f"config key 'use_amp' changed since the checkpoint: 'fp16' -> {amp!r} (allowed: it does not change the model)"
        in lines
    )
    if amp:
        assert spy.modes == {(True, torch.bfloat16, False)}  # bf16 autocast, no scaler
    else:
        # fp32: no autocast, no scaler
        assert {(enabled, scaler) for enabled, _, scaler in spy.modes} == {(False, False)}
    # The first resumed step starts from the fp16 run's (float32) diffusion weights.
    trained = [t for t in saved["models"]["diffusion"].values() if t.is_floating_point()]
    assert len(spy.first_params) <= len(trained) and all(
        any(torch.equal(p, t) for t in trained) for p in spy.first_params
    )
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in resumed.history)
    assert [r["step"] for r in resumed.history] == [EPOCH, 2 * EPOCH, 3 * EPOCH, 4 * EPOCH]
    assert resumed.history[:2] == saved["history"]
    assert final_state(tmp_path)["scaler"] == {}  # no loss scaling under fp32 / bf16


# ---------------------------------------------------------------- SIGKILL and resume


# fp16 only: a SIGKILL leaves whatever checkpoint was last renamed into place, and that path is the same for every
# dtype; fp16 is the one whose checkpoint holds more (the GradScaler state). bf16's resume, bit-exact, and its
# checkpoints' dtype and empty scaler are checked in-process by test_stop_mid_stage_resumes_bit_exact_under_autocast.
@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("amp", ["fp16"])
def test_sigkill_resumes_bit_exact_under_autocast(vglc_dir: Path, tmp_path: Path, amp: str) -> None:
    keys = {
        **AMP_MODEL,
        "joint_epochs": 0,
        "model_kind": "discrete",
        "door_augment": 0,
        "use_amp": amp,
    }  # 10 steps/epoch
    assert run_cli(write_config(vglc_dir, tmp_path / "ref", **keys)) == 0
    cfg = write_config(vglc_dir, tmp_path / "run", **keys)
    for kill in (("checkpoint_vqvae_step_4.pt", 0.0), ("checkpoint_step_*.pt", 0.05)):  # mid-vqvae, mid-diffusion
        assert run_cli(cfg, kill) == -signal.SIGKILL
        # The kill may land before checkpoint_latest.pt is written: every file there (saves are atomic) is of
        # this dtype.
        files = sorted((tmp_path / "run" / "ckpt").glob("checkpoint_*.pt"))
        assert files and all(load_checkpoint(f)["config"]["train"]["use_amp"] == amp for f in files)
    assert run_cli(cfg) == 0
    ref, run = final_state(tmp_path / "ref"), final_state(tmp_path / "run")
    assert_same_amp_state(ref, run)
    assert (ref["scaler"]["_growth_tracker"] == 20) if amp == "fp16" else ref["scaler"] == {}
