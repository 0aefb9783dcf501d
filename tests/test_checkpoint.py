"""CheckpointManager, checkpoint files, resume order and config checks, on tiny CPU models."""

from __future__ import annotations

import copy
import errno
import logging
import os
import random
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from hmolqd.checkpointing import fileformat as checkpoint_file
from hmolqd.checkpointing.export import export_inference, load_inference
from hmolqd.checkpointing.fileformat import (
    LATEST,
    CheckpointError,
    checkpoint_name,
    finalize,
    load_checkpoint,
    serialize,
    state_digest,
)
from hmolqd.checkpointing.identity import RunInfo, write_run_info
from hmolqd.checkpointing.lineage import start_run
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
from hmolqd.checkpointing.restore import load_training_state, unwrap_model
from hmolqd.checkpointing.resume import (
    NO_CHECKPOINT,
    check_resume_config,
    find_resume_checkpoint,
)
from hmolqd.checkpointing.rng import capture_rng_state, restore_rng_state
from hmolqd.config import Config


class Warmup:
    """LambdaLR rule with plain attributes, like hmolqd.training.optim.WarmupCosine (weights_only-safe state)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.steps)


class NotPlainData:
    """A custom class: a checkpoint holding one must be refused by torch.load(weights_only=True)."""

    def __init__(self) -> None:
        self.value = 3


def make_objects(seed: int, scaler_enabled: bool = False) -> SimpleNamespace:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return SimpleNamespace(
        model=model,
        ema=copy.deepcopy(model).requires_grad_(False),
        opt=opt,
        sched=torch.optim.lr_scheduler.LambdaLR(opt, Warmup(10)),
        scaler=torch.amp.GradScaler("cpu", enabled=scaler_enabled),
    )


def train_steps(o: SimpleNamespace, n: int) -> None:
    """n optimizer steps on random data drawn from torch's global RNG (so RNG restore matters)."""
    for _ in range(n):
        loss = o.model(torch.randn(8, 4)).pow(2).mean() + 0.01 * random.random() + 0.01 * float(np.random.rand())
        o.opt.zero_grad()
        o.scaler.scale(loss).backward()
        o.scaler.step(o.opt)
        o.scaler.update()
        o.sched.step()
        with torch.no_grad():
            for e, p in zip(o.ema.parameters(), o.model.parameters()):
                e.lerp_(p, 0.1)


def make_state(
    o: SimpleNamespace, stage: str = "diffusion", epoch: int = 1, step: int = 10, cfg: Config | None = None
) -> dict[str, Any]:
    return {
        "stage": stage,
        "epoch": epoch,
        "global_step": step,
        "models": {"denoiser": o.model.state_dict(), "ema": o.ema.state_dict()},
        "optimizer": o.opt.state_dict(),
        "scheduler": o.sched.state_dict(),
        "scaler": o.scaler.state_dict(),
        "rng": capture_rng_state(),
        "data_order": {"seed": 0, "epoch": epoch, "position": 0},
        "history": [{"epoch": i, "val_loss": 1.0 / (i + 1)} for i in range(epoch)],
        "elapsed": 12.5,
        "config": (cfg or Config()).to_dict(),
    }


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Equal structure and values, tensors compared exactly (dtype, shape and every element)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def manager(folder: Path, async_save: bool = False, **policy: Any) -> CheckpointManager:
    return CheckpointManager(folder, CheckpointPolicy(**policy), async_save=async_save)


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def objs() -> SimpleNamespace:
    o = make_objects(0)
    train_steps(o, 3)
    return o


# ---------------------------------------------------------------- RNG


