"""`python -m hmolqd`: bad input ends with one `error:` line naming the argument and the rule (exit 2), never a
traceback; a Ctrl-C during start-up ends with one line (exit 130); a stage-1 checkpoint is not sampled."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from matplotlib.image import imread
from model_helpers import TINY_MODEL

import hmolqd.training.loop
from hmolqd.checkpointing.export import export_model, load_model
from hmolqd.checkpointing.fileformat import CheckpointError
from hmolqd.cli import INTERRUPTED, main
from hmolqd.config import Config
from hmolqd.models.room_model import RoomModel
from hmolqd.training.loop import train

REPO = Path(__file__).resolve().parents[1]
# One VQ-VAE epoch and one diffusion epoch of a tiny model on the real corpus: 5 steps each.
TINY = {
    **TINY_MODEL,
    "vqvae_epochs": 1,
    "num_epochs": 1,
    "joint_epochs": 0,
    "batch_size": 256,
    "warmup_steps": 2,
    "sample_steps": 2,
    "eval_samples": 8,
    "mirror_augment": False,
}


@pytest.fixture(scope="module")
def run_dir(vglc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: `out/model_final.pt`, and in `ckpt/` the stage-1 (vqvae) and stage-2 checkpoints."""
    root = tmp_path_factory.mktemp("run")
    cfg = Config.from_flat(
        {**TINY, "data_dir": str(vglc_dir), "checkpoint_dir": str(root / "ckpt"), "output_dir": str(root / "out")}
    )
    assert train(cfg, log=lambda msg: None).finished
    return root


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr of the last call, which must be exactly one line starting with 'error: '."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# ---------------------------------------------------------------- bad arguments: one line, exit 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--doors", "up"],
            "error: --doors 'up': unknown door side(s) ['up']; "
            "use comma-separated sides as seen on screen: north, east, south, west",
        ),
        (["--doors", "north,sideways"], "error: --doors 'north,sideways': unknown door side(s) ['sideways']"),
        (
            ["--stairs", "maybe"],
            "error: --stairs 'maybe': stairs 'maybe' is not one of 1, true, yes, y, 0, false, no, n",
        ),
        (["-n", "0"], "error: -n 0: must be >= 1 (rooms to generate)"),
        (["-n", "-3"], "error: -n -3: must be >= 1"),
        (["--steps", "0"], "error: --steps 0: must be >= 1 (sampling steps)"),
        (
            ["--attributes", "enemies=yes"],
            "error: --attributes 'enemies=yes': enemies=yes: names are monsters, water, playable",
        ),
        (["--attributes", "monsters"], "error: --attributes 'monsters': write NAME=yes|no|open pairs"),
        (["--ncols", "0"], "error: --ncols 0: must be >= 1"),
    ],
)
def test_sample_bad_argument_is_one_error_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", "--model", str(run_dir / "out" / "model_final.pt"), "--out", str(out), *args]) == 2
    assert error_line(capsys).startswith(says)
    assert not out.exists()


@pytest.mark.parametrize(
    ("samples", "rule"), [("0", "must be an integer >= 2"), ("1", "diversity needs pairs of rooms")]
)
def test_evaluate_too_few_samples_is_one_error_line(
    run_dir: Path, vglc_dir: Path, capsys: pytest.CaptureFixture[str], samples: str, rule: str
) -> None:
    argv = [
        "evaluate",
        "--model",
        str(run_dir / "out" / "model_final.pt"),
        "--data",
        str(vglc_dir),
        "--samples",
        samples,
        "--no-dungeons",
    ]
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: --samples {samples}: ") and rule in line


def test_train_on_cuda_without_a_gpu_fails_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    argv = [
        "train",
        "--preset",
        "smoke",
        "--set",
        "device=cuda",
        "--set",
        f"checkpoint_dir={ckpt}",
        "--set",
        f"output_dir={out}",
    ]
    assert main(argv) == 2
    line = error_line(capsys)
    assert (
        line.startswith("error: config key 'device' = 'cuda', but no GPU is visible here")
        and "use 'auto' or 'cpu'" in line
    )
    assert not ckpt.exists() and not out.exists()


