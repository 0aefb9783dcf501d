"""The training loop for real on the VGLC corpus: outputs, stop paths, and bit-exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from model_helpers import TINY_MODEL

import hmolqd
from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.fileformat import load_checkpoint
from hmolqd.config import Config, TrainConfig
from hmolqd.sampling.generate import generate
from hmolqd.training.loop import TrainResult, train
from hmolqd.training.optim import lr_factor
from hmolqd.training.runtime import StopFlag, TrainingInterrupted

pytestmark = pytest.mark.real_data

TINY = {
    **TINY_MODEL,
    "model_kind": "continuous",  # the three-stage model; DISCRETE switches to the default kind (no joint stage)
    "vqvae_epochs": 2,
    "num_epochs": 2,
    "joint_epochs": 1,
    "batch_size": 128,
    "warmup_steps": 4,
    "log_every": 3,
    "sample_every": 1,
    "eval_samples": 8,
    "sample_steps": 4,
    "checkpoint_every_steps": 4,
    "checkpoint_every": 1,
    "val_every": 1,
}
DISCRETE = {"model_kind": "discrete", "joint_epochs": 0}
KINDS = {"continuous": {}, "discrete": DISCRETE}
# Single-threaded so that the reference and the interrupted processes reduce floats in the same order.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_config(vglc_dir: Path, root: Path, **extra: object) -> Config:
    return Config.from_flat(
        {
            **TINY,
            "data_dir": str(vglc_dir),
            "checkpoint_dir": str(root / "ckpt"),
            "output_dir": str(root / "out"),
            **extra,
        }
    )


def final_state(root: Path) -> dict:
    return load_checkpoint(root / "ckpt" / "checkpoint_latest.pt")


def assert_same_training(a: dict, b: dict) -> None:
    """Identical weights (all models), optimizer state, scheduler, progress and history."""
    assert a["stage"] == b["stage"] and a["global_step"] == b["global_step"]
    for name in ("vqvae", "diffusion", "ema"):
        sa, sb = a["models"][name], b["models"][name]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs"
    for (ka, va), (kb, vb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert ka == kb and all(torch.equal(va[k], vb[k]) for k in va)
    assert a["scheduler"] == b["scheduler"] and a["progress"]["stage_step"] == b["progress"]["stage_step"]
    assert a["history"] == b["history"]


def run_cli(cfg_path: Path, kill_when: tuple[str, float] | None = None, sig: int = signal.SIGKILL) -> int:
    """Run `python -m hmolqd train`; optionally send `sig` once a checkpoint file matching a glob appears
    (kill_when=("glob", delay)) or after `delay` seconds (("", delay))."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hmolqd", "train", "--config", str(cfg_path)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kill_when is not None:
        pattern, delay = kill_when
        ckpt_dir = Path(json.loads(cfg_path.read_text())["checkpoint_dir"])
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 120:
            if (not pattern and time.monotonic() - start >= delay) or (pattern and any(ckpt_dir.glob(pattern))):
                if pattern and delay:
                    time.sleep(delay)
                proc.send_signal(sig)
                break
            time.sleep(0.005)
    _, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, 3, -signal.SIGKILL):
        raise AssertionError(f"train exited {proc.returncode}:\n{err[-3000:]}")
    return proc.returncode


def write_config(vglc_dir: Path, root: Path, **extra: object) -> Path:
    path = root / "config.json"
    root.mkdir(parents=True, exist_ok=True)
    flat = {
        **TINY,
        "data_dir": str(vglc_dir),
        "checkpoint_dir": str(root / "ckpt"),
        "output_dir": str(root / "out"),
        **extra,
    }
    path.write_text(json.dumps(flat))
    return path


