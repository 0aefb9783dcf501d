"""The self-check that runs `train()` itself: stopped twice on the real corpus (time budget, then SIGINT as
"Interrupt kernel" sends) and resumed, against an uninterrupted run; and the two helpers every check of
`hmolqd.training.selfcheck` uses (a fresh folder per check, expected warnings kept quiet).
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hmolqd.checkpointing.compare import assert_same, compare_states
from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.fileformat import LATEST, load_checkpoint
from hmolqd.config import Config
from hmolqd.training.loop import train
from hmolqd.training.outputs import FINAL_MODEL
from hmolqd.training.runtime import TrainingInterrupted
from hmolqd.training.trainee import TINY_MODEL

# train() on the real corpus in a few seconds on CPU: 5 steps per epoch, every stage, step checkpoints.
TINY_TRAIN = {
    **TINY_MODEL,
    "vqvae_epochs": 2,
    "num_epochs": 2,
    "door_augment": 0,
    "batch_size": 256,
    "warmup_steps": 2,
    "log_every": 2,
    "sample_every": 0,
    "sample_steps": 2,
    "checkpoint_every_steps": 3,
    "keep_last_n": 2,
    "max_runtime_hours": 0.0,
}
# Keys of a checkpoint that legitimately differ between two runs reaching the same state (config: its paths).
_RUN_SPECIFIC = ("timestamp", "elapsed", "integrity", "config", "run_id")


def fresh_folder(workdir: str | Path, name: str) -> Path:
    """A new, empty folder for one check (a re-run never sees an earlier run's files; nothing is deleted)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}_", dir=workdir))


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Expected warnings (skipped files, config changes on resume) stay out of the check's one-line report."""
    log, level = logging.getLogger(logger), logging.getLogger(logger).level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _train_quietly(cfg: Config, on_log: Callable[[str], None] | None = None) -> tuple[Any, list[str]]:
    """train() with its messages collected and its progress bars (stderr) captured instead of printed."""
    messages: list[str] = []

    def log(msg: str) -> None:
        messages.append(msg)
        if on_log is not None:
            on_log(msg)

    with contextlib.redirect_stderr(io.StringIO()), quiet("hmolqd"):
        try:
            result = train(cfg, log=log)
        except TrainingInterrupted as stopped:  # the SIGINT check: its checkpoint is written, the result comes with it
            result = stopped.result
    return result, messages


def _interrupt_after(prefix: str) -> Callable[[str], None]:
    """A log callback sending SIGINT to this process (what "Interrupt kernel" does) once `prefix` is logged."""

    def on_log(msg: str) -> None:
        if msg.startswith(prefix):
            if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN):
                raise AssertionError(
                    "train() runs without its SIGINT handler: 'Interrupt kernel' would not save a checkpoint"
                )
            signal.raise_signal(signal.SIGINT)

    return on_log


def check_training_resume(workdir: str | Path, data_dir: str | Path | None = None, device: str = "auto") -> str:
    """A reference run against one stopped by the time budget (after 1 step), resumed, stopped again by SIGINT
    (as "Interrupt kernel" does; train's handler turns it into a stop one step into diffusion epoch 2), and
    resumed to the end."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "check_training_resume sends itself SIGINT, which only the main thread can handle: "
            "run it from the main thread"
        )
    root = fresh_folder(workdir, "training")

    def cfg(name: str, **extra: Any) -> Config:
        return Config.from_flat(
            {
                **TINY_TRAIN,
                "data_dir": None if data_dir is None else str(data_dir),
                "device": device,
                "checkpoint_dir": str(root / name / "ckpt"),
                "output_dir": str(root / name / "out"),
                # never a previous output attached under /kaggle/input
                "resume_input": "off",
                **extra,
            }
        )

    ref, _ = _train_quietly(cfg("reference"))
    assert ref.finished, f"the reference run did not finish: {ref.stopped}"
    first, _ = _train_quietly(cfg("resumed", max_runtime_hours=1e-9))
    assert first.stopped == "time budget" and _final(root / "resumed")["global_step"] == 1, (
        f"time-budget run: stopped={first.stopped!r}"
    )
    second, _ = _train_quietly(cfg("resumed"), on_log=_interrupt_after("[diffusion] epoch 1 "))
    mid = _final(root / "resumed")
    assert second.stopped == "SIGINT" and second.resumed_from is not None, (
        f"second run: stopped={second.stopped!r}, resumed from {second.resumed_from}"
    )
    assert (mid["stage"], mid["epoch"], mid["data_order"]["position"]) == ("diffusion", 1, 1), (
        f"SIGINT stop saved {mid['stage']} epoch {mid['epoch']} position {mid['data_order']['position']}"
    )
    last, msgs = _train_quietly(cfg("resumed"))
    assert last.finished and last.resumed_from is not None, (
        f"final run: finished={last.finished}, resumed from {last.resumed_from}"
    )
    assert any(m.startswith("Resuming from ") for m in msgs), (
        "the resumed run did not say which checkpoint it resumed from"
    )

    epochs = [(r["stage"], r["epoch"]) for r in last.history]
    expected = [("vqvae", 1), ("vqvae", 2), ("diffusion", 1), ("diffusion", 2)]
    assert epochs == expected, f"history epochs {epochs}, expected {expected} (each exactly once)"
    atol = 0.0
    if next(ref.generator.parameters()).device.type == "cuda":  # measure the run-to-run noise of this GPU
        _train_quietly(cfg("reference_again"))
        atol = (
            10
            * compare_states(
                _final(root / "reference", True), _final(root / "reference_again", True), atol=float("inf")
            ).max_abs_diff
        )
    cmp = assert_same(
        _final(root / "resumed", True),
        _final(root / "reference", True),
        "resumed vs uninterrupted checkpoint_latest.pt",
        atol,
    )
    assert_same(
        load_model(root / "resumed/out" / FINAL_MODEL).state_dict(),
        load_model(root / "reference/out" / FINAL_MODEL).state_dict(),
        "model_final.pt",
        atol,
    )
    noise = (
        "bit-exact"
        if cmp.max_abs_diff == 0
        else f"max |diff| {cmp.max_abs_diff:.2g}, within 10x the GPU's run-to-run noise"
    )
    return (
        f"stopped by time budget at step 1 and by SIGINT in diffusion epoch 2, resumed twice: {cmp.tensors} tensors "
        f"(models, EMA, optimizer, scheduler, scaler, RNG) and the history equal the uninterrupted run ({noise})"
    )


def _final(run_dir: Path, comparable: bool = False) -> dict[str, Any]:
    """checkpoint_latest.pt of a run; `comparable` drops what differs between two runs reaching the same state."""
    ckpt = load_checkpoint(run_dir / "ckpt" / LATEST)
    if not comparable:
        return ckpt
    return {
        **{k: v for k, v in ckpt.items() if k not in _RUN_SPECIFIC},
        "config": {k: v for k, v in ckpt["config"].items() if k != "paths"},
    }