@pytest.mark.parametrize("through_file", [False, True])
def test_rng_restore_reproduces_draws(tmp_path: Path, through_file: bool) -> None:
    random.gauss(0, 1), np.random.randn(), torch.randn(1)  # leave cached gaussians in the state
    state = capture_rng_state()
    if through_file:
        torch.save(state, tmp_path / "rng.pt")
        state = torch.load(tmp_path / "rng.pt", weights_only=True)

    def draw() -> tuple:
        return (
            random.random(),
            random.gauss(0, 1),
            np.random.rand(3).tolist(),
            np.random.randn(),
            torch.rand(3),
            torch.randn(2),
        )

    first = draw()
    restore_rng_state(state)
    second = draw()
    assert first[:4] == second[:4]
    assert torch.equal(first[4], second[4]) and torch.equal(first[5], second[5])


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("scaler_enabled", [False, True])
def test_round_trip_every_state_and_bit_exact_continuation(tmp_path: Path, scaler_enabled: bool) -> None:
    a = make_objects(0, scaler_enabled)
    train_steps(a, 3)
    live = make_state(a, epoch=1, step=3)
    manager(tmp_path).save_epoch_end(live, {"val_loss": 0.5})
    state = copy.deepcopy(live)  # state dicts alias the live tensors, which keep training
    train_steps(a, 4)  # the uninterrupted run

    b = make_objects(1, scaler_enabled)  # a fresh process with other weights
    result = find_resume_checkpoint(tmp_path)
    ckpt = result.checkpoint
    assert result.path == tmp_path / LATEST and ckpt is not None
    load_training_state(
        ckpt, models={"denoiser": b.model, "ema": b.ema}, optimizer=b.opt, scheduler=b.sched, scaler=b.scaler
    )
    assert_same(b.model.state_dict(), state["models"]["denoiser"], "denoiser")
    assert_same(b.ema.state_dict(), state["models"]["ema"], "ema")
    assert_same(b.opt.state_dict(), state["optimizer"], "optimizer")
    assert_same(b.sched.state_dict(), state["scheduler"], "scheduler")
    assert_same(b.scaler.state_dict(), state["scaler"], "scaler")
    for key in ("rng", "data_order", "history", "elapsed", "config", "stage", "epoch", "global_step"):
        assert_same(ckpt[key], state[key], key)
    assert (
        ckpt["format_version"] == 1
        and ckpt["torch_version"] == torch.__version__
        and ckpt["best_metric"] == {"diffusion": 0.5}
    )

    restore_rng_state(ckpt["rng"])
    train_steps(b, 4)
    assert_same(b.model.state_dict(), a.model.state_dict(), "continued model")
    assert_same(b.ema.state_dict(), a.ema.state_dict(), "continued ema")
    assert_same(b.opt.state_dict(), a.opt.state_dict(), "continued optimizer")


def test_checkpoint_loads_with_plain_weights_only_torch_load(tmp_path: Path, objs: SimpleNamespace) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    raw = torch.load(tmp_path / LATEST, weights_only=True)
    assert raw["format"] == "hmolqd-checkpoint" and len(raw["integrity"]["sha256"]) == 64


def test_non_plain_value_is_refused_at_save_with_its_key_path(tmp_path: Path, objs: SimpleNamespace) -> None:
    state = make_state(objs)
    state["history"][0]["val_loss"] = np.float64(0.5)
    with pytest.raises(
        CheckpointError, match=r"state\['history'\]\[0\]\['val_loss'\]: numpy.float64 is not plain data"
    ):
        manager(tmp_path).save_epoch_end(state)
    assert names(tmp_path) == set()


# ---------------------------------------------------------------- which files are written


@pytest.mark.parametrize(
    ("stage", "mode", "values", "best_epochs"),
    [
        ("diffusion", "min", [3.0, 2.0, 2.5, 1.0], [1, 2, 4]),
        ("vqvae", "min", [3.0, 2.0, 2.5, 1.0], [1, 2, 4]),
        ("joint", "max", [0.1, 0.3, float("nan"), 0.2], [1, 2]),
    ],
)
def test_files_written_when_due(
    tmp_path: Path, objs: SimpleNamespace, stage: str, mode: str, values: list[float], best_epochs: list[int]
) -> None:
    mgr = manager(tmp_path, every_epochs=2, keep_last_n=10, monitor_mode=mode)
    for epoch, value in enumerate(values, start=1):
        written = {p.name for p in mgr.save_epoch_end(make_state(objs, stage, epoch, 10 * epoch), {"val_loss": value})}
        expected = {checkpoint_name(stage, "epoch", epoch)} if epoch % 2 == 0 else set()
        expected |= {checkpoint_name(stage, "best")} if epoch in best_epochs else set()
        assert written == (expected | {LATEST} if expected else set()), f"epoch {epoch}"  # latest goes with any save
    prefix = "" if stage == "diffusion" else f"{stage}_"
    assert names(tmp_path) == {
        LATEST,
        f"checkpoint_{prefix}best.pt",
        f"checkpoint_{prefix}epoch_2.pt",
        f"checkpoint_{prefix}epoch_4.pt",
    }
    best = load_checkpoint(tmp_path / checkpoint_name(stage, "best"))
    assert best["epoch"] == best_epochs[-1] and best["best_metric"] == {stage: values[best_epochs[-1] - 1]}
    assert load_checkpoint(tmp_path / LATEST)["epoch"] == len(values)
    mgr.save_latest(make_state(objs, stage, 5, 50))
    assert load_checkpoint(tmp_path / LATEST)["epoch"] == 5 and len(names(tmp_path)) == 4