def test_stairs_for_a_model_without_the_stairs_condition_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Config.from_flat({**TINY, "cond_stairs": False})
    model = export_model(RoomModel.from_config(cfg), tmp_path / "model_final.pt")
    assert main(["sample", "--model", str(model), "-n", "2", "--stairs", "yes", "--out", str(tmp_path / "s.png")]) == 2
    assert (
        error_line(capsys)
        == f"error: --stairs 'yes': {model} was trained without the stairs condition (cond_stairs = false); "
        "leave --stairs out"
    )
    assert main(["sample", "--model", str(model), "-n", "2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0


def test_doors_help_names_the_sides_as_on_screen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "--doors DOORS door sides, comma-separated sides as seen on screen: north, east, south, west" in shown
    assert "(text top = west, bottom = east, left = north, right = south)" in shown and "text sides" not in shown


def test_sample_takes_on_screen_door_names(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(run_dir / "out" / "model_final.pt")
    screen, text = tmp_path / "screen.png", tmp_path / "text.png"
    assert main(["sample", "--model", model, "-n", "3", "--doors", "north,west", "--out", str(screen)]) == 0
    # the same sides, text names
    assert main(["sample", "--model", model, "-n", "3", "--doors", "left,top", "--out", str(text)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (imread(screen) == imread(text)).all()


def test_sample_asks_for_room_attributes(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(run_dir / "out" / "model_final.pt")
    assert (
        main(
            [
                "sample",
                "--model",
                model,
                "-n",
                "4",
                "--attributes",
                "monsters=yes,mirror_rows=yes",
                "--out",
                str(tmp_path / "a.png"),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out and (tmp_path / "a.png").is_file()


# ---------------------------------------------------------------- messages that name the real problem


def test_missing_data_dir_is_named_before_any_start_up_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-corpus"
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    argv = [
        "train",
        "--preset",
        "smoke",
        "--set",
        f"data_dir={missing}",
        "--set",
        f"checkpoint_dir={ckpt}",
        "--set",
        f"output_dir={out}",
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no "No checkpoint found", no device line before the error
    assert captured.err.startswith(f"error: data_dir {str(missing)!r} does not exist. Download it with `")
    assert "holds no" not in captured.err and not ckpt.exists() and not out.exists()


def test_evaluate_names_its_data_flag(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    argv = [
        "evaluate",
        "--model",
        str(run_dir / "out" / "model_final.pt"),
        "--data",
        str(missing),
        "--samples",
        "4",
        "--no-dungeons",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data {str(missing)!r} does not exist.") and "or pass --data FOLDER with" in err
    assert "data_dir" not in err


# ---------------------------------------------------------------- a stage-1 checkpoint is not a generator


def stage1_checkpoint(run_dir: Path) -> Path:
    files = sorted((run_dir / "ckpt").glob("checkpoint_vqvae_*.pt"))
    assert files, sorted(p.name for p in (run_dir / "ckpt").iterdir())
    best = run_dir / "ckpt" / "checkpoint_vqvae_best.pt"
    return best if best.is_file() else files[0]


def test_sample_refuses_a_vqvae_stage_checkpoint(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stage1_checkpoint(run_dir)
    assert main(["sample", "--model", str(path), "-n", "2", "--out", str(tmp_path / "s.png")]) == 2
    line = error_line(capsys)
    assert f"{path}: the checkpoint's stage is 'vqvae', so its denoiser was never trained" in line
    assert "use model_final.pt or a checkpoint of the 'diffusion' stage" in line
    assert not (tmp_path / "s.png").exists()


def test_load_model_refuses_stage1_unless_allowed(run_dir: Path) -> None:
    path = stage1_checkpoint(run_dir)
    with pytest.raises(CheckpointError, match="stage is 'vqvae', so its denoiser was never trained"):
        load_model(path)
    assert load_model(path, allow_untrained=True).config.model.num_embeddings == TINY["num_embeddings"]
    load_model(run_dir / "ckpt" / "checkpoint_latest.pt")  # a diffusion-stage checkpoint is a generator
    load_model(run_dir / "out" / "model_final.pt")


# ---------------------------------------------------------------- Ctrl-C during start-up


def test_keyboard_interrupt_during_start_up_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hmolqd.training.loop, "train", interrupted)
    assert main(["train", "--preset", "smoke"]) == INTERRUPTED == 130
    assert error_line(capsys).startswith("error: train interrupted by SIGINT (Ctrl-C); re-run to go on")


@pytest.mark.slow  # a fresh interpreter that imports torch: about 5 s here
def test_sigint_while_reading_the_config_exits_cleanly(tmp_path: Path) -> None:
    """A real SIGINT to `python -m hmolqd train` while it is blocked reading its --config (a FIFO nobody writes yet)."""
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hmolqd", "train", "--config", str(fifo)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # even if the runner ignores SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    writer = None
    try:
        # Opening the FIFO for writing succeeds only once the CLI has opened it for reading: it is then inside start-up.
        deadline = time.monotonic() + 120
        while writer is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
                time.sleep(0.01)
        assert writer is not None, f"the CLI never opened its config: {proc.communicate(timeout=60)}"
        # One SIGINT is the test; it is repeated (every 5 s, 60 s at most) only so that a signal lost in the
        # moment the process opens the FIFO cannot hang CI: the exit status and message below are what count.
        for _ in range(12):
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("the CLI did not exit within 60 s of SIGINT while reading its config")
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == INTERRUPTED, err
    assert (
        err.startswith("error: train interrupted by SIGINT (Ctrl-C)")
        and err.count("\n") == 1
        and "Traceback" not in err
    ), err
    assert out == ""
