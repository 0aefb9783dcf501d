"""Checks that checkpointing never loses work, run visibly by `test_checkpoint_resume.ipynb` (and by CI).

`run_all(workdir, data_dir=None, device="auto")` prints one line per check with a pass mark or the reason
it failed, then raises AssertionError naming every failed check, so executing the notebook is a real test.
Each `check_*` function also runs alone (a fresh folder under `workdir` each time), raises on failure and
returns what it verified: every state's save/load round trip tensor by tensor (model, optimizer, scheduler,
scaler, EMA, RNG) and an identical continuation; RNG draws; latest / best / epoch files; rotation; fallback
past damaged files; `train()` stopped twice on the real corpus (time budget, then SIGINT as "Interrupt
kernel" sends) and resumed, against an uninterrupted run; the inference-only export (one denoiser, the
rooms of the model it was written from).

The check that runs `train()` itself lives in `selfcheck_resume` (importable from here).

Bit-exact on CPU. On CUDA, kernels with atomics are not bit-reproducible, so the continuation checks first
measure the run-to-run noise (two runs from the same start) and accept up to 10x that noise (0 = exact).
"""

from __future__ import annotations

import contextlib
import copy
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmolqd.checkpointing.compare import assert_same, compare_states
from hmolqd.checkpointing.export import ONE_DENOISER_PARTS, load_model
from hmolqd.checkpointing.fileformat import INFERENCE_FORMAT, LATEST, load_checkpoint
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
from hmolqd.checkpointing.restore import load_training_state
from hmolqd.checkpointing.resume import find_resume_checkpoint
from hmolqd.checkpointing.rng import capture_rng_state, restore_rng_state
from hmolqd.data.tiles import NUM_TILES, ROOM_H, ROOM_W
from hmolqd.sampling.generate import generate
from hmolqd.training.outputs import export_final
from hmolqd.training.runtime import setup_runtime
from hmolqd.training.selfcheck_resume import TINY_TRAIN, check_training_resume, fresh_folder, quiet
from hmolqd.training.trainee import Trainee, live_state, make_trainee, train_steps, training_state

__all__ = [
    "TINY_TRAIN",
    "CheckResult",
    "check_checkpoint_files",
    "check_corrupt_fallback",
    "check_inference_export",
    "check_rng_round_trip",
    "check_rotation",
    "check_state_round_trip",
    "check_training_resume",
    "run_all",
]


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


# ---------------------------------------------------------------- the checks


def _resume(folder: Path, seed: int, dev: torch.device) -> tuple[Trainee, dict[str, Any]]:
    """A fresh process (other weights, other RNG state) resuming from `folder` as the trainer does."""
    t = make_trainee(seed, dev)
    found = find_resume_checkpoint(folder)
    assert found.path == folder / LATEST and found.checkpoint is not None, (
        f"resume picked {found.path}: {found.message}"
    )
    ckpt = found.checkpoint
    load_training_state(ckpt, models=t.gen.parts(), optimizer=t.o.optimizer, scaler=t.o.scaler)
    t.steps = ckpt["global_step"]
    return t, ckpt