def test_step_saves_by_steps_and_by_minutes(tmp_path: Path, objs: SimpleNamespace) -> None:
    now = [0.0]
    mgr = CheckpointManager(tmp_path, CheckpointPolicy(every_steps=5), clock=lambda: now[0])
    assert [s for s in range(1, 12) if mgr.step_save_due("diffusion", s)] == [5, 10]
    assert {p.name for p in mgr.save_step(make_state(objs, step=5))} == {"checkpoint_step_5.pt", LATEST}
    assert not mgr.step_save_due("diffusion", 5)  # already saved at this step
    assert mgr.step_save_due("vqvae", 5)  # another stage's step 5 is another file

    timed = CheckpointManager(tmp_path / "t", CheckpointPolicy(every_minutes=2.0), clock=lambda: now[0])
    now[0] = 119.0
    assert not timed.step_save_due("vqvae", 7)
    now[0] = 121.0
    assert timed.step_save_due("vqvae", 7)
    timed.save_step(make_state(objs, "vqvae", step=7))
    assert names(tmp_path / "t") == {"checkpoint_vqvae_step_7.pt", LATEST}
    assert not timed.step_save_due("vqvae", 8)  # the clock restarts at each save


def test_non_main_rank_writes_nothing(tmp_path: Path, objs: SimpleNamespace) -> None:
    mgr = CheckpointManager(tmp_path / "ckpt", CheckpointPolicy(every_steps=1), is_main=False)
    assert mgr.save_epoch_end(make_state(objs), {"val_loss": 1.0}) == []
    assert not mgr.step_save_due("diffusion", 1) and mgr.save_step(make_state(objs)) == []
    assert not (tmp_path / "ckpt").exists()


# ---------------------------------------------------------------- rotation and disk budget


def test_rotation_keeps_last_n_per_stage_and_never_best_or_latest(tmp_path: Path, objs: SimpleNamespace) -> None:
    mgr = manager(tmp_path, keep_last_n=2)
    for epoch in range(1, 4):
        mgr.save_epoch_end(make_state(objs, "vqvae", epoch, epoch), {"val_loss": 1.0})
    for epoch in range(1, 6):  # best only at epoch 1
        mgr.save_epoch_end(make_state(objs, "diffusion", epoch, epoch), {"val_loss": float(epoch)})
    for step in (6, 7, 8):
        mgr.save_step(make_state(objs, "diffusion", 5, step))
    assert names(tmp_path) == {
        LATEST,
        "checkpoint_best.pt",
        "checkpoint_epoch_4.pt",
        "checkpoint_epoch_5.pt",
        "checkpoint_step_7.pt",
        "checkpoint_step_8.pt",
        "checkpoint_vqvae_best.pt",
        "checkpoint_vqvae_epoch_2.pt",
        "checkpoint_vqvae_epoch_3.pt",
    }
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == 1