@pytest.fixture(scope="module")
def finished_run(vglc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, TrainResult]]:
    """The uninterrupted run of `tiny_config(**KINDS[kind])`, trained once for the module, as (its root, result).
    The discrete one (no joint stage) is also test_time_budget_...[discrete]'s reference: one training less."""
    runs: dict[str, tuple[Path, TrainResult]] = {}

    def get(kind: str) -> tuple[Path, TrainResult]:
        if kind not in runs:
            root = tmp_path_factory.mktemp(f"finished_{kind}")
            runs[kind] = (root, train(tiny_config(vglc_dir, root, **KINDS[kind]), log=lambda msg: None))
        return runs[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_train_writes_every_output(
    finished_run: Callable[[str], tuple[Path, TrainResult]], vglc_dir: Path, kind: str
) -> None:
    tmp_path, result = finished_run(kind)
    assert result.finished and result.stopped is None and result.resumed_from is None
    out = tmp_path / "out"
    for name in (
        "config.json",
        "training_history.json",
        "training_curves.png",
        "model_final.pt",
        "h_molqd_outputs.zip",
        "sample_unconditional.png",
        "sample_all_sides.png",
    ):
        assert (out / name).is_file(), name
    history = json.loads((out / "training_history.json").read_text())
    joint = [("joint", 1)] if kind == "continuous" else []
    assert [(r["stage"], r["epoch"]) for r in history] == [
        ("vqvae", 1),
        ("vqvae", 2),
        ("diffusion", 1),
        ("diffusion", 2),
        *joint,
    ]
    assert all("val_loss" in r for r in history) and "novel_playable_symmetric" in history[2]
    assert Config.from_json((out / "config.json").read_text()) == tiny_config(vglc_dir, tmp_path, **KINDS[kind])
    names = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {
        "checkpoint_latest.pt",
        "checkpoint_best.pt",
        "checkpoint_epoch_2.pt",
        "checkpoint_vqvae_epoch_2.pt",
    } <= names
    final = torch.load(out / "model_final.pt", weights_only=True)
    assert set(final["models"]) == {"vqvae", "diffusion_rest", "denoiser"} and final["denoiser"] == "ema"
    gen = hmolqd.load_model(out / "model_final.pt")
    rooms = generate(gen, 3, doors="top,left", steps=3, seed=1)
    assert rooms.shape == (3, 16, 11) and rooms.dtype == torch.uint8
    # A re-run finds the finished run and trains nothing more.
    again = train(tiny_config(vglc_dir, tmp_path, **KINDS[kind]), log=lambda msg: None)
    assert again.resumed_from is not None and again.history == result.history


@pytest.mark.parametrize("kind", KINDS)
def test_time_budget_stops_with_checkpoint_and_resumes_exactly(
    finished_run: Callable[[str], tuple[Path, TrainResult]], vglc_dir: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "discrete":  # KINDS["discrete"] is this test's config (joint_epochs=0): the shared run is the reference
        ref, reference = finished_run(kind)
    else:
        ref = tmp_path / "ref"
        reference = train(tiny_config(vglc_dir, ref, joint_epochs=0, model_kind=kind), log=lambda msg: None)
    cfg = tiny_config(vglc_dir, tmp_path / "run", joint_epochs=0, model_kind=kind, max_runtime_hours=1e-9)
    stopped = train(cfg, log=lambda msg: None)
    assert not stopped.finished and stopped.stopped == "time budget"
    assert final_state(tmp_path / "run")["global_step"] == 1  # one step, then a clean stop with latest saved
    resumed = train(cfg.with_overrides(max_runtime_hours=0), log=lambda msg: None)
    assert resumed.finished and resumed.resumed_from is not None
    assert_same_training(final_state(ref), final_state(tmp_path / "run"))
    assert resumed.history == reference.history


def test_changed_learning_rate_on_resume_rebuilds_the_schedule(vglc_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(vglc_dir, tmp_path, vqvae_epochs=2, num_epochs=0, joint_epochs=0, learning_rate=1e-3)
    stopped = train(cfg.with_overrides(max_runtime_hours=1e-9), log=lambda msg: None)
    assert stopped.stopped == "time budget" and final_state(tmp_path)["global_step"] == 1
    messages: list[str] = []
    resumed = train(cfg.with_overrides(learning_rate=4e-3), log=messages.append)
    assert any("'learning_rate' changed since the checkpoint: 0.001 -> 0.004" in m for m in messages)
    # The lr logged at the end of epoch 1 is the new peak times the unchanged schedule's factor there.
    per_epoch = resumed.history[0]["step"]
    assert final_state(tmp_path)["scheduler"]["peak"] == 4e-3
    assert resumed.history[0]["lr"] == 4e-3 * lr_factor(per_epoch, 2 * per_epoch, 4, TrainConfig().min_lr_ratio)


def test_stop_flag_like_interrupt_kernel(vglc_dir: Path, tmp_path: Path) -> None:
    stop = StopFlag()
    stop.request("SIGINT")  # what the handler does on "Interrupt kernel"
    messages: list[str] = []
    with pytest.raises(TrainingInterrupted) as stopped:  # raised, so that "Run all" stops at the training cell
        train(tiny_config(vglc_dir, tmp_path), log=messages.append, stop=stop)
    result = stopped.value.result
    assert result.stopped == "SIGINT" and (tmp_path / "ckpt" / "checkpoint_latest.pt").is_file()
    assert not (tmp_path / "out" / "model_final.pt").exists()
    # The message names the files the stop wrote, and they exist with the step it names.
    step = load_checkpoint(tmp_path / "ckpt" / "checkpoint_latest.pt")["global_step"]
    assert f"global step {step}; saved checkpoint_vqvae_step_{step}.pt and checkpoint_latest.pt" in str(stopped.value)
    assert (tmp_path / "ckpt" / f"checkpoint_vqvae_step_{step}.pt").is_file() and messages[-1] == str(stopped.value)


def test_architecture_change_on_resume_is_refused(vglc_dir: Path, tmp_path: Path) -> None:
    train(tiny_config(vglc_dir, tmp_path, vqvae_epochs=1, num_epochs=0, joint_epochs=0), log=lambda msg: None)
    with pytest.raises(Exception, match=r"latent_dim: checkpoint=4 config=16.*num_embeddings: checkpoint=16 config=64"):
        train(tiny_config(vglc_dir, tmp_path, latent_dim=16, num_embeddings=64), log=lambda msg: None)


@pytest.mark.slow
def test_sigkill_at_several_points_resumes_bit_exact(vglc_dir: Path, tmp_path: Path) -> None:
    ref_cfg = write_config(vglc_dir, tmp_path / "ref")
    assert run_cli(ref_cfg) == 0
    cfg = write_config(vglc_dir, tmp_path / "run")
    kills = [
        ("checkpoint_vqvae_step_4.pt", 0.0),  # mid-epoch, right after a step checkpoint
        ("checkpoint_vqvae_epoch_2.pt", 0.0),  # at the stage boundary
        ("checkpoint_step_*.pt", 0.05),  # mid-epoch in diffusion, between checkpoints
        ("checkpoint_epoch_2.pt", 0.0),  # entering the joint stage
    ]
    for kill in kills:
        assert run_cli(cfg, kill) in (-signal.SIGKILL, 0)
    assert run_cli(cfg, ("", 2.5)) in (-signal.SIGKILL, 0)  # wherever it is after 2.5 s, even mid-save
    assert run_cli(cfg) == 0
    assert_same_training(final_state(tmp_path / "ref"), final_state(tmp_path / "run"))
    ref_model = load_model(tmp_path / "ref" / "out" / "model_final.pt").state_dict()
    run_model = load_model(tmp_path / "run" / "out" / "model_final.pt").state_dict()
    assert all(torch.equal(ref_model[k], run_model[k]) for k in ref_model)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "stop_at", "stage"),
    [("continuous", "checkpoint_vqvae_step_4.pt", "vqvae"), ("discrete", "checkpoint_step_*.pt", "diffusion")],
)
def test_sigterm_saves_latest_and_resumes_bit_exact(
    vglc_dir: Path, tmp_path: Path, kind: str, stop_at: str, stage: str
) -> None:
    ref_cfg = write_config(vglc_dir, tmp_path / "ref", joint_epochs=0, model_kind=kind)
    assert run_cli(ref_cfg) == 0
    cfg = write_config(vglc_dir, tmp_path / "run", joint_epochs=0, model_kind=kind)
    assert run_cli(cfg, (stop_at, 0.0), sig=signal.SIGTERM) == 3  # clean stop, exit 3
    assert final_state(tmp_path / "run")["stage"] == stage
    assert run_cli(cfg) == 0
    assert_same_training(final_state(tmp_path / "ref"), final_state(tmp_path / "run"))


def test_out_of_memory_saves_latest_and_names_the_keys(vglc_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from hmolqd.training import stages

    real_forward, calls = stages.DiffusionObjective.forward, []

    def forward(self, z0, cond):  # the 3rd diffusion step runs out of memory, as a too-big batch would on a GPU
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, z0, cond)

    monkeypatch.setattr(stages.DiffusionObjective, "forward", forward)
    with pytest.raises(RuntimeError, match=r"out of memory.*checkpoint_latest\.pt was saved.*Lower 'batch_size'"):
        train(tiny_config(vglc_dir, tmp_path), log=lambda msg: None)
    latest = final_state(tmp_path)
    assert latest["stage"] == "diffusion" and latest["progress"]["stage_step"] == 2  # the two full steps are kept
    monkeypatch.setattr(stages.DiffusionObjective, "forward", real_forward)
    assert train(tiny_config(vglc_dir, tmp_path), log=lambda msg: None).finished  # and the re-run resumes from there


@pytest.mark.slow
def test_both_stages_learn_on_the_real_corpus(vglc_dir: Path, tmp_path: Path) -> None:
    """A brief real run: both losses fall and held-out rooms are reconstructed far above chance."""
    cfg = tiny_config(
        vglc_dir,
        tmp_path,
        downsample=2,
        embedding_dim=48,
        num_embeddings=128,
        latent_dim=16,
        vqvae_epochs=20,
        num_epochs=6,
        joint_epochs=0,
        batch_size=64,
        learning_rate=2e-3,
        warmup_steps=20,
        sample_every=0,
        val_every=20,
        checkpoint_every_steps=0,
    )
    history = train(cfg, log=lambda msg: None).history
    vq = [r for r in history if r["stage"] == "vqvae"]
    diff = [r for r in history if r["stage"] == "diffusion"]
    assert vq[-1]["train_loss"] < 0.2 * vq[0]["train_loss"]
    assert diff[-1]["train_loss"] < 0.8 * diff[0]["train_loss"]
    # Always guessing the most common tile (wall) scores about 0.5 per tile and 0 per room.
    assert vq[-1]["val_tile_accuracy"] > 0.95 and vq[-1]["val_room_accuracy"] > 0.15


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_progress_bar_is_drawn_only_where_it_redraws_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from hmolqd.training.loop import bar_wanted

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert bar_wanted(_Stream(tty=True)) and not bar_wanted(_Stream(tty=False))
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # in a notebook: the bar is its widget
    assert bar_wanted(_Stream(tty=False))


def test_training_into_a_file_logs_a_line_per_epoch_and_no_bar(vglc_dir: Path, tmp_path: Path) -> None:
    """`python -m hmolqd train > log 2>&1`: one line per epoch, none of the progress bar's redraws."""
    argv = ["train", "--preset", "smoke", "--set", f"data_dir={vglc_dir}", "--set", "device=cpu"]
    for key in ("checkpoint_dir", "output_dir"):
        argv += ["--set", f"{key}={tmp_path / key}"]
    log = tmp_path / "train.log"
    with log.open("w") as f:
        code = subprocess.run([sys.executable, "-m", "hmolqd", *argv], stdout=f, stderr=f, env=ENV, timeout=300)
    text = log.read_text()
    assert code.returncode == 0, text
    epochs = [line.split(":")[0] for line in text.splitlines() if "] epoch " in line]
    assert epochs == [f"[{stage}] epoch {e} step {s}" for stage, e, s in EPOCH_LINES], text
    assert "\r" not in text and "it/s" not in text, text


# The smoke preset on the real corpus: 2 VQ-VAE and 2 diffusion epochs of 38 steps (2,424 rooms in batches of 64).
EPOCH_LINES = [("vqvae", 1, 38), ("vqvae", 2, 76), ("diffusion", 1, 114), ("diffusion", 2, 152)]