def check_state_round_trip(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    dev = torch.device(device)
    folder = fresh_folder(workdir, "round_trip")
    a = make_trainee(0, dev)
    train_steps(a, 3)
    saved = training_state(a, "joint", 1)
    CheckpointManager(folder).save_epoch_end(saved, {"val_loss": 0.5})
    train_steps(a, 3)  # the run that was never interrupted

    b, ckpt = _resume(folder, 1, dev)
    loaded = assert_same(
        live_state(b), {k: saved[k] for k in ("models", "optimizer", "scheduler", "scaler")}, "loaded state"
    )
    files = assert_same({k: ckpt[k] for k in saved}, saved, "checkpoint file")
    restore_rng_state(ckpt["rng"])
    train_steps(b, 3)
    atol = 0.0
    if dev.type == "cuda":  # kernels with atomics: measure the noise of two continuations from the same file
        c, _ = _resume(folder, 2, dev)
        restore_rng_state(ckpt["rng"])
        train_steps(c, 3)
        atol = 10 * compare_states(live_state(b), live_state(c), atol=float("inf")).max_abs_diff
    cont = assert_same(live_state(b), live_state(a), "continued training", atol)
    exact = (
        "bit-exact"
        if cont.max_abs_diff == 0
        else f"max |diff| {cont.max_abs_diff:.2g}, within 10x the GPU's run-to-run noise"
    )
    return (
        f"{loaded.tensors} tensors of model/optimizer/scheduler/scaler/EMA identical after load, "
        f"{files.tensors} in the file (RNG included); 3 more steps match the uninterrupted run ({exact})"
    )


def check_rng_round_trip(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    dev = torch.device(device)
    path = fresh_folder(workdir, "rng") / "rng.pt"
    random.gauss(0, 1), np.random.randn(), torch.randn(1)  # leave cached gaussians in the state
    torch.save(capture_rng_state(), path)
    state = torch.load(path, weights_only=True)

    def draw() -> list[Any]:
        cuda = [torch.rand(3, device=dev).cpu()] if dev.type == "cuda" else []
        return [
            random.random(),
            random.gauss(0, 1),
            np.random.rand(3).tolist(),
            float(np.random.randn()),
            torch.rand(3),
            torch.randn(2),
            *cuda,
        ]

    first = draw()
    restore_rng_state(state)
    assert_same(draw(), first, "draws after restore")
    parts = "python, numpy, torch" + (", CUDA" if dev.type == "cuda" else "")
    return f"{parts} generators draw identical numbers after a weights-only round trip"


def check_checkpoint_files(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    folder = fresh_folder(workdir, "files")
    t = make_trainee(0, torch.device(device))
    mgr = CheckpointManager(folder, CheckpointPolicy(every_epochs=1, keep_last_n=10))
    snaps = {}
    for stage, epoch, val in (("vqvae", 1, 0.8), ("diffusion", 1, 0.9), ("diffusion", 2, 0.5), ("diffusion", 3, 0.7)):
        train_steps(t, 1)  # other weights at each save
        snaps[stage, epoch] = training_state(t, stage, epoch)
        mgr.save_epoch_end(snaps[stage, epoch], {"val_loss": val})
    expect = {
        "checkpoint_vqvae_epoch_1.pt": ("vqvae", 1),
        "checkpoint_vqvae_best.pt": ("vqvae", 1),
        "checkpoint_epoch_1.pt": ("diffusion", 1),
        "checkpoint_epoch_2.pt": ("diffusion", 2),
        "checkpoint_epoch_3.pt": ("diffusion", 3),
        "checkpoint_best.pt": ("diffusion", 2),
        LATEST: ("diffusion", 3),
    }
    assert _names(folder) == set(expect), f"files {sorted(_names(folder))}, expected {sorted(expect)}"
    for name, key in expect.items():
        ckpt = load_checkpoint(folder / name)
        assert (ckpt["stage"], ckpt["epoch"]) == key, (
            f"{name} holds {ckpt['stage']} epoch {ckpt['epoch']}, expected {key}"
        )
        assert_same(ckpt["models"], snaps[key]["models"], f"{name} models")
        assert_same(ckpt["optimizer"], snaps[key]["optimizer"], f"{name} optimizer")
    best = load_checkpoint(folder / LATEST)["best_metric"]
    assert best == {"vqvae": 0.8, "diffusion": 0.5}, f"best_metric {best}"
    return (
        f"{len(expect)} files: latest = last save, best = lowest val_loss per stage, "
        "epoch_N = epoch N (weights compared)"
    )


def check_rotation(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    folder = fresh_folder(workdir, "rotation")
    t = make_trainee(0, torch.device(device))
    mgr = CheckpointManager(folder, CheckpointPolicy(every_epochs=1, every_steps=2, keep_last_n=2))
    for epoch, val in enumerate((0.1, 0.5, 0.4, 0.3, 0.2), start=1):
        for _ in range(2):
            train_steps(t, 1)
            if mgr.step_save_due("diffusion", t.steps):
                mgr.save_step(training_state(t, "diffusion", epoch - 1))
        mgr.save_epoch_end(training_state(t, "diffusion", epoch), {"val_loss": val})
    expect = {
        "checkpoint_epoch_4.pt",
        "checkpoint_epoch_5.pt",
        "checkpoint_step_8.pt",
        "checkpoint_step_10.pt",
        "checkpoint_best.pt",
        LATEST,
    }
    assert _names(folder) == expect, (
        f"after 5 epochs with keep_last_n=2: {sorted(_names(folder))}, expected {sorted(expect)}"
    )
    best = load_checkpoint(folder / "checkpoint_best.pt")
    assert best["epoch"] == 1, f"checkpoint_best.pt holds epoch {best['epoch']}; epoch 1 had the best val_loss"
    return "5 epochs, 10 steps, keep_last_n=2: epoch 4-5 and step 8-10 kept; best (epoch 1) and latest kept"


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    else:  # one weight changed and the file re-saved as valid torch data: only the checksum can tell
        obj = torch.load(path, weights_only=True)
        next(v for v in obj["models"]["vqvae"].values() if v.is_floating_point()).view(-1)[0] += 1.0
        torch.save(obj, path)


def check_corrupt_fallback(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    folder = fresh_folder(workdir, "corrupt")
    t = make_trainee(0, torch.device(device))
    mgr = CheckpointManager(folder, CheckpointPolicy(every_epochs=1, keep_last_n=5))
    snaps = {}
    for epoch in (1, 2, 3):
        train_steps(t, 1)
        snaps[epoch] = training_state(t, "diffusion", epoch)
        mgr.save_epoch_end(snaps[epoch])
    train_steps(t, 1)  # latest alone (a stop mid-epoch): its own file, not a hard link of epoch_3's
    mgr.save_latest(training_state(t, "diffusion", 3))
    damage = {
        LATEST: ("truncate", "truncated"),
        "checkpoint_epoch_3.pt": ("alter", "checksum mismatch"),
        "checkpoint_epoch_2.pt": ("garbage", "unreadable"),
    }
    for name, (how, _) in damage.items():
        _damage(folder / name, how)
    with quiet("hmolqd"):  # the skip warnings are expected here; they are checked below instead
        found = find_resume_checkpoint(folder)
    assert found.path == folder / "checkpoint_epoch_1.pt", (
        f"resumed from {found.path}, expected checkpoint_epoch_1.pt: {found.message}"
    )
    reasons = {p.name: why for p, why in found.skipped}
    for name, (_, word) in damage.items():
        assert word in reasons.get(name, ""), f"{name}: skip reason {reasons.get(name)!r} does not say {word!r}"
        assert (folder / name).is_file(), f"{name} was deleted; a damaged file must be kept for inspection"
    assert_same(found.checkpoint["models"], snaps[1]["models"], "fallback models")
    return (
        "damaged latest (truncated), epoch_3 (one weight altered), epoch_2 (garbage) skipped with reasons, "
        "kept on disk; resumed from epoch_1 (weights identical)"
    )


def check_inference_export(workdir: str | Path, device: str | torch.device = "cpu") -> str:
    folder = fresh_folder(workdir, "export")
    t = make_trainee(0, torch.device(device))
    train_steps(t, 2)  # the EMA copy now differs from the trained denoiser, so a wrong pick shows
    path = export_final(t.gen, folder)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain torch, no hmolqd code involved
    assert raw["format"] == INFERENCE_FORMAT, f"{path.name} format {raw.get('format')!r}"
    extra = {"optimizer", "scheduler", "scaler", "rng"} & set(raw)
    assert not extra, f"{path.name} is inference-only but holds {sorted(extra)}"
    assert raw.get("denoiser") == "ema" and sorted(raw["models"]) == sorted(ONE_DENOISER_PARTS), (
        f"{path.name} holds {sorted(raw['models'])} with denoiser {raw.get('denoiser')!r}; "
        f"expected {sorted(ONE_DENOISER_PARTS)} with the 'ema' denoiser (use_ema is on)"
    )
    gen = load_model(path)
    # The export holds the EMA denoiser only; the loaded model has it in both denoiser slots.
    ema = {f"diffusion.denoiser.{k}": v for k, v in t.gen.ema.state_dict().items()}
    assert_same(gen.state_dict(), {**t.gen.state_dict(), **ema}, "exported generator")
    rooms = generate(gen, 2, doors="top,left", steps=3, seed=0)
    assert rooms.shape == (2, ROOM_H, ROOM_W) and rooms.dtype == torch.uint8, (
        f"generated {rooms.dtype} {tuple(rooms.shape)}"
    )
    assert int(rooms.max()) < NUM_TILES, f"generated tile index {int(rooms.max())} >= {NUM_TILES}"
    trained = generate(copy.deepcopy(t.gen).cpu(), 2, doors="top,left", steps=3, seed=0)  # the loaded model is on CPU
    assert torch.equal(rooms, trained), "the export generated other rooms than the model it was written from"
    return (
        f"{path.name} ({path.stat().st_size / 1e3:.0f} kB, one denoiser: the EMA copy) loads with "
        f"torch.load(weights_only=True), weights identical, generates the {ROOM_H}x{ROOM_W} rooms the trained "
        "model generates (same seed)"
    )


# ---------------------------------------------------------------- running them all


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    seconds: float
    detail: str  # what was verified, or why it failed


def _checks(
    workdir: Path, data_dir: str | Path | None, device: str, dev: torch.device
) -> list[tuple[str, Callable[[], str]]]:
    return [
        ("save/load round trip of every state", lambda: check_state_round_trip(workdir, dev)),
        ("RNG state round trip", lambda: check_rng_round_trip(workdir, dev)),
        ("latest / best / epoch files", lambda: check_checkpoint_files(workdir, dev)),
        ("rotation (keep_last_n)", lambda: check_rotation(workdir, dev)),
        ("corrupt-file fallback", lambda: check_corrupt_fallback(workdir, dev)),
        ("interrupted training = uninterrupted", lambda: check_training_resume(workdir, data_dir, device)),
        ("inference-only export", lambda: check_inference_export(workdir, dev)),
    ]


def run_all(
    workdir: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> list[CheckResult]:
    """Run every check (workdir None = a temporary folder, removed after); raise AssertionError if any failed."""
    dev = setup_runtime(device, use_amp=False).device  # "auto" -> cuda when available; an unsupported GPU raises here
    with contextlib.ExitStack() as stack:
        root = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hmolqd_selfcheck_")))
        )
        root.mkdir(parents=True, exist_ok=True)
        log(f"hmolqd self-check on {dev} (torch {torch.__version__}), working in {root}")
        results = []
        for name, check in _checks(root, data_dir, device, dev):
            start = time.perf_counter()
            try:
                detail, passed = check(), True
            except Exception as err:  # any failure is recorded and reported below; the run goes on to the next check
                detail, passed = f"{type(err).__name__}: {err}", False
            result = CheckResult(name, passed, time.perf_counter() - start, detail)
            results.append(result)
            log(f"{'✔ PASS' if passed else '✘ FAIL'}  {name} ({result.seconds:.1f} s): {detail}")
    failed = [r for r in results if not r.passed]
    if failed:
        raise AssertionError(
            f"{len(failed)} of {len(results)} checks failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed)
        )
    log(f"all {len(results)} checks passed in {sum(r.seconds for r in results):.1f} s")
    return results