# Epoch 1 is also best (one file, two names) and epoch 5 also latest: deleting either name would free nothing,
# so they stay; the budget counts each file once however many names it has.
@pytest.mark.parametrize(
    ("budget_files", "kept_epochs", "over"), [(3.5, [1, 4, 5], False), (4.5, [1, 3, 4, 5], False), (1.5, [1, 5], True)]
)
@pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
def test_disk_budget_deletes_oldest_epoch_files(
    tmp_path: Path,
    objs: SimpleNamespace,
    caplog: pytest.LogCaptureFixture,
    budget_files: float,
    kept_epochs: list[int],
    over: bool,
    async_save: bool,
) -> None:
    size = len(
        serialize(
            finalize(
                {
                    **make_state(objs),
                    "best_metric": {"diffusion": 1.0},
                    "monitor": {"metric": "val_loss", "mode": "min"},
                }
            )
        )
    )
    mgr = manager(tmp_path, async_save, keep_last_n=10, disk_budget_gb=budget_files * size / 1e9)
    with caplog.at_level(logging.WARNING, logger="hmolqd.checkpointing.manager"):
        for epoch in range(1, 6):
            mgr.save_epoch_end(make_state(objs, epoch=epoch, step=epoch), {"val_loss": 1.0})
        mgr.flush()
    assert names(tmp_path) == {LATEST, "checkpoint_best.pt"} | {f"checkpoint_epoch_{e}.pt" for e in kept_epochs}
    assert ("over disk_budget_gb" in caplog.text) == over
    assert mgr.on_disk()[2] == sum({p.stat().st_ino: p.stat().st_size for p in tmp_path.iterdir()}.values())


# ---------------------------------------------------------------- failures while saving


def _crash_in_torch_save(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.save

    def partial_then_crash(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real(obj, f, *args, **kwargs)
        if hasattr(f, "truncate"):
            f.truncate(100)
        raise RuntimeError("simulated crash in torch.save")

    monkeypatch.setattr(torch, "save", partial_then_crash)


def _crash_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_crash(f: Any, data: memoryview) -> None:
        f.write(data[: len(data) // 2])
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(checkpoint_file, "_write_payload", half_then_crash)


@pytest.mark.parametrize("crash", [_crash_in_torch_save, _crash_mid_write])
def test_crash_while_saving_leaves_old_file_and_no_temp(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, crash: Any
) -> None:
    mgr = manager(tmp_path)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    before = {n: (tmp_path / n).read_bytes() for n in names(tmp_path)}
    crash(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 0.5})
    assert {n: (tmp_path / n).read_bytes() for n in names(tmp_path)} == before  # no temp file, nothing changed
    assert load_checkpoint(tmp_path / LATEST)["epoch"] == 1


def test_stale_temp_file_from_a_killed_save_is_removed(tmp_path: Path, objs: SimpleNamespace) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    (tmp_path / ".checkpoint_latest.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    manager(tmp_path)
    assert names(tmp_path) == {LATEST, "checkpoint_epoch_1.pt", "checkpoint_best.pt"}


def test_disk_full_reports_needed_and_free_space(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = manager(tmp_path / "reference")  # the same two saves with room to spare give the size needed
    for epoch, loss in ((1, 1.0), (2, 0.5)):
        reference.save_epoch_end(make_state(objs, epoch=epoch, step=epoch), {"val_loss": loss})
    mgr = manager(tmp_path / "full")
    mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    before = {n: (tmp_path / "full" / n).read_bytes() for n in names(tmp_path / "full")}

    def disk_full(f: Any, data: memoryview) -> None:
        f.write(data[:64])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_file, "_write_payload", disk_full)
    with pytest.raises(CheckpointError, match="disk full") as err:
        mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 0.5})
    needed = int(re.search(r"needs [\d.]+ MiB \((\d+) bytes\)", str(err.value))[1])
    assert needed == reference.stats.last_size == (tmp_path / "reference" / LATEST).stat().st_size
    assert re.search(r"\(\d+ bytes\) is free on ", str(err.value))
    assert {n: (tmp_path / "full" / n).read_bytes() for n in names(tmp_path / "full")} == before


def test_too_little_free_space_fails_before_writing(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        checkpoint_file.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    with pytest.raises(
        CheckpointError,
        match=r"not saving .*checkpoint_latest\.pt: the checkpoint needs .* and 0\.0 MiB \(1000 bytes\) is free",
    ):
        manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    assert names(tmp_path) == set()


# ---------------------------------------------------------------- corrupt files


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(4096))


def _missing_keys(p: Path) -> None:
    obj = torch.load(p, weights_only=True)
    del obj["models"]
    torch.save(obj, p)


def _tampered_value(p: Path) -> None:
    obj = torch.load(p, weights_only=True)
    obj["models"]["denoiser"]["bias"] += 1e-3
    torch.save(obj, p)


def _bit_flip(p: Path) -> None:
    """Flip one bit inside the denoiser weight's bytes: torch.load succeeds, only the checksum notices."""
    data = bytearray(p.read_bytes())
    weight = torch.load(p, weights_only=True)["models"]["denoiser"]["weight"]
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at + 5] ^= 0x10
    p.write_bytes(bytes(data))


def _pickled_object(p: Path) -> None:
    obj = torch.load(p, weights_only=True)
    obj["extra"] = NotPlainData()
    torch.save(obj, p)


CORRUPTIONS = [
    (_truncate, "truncated: the torch zip file stops at"),
    (_zero, "empty file (0 bytes)"),
    (_random, "unreadable, truncated or not a torch file (weights-only unpickler"),
    (_missing_keys, "missing required keys ['models']"),
    (_tampered_value, "checksum mismatch"),
    (_bit_flip, "checksum mismatch"),
    (_pickled_object, "refused by torch.load(weights_only=True)"),
]


@pytest.mark.parametrize(("corrupt", "reason"), CORRUPTIONS, ids=[c[0].__name__.strip("_") for c in CORRUPTIONS])
def test_corrupt_newest_files_are_reported_and_skipped(
    tmp_path: Path, objs: SimpleNamespace, caplog: pytest.LogCaptureFixture, corrupt: Any, reason: str
) -> None:
    with torch.no_grad():
        objs.model.weight.copy_(torch.linspace(-1, 1, 12).reshape(3, 4))  # distinctive bytes for _bit_flip
    mgr = manager(tmp_path)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=10), {"val_loss": 2.0})
    mgr.save_epoch_end(make_state(objs, epoch=2, step=20), {"val_loss": 3.0})
    assert (tmp_path / LATEST).samefile(tmp_path / "checkpoint_epoch_2.pt")  # one save, one file, two names
    corrupt(tmp_path / LATEST)  # damages both names of the second save; the first save's file is another file
    with caplog.at_level(logging.WARNING, logger="hmolqd.checkpointing.resume"):
        result = find_resume_checkpoint(tmp_path)
    assert result.path == tmp_path / "checkpoint_epoch_1.pt" and result.checkpoint["global_step"] == 10
    skipped = {p.name: why for p, why in result.skipped}
    assert set(skipped) == {LATEST, "checkpoint_epoch_2.pt"}
    assert all(reason in why for why in skipped.values()), skipped
    assert f"skipping checkpoint {tmp_path / LATEST}: {skipped[LATEST]}" in caplog.text
    assert "checkpoint_epoch_1.pt" in result.message and "skipped checkpoint_" in result.message
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        load_checkpoint(tmp_path / LATEST)


class RunsCode:
    """A hostile pickle: loading it with weights_only=False would call os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_naming_the_global_without_unsafe_advice(
    tmp_path: Path, objs: SimpleNamespace
) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    obj = torch.load(tmp_path / LATEST, weights_only=True)
    obj["history"].append(RunsCode(tmp_path / "pwned"))
    torch.save(obj, tmp_path / "checkpoint_epoch_9.pt")
    _, reason = checkpoint_file.try_load_checkpoint(tmp_path / "checkpoint_epoch_9.pt")
    assert f"pickled reference to the global {os.system.__module__}.system" in reason  # posix.system on Linux
    assert "weights_only=False" not in reason and "set to `False`" not in reason and "trust" not in reason
    result = find_resume_checkpoint(tmp_path)
    assert (
        result.path == tmp_path / LATEST
        and "checkpoint_epoch_9.pt (refused by torch.load(weights_only=True)" in result.message
    )
    assert not (tmp_path / "pwned").exists()


def test_nothing_valid_starts_from_scratch(tmp_path: Path, objs: SimpleNamespace) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    for p in tmp_path.iterdir():
        _truncate(p)
    result = find_resume_checkpoint(tmp_path)
    assert result.path is None and result.checkpoint is None
    assert result.message.startswith(NO_CHECKPOINT) and len(result.skipped) == 3


def test_newer_format_version_is_refused(tmp_path: Path, objs: SimpleNamespace) -> None:
    path = tmp_path / LATEST
    payload = finalize(make_state(objs))
    payload["format_version"] = 99
    payload["integrity"] = {"sha256": state_digest(payload)}
    checkpoint_file.write_atomic(path, serialize(payload))
    with pytest.raises(CheckpointError, match="format_version 99 is newer"):
        load_checkpoint(path)


# ---------------------------------------------------------------- resume order


def test_newest_is_by_stage_then_global_step_not_mtime(tmp_path: Path, objs: SimpleNamespace) -> None:
    mgr = manager(tmp_path)
    mgr.save_step(make_state(objs, "diffusion", 1, step=15))
    mgr.save_epoch_end(make_state(objs, "diffusion", 1, step=10), {"val_loss": 1.0})  # newer mtime, older step
    mgr.save_epoch_end(make_state(objs, "vqvae", 9, step=900), {"val_loss": 1.0})  # earlier stage, larger step
    os.utime(tmp_path / "checkpoint_vqvae_epoch_9.pt")
    os.remove(tmp_path / LATEST)
    assert find_resume_checkpoint(tmp_path).path.name == "checkpoint_step_15.pt"


def test_explicit_resume_from_wins_and_must_exist(tmp_path: Path, objs: SimpleNamespace) -> None:
    mgr = manager(tmp_path)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 1.0})
    result = find_resume_checkpoint(tmp_path, resume_from=tmp_path / "checkpoint_epoch_1.pt")
    assert result.checkpoint["epoch"] == 1 and "explicit resume_from" in result.message
    missing = tmp_path / "nope" / "checkpoint_epoch_7.pt"
    with pytest.raises(CheckpointError, match=re.escape(f"resume_from={str(missing)!r}: no such file")):
        find_resume_checkpoint(tmp_path, resume_from=missing)
    _zero(tmp_path / "checkpoint_epoch_1.pt")
    with pytest.raises(CheckpointError, match="empty file"):
        find_resume_checkpoint(tmp_path, resume_from=tmp_path / "checkpoint_epoch_1.pt")


def test_auto_resume_off_starts_fresh_and_deletes_nothing(tmp_path: Path, objs: SimpleNamespace) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    before = names(tmp_path)
    result = find_resume_checkpoint(tmp_path, auto_resume=False)
    assert result.checkpoint is None and result.message.startswith(NO_CHECKPOINT) and result.new_run
    # choosing writes nothing; lineage.start_run sets the files aside (test_lineage.py)
    assert names(tmp_path) == before


def _kaggle_tree(root: Path, objs: SimpleNamespace) -> tuple[Path, Path]:
    """/kaggle/input with an attached previous version (valid, with its run.json) and another source holding a
    corrupt latest."""
    good = root / "kaggle" / "input" / "my-notebook-v3" / "checkpoints"
    manager(good).save_epoch_end(make_state(objs, epoch=4, step=40), {"val_loss": 1.0})
    write_run_info(good, RunInfo.new())
    bad = root / "kaggle" / "input" / "zz-other" / "run" / LATEST
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    write_run_info(bad.parent, RunInfo.new())
    return root / "kaggle" / "input", good / LATEST


def test_kaggle_input_checkpoint_is_copied_and_used(tmp_path: Path, objs: SimpleNamespace) -> None:
    kaggle_input, source = _kaggle_tree(tmp_path, objs)
    work = tmp_path / "working" / "checkpoints"
    chosen = find_resume_checkpoint(work, resume_input=kaggle_input)
    assert chosen.path == source and not work.exists()  # choosing copies nothing
    result = start_run(work, chosen)
    assert result.path == work / LATEST and result.checkpoint["epoch"] == 4
    assert (work / LATEST).read_bytes() == source.read_bytes()
    assert f"from {source.parent} into {work}" in result.message and "zz-other" not in str(result.path)
    assert [p.name for p, _ in result.skipped] == [LATEST] and "2 previous outputs found" in result.message

    assert find_resume_checkpoint(tmp_path / "w2", auto_resume=False, resume_input=kaggle_input).checkpoint is None
    assert find_resume_checkpoint(tmp_path / "w3", resume_input=kaggle_input).path == source


def test_checkpoint_dir_wins_over_kaggle_input(tmp_path: Path, objs: SimpleNamespace) -> None:
    kaggle_input, _ = _kaggle_tree(tmp_path, objs)
    work = tmp_path / "working"
    manager(work).save_epoch_end(make_state(objs, epoch=1, step=10), {"val_loss": 1.0})
    result = find_resume_checkpoint(work, resume_input=kaggle_input)
    assert result.path == work / LATEST and result.checkpoint["epoch"] == 1


# ---------------------------------------------------------------- config on resume


def test_architecture_change_lists_every_differing_key(objs: SimpleNamespace) -> None:
    saved = Config().to_dict()
    current = Config().with_overrides(latent_dim=32, denoiser_depth=4, schedule="linear")
    with pytest.raises(CheckpointError, match="differs from the checkpoint in 3 key") as err:
        check_resume_config(saved, current)
    for text in (
        "denoiser_depth: checkpoint=1 config=4",
        "latent_dim: checkpoint=64 config=32",
        "schedule: checkpoint='cosine' config='linear'",
    ):
        assert text in str(err.value)


def test_training_key_changes_are_allowed_and_returned_once(caplog: pytest.LogCaptureFixture) -> None:
    saved = Config().to_dict()
    current = Config().with_overrides(batch_size=64, log_every=5, num_epochs=10, learning_rate=5e-4)
    with caplog.at_level(logging.INFO, logger="hmolqd.checkpointing.resume"):
        messages = check_resume_config(saved, current)
    assert len(messages) == 4
    assert (
        "config key 'batch_size' changed since the checkpoint: 32 -> 64 (allowed: it does not change the model)"
        in messages
    )
    assert [m for m in messages if m.startswith("WARNING")] == [
        "WARNING: config key 'learning_rate' changed since the checkpoint: 0.0015 -> 0.0005 "
        "(applied: the learning-rate schedule is rebuilt with the new peak)"
    ]
    # The caller prints the messages; logging them as well printed every warning twice (stdout and stderr).
    assert not any("changed since the checkpoint" in r.getMessage() for r in caplog.records)


def test_missing_model_in_checkpoint_is_an_error(tmp_path: Path, objs: SimpleNamespace) -> None:
    manager(tmp_path).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    with pytest.raises(CheckpointError, match=r"no state for model\(s\) \['vqvae'\]; it holds \['denoiser', 'ema'\]"):
        load_training_state(load_checkpoint(tmp_path / LATEST), models={"vqvae": nn.Linear(4, 3)})


# ---------------------------------------------------------------- inference export, wrappers


def test_export_inference_round_trip(tmp_path: Path, objs: SimpleNamespace) -> None:
    cfg = Config().with_overrides(latent_dim=16)
    path = export_inference(
        tmp_path / "export" / "model.pt", {"denoiser": nn.DataParallel(objs.model), "ema": objs.ema}, cfg
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "hmolqd-inference" and set(raw) >= {"models", "config", "format_version", "integrity"}
    loaded = load_inference(path)
    assert_same(loaded["models"], {"denoiser": objs.model.state_dict(), "ema": objs.ema.state_dict()})
    assert Config.from_dict(loaded["config"]) == cfg
    _bit_flip_export = torch.load(path, weights_only=True)
    _bit_flip_export["models"]["ema"]["bias"][0] += 1
    torch.save(_bit_flip_export, path)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_inference(path)


def test_unwrap_model_strips_dataparallel_and_compile() -> None:
    model = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(torch.compile(model))) is model
    assert unwrap_model(torch.compile(nn.DataParallel(model))) is model
    assert unwrap_model(model) is model


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_and_cuda_state_round_trip(tmp_path: Path) -> None:
    torch.randn(1, device="cuda")  # CUDA in use: its generators are captured
    model = nn.Linear(4, 3).cuda()
    manager(tmp_path).save_epoch_end(
        {
            "stage": "diffusion",
            "epoch": 1,
            "global_step": 1,
            "models": {"denoiser": model.state_dict()},
            "rng": capture_rng_state(),
            "config": Config().to_dict(),
        },
        {"val_loss": 1.0},
    )
    first = torch.randn(5, device="cuda")
    ckpt = find_resume_checkpoint(tmp_path, map_location="cuda").checkpoint
    assert len(ckpt["rng"]["cuda"]) == torch.cuda.device_count() and ckpt["models"]["denoiser"]["weight"].is_cuda
    restore_rng_state(ckpt["rng"])  # its tensors were mapped to CUDA: restore moves them back to the CPU
    assert torch.equal(first, torch.randn(5, device="cuda"))
    fresh = nn.Linear(4, 3).cuda()
    load_training_state(ckpt, models={"denoiser": fresh})
    assert_same(fresh.state_dict(), model.state_dict())
