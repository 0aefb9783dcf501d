"""`train` on the real corpus around its checkpoints (issue 9 items 1-4, 6, 7, 11, 12; issue 13's exit and
error paths): tiny models, a few seconds each."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from model_helpers import TINY_MODEL

from hmolqd import cli
from hmolqd.atomic import stale_temp_files
from hmolqd.checkpointing import fileformat
from hmolqd.checkpointing.fileformat import (
    LATEST,
    CheckpointError,
    list_checkpoint_files,
    load_checkpoint,
)
from hmolqd.checkpointing.identity import read_run_info
from hmolqd.checkpointing.lock import LOCK_NAME
from hmolqd.config import Config
from hmolqd.training import loop
from hmolqd.training.loop import train
from hmolqd.training.optim import Optimization
from hmolqd.training.runtime import StopFlag, TrainingInterrupted

pytestmark = pytest.mark.real_data

REPO = Path(__file__).resolve().parents[1]
TINY = {
    **TINY_MODEL,
    "vqvae_epochs": 2,
    "num_epochs": 0,
    "joint_epochs": 0,
    "batch_size": 64,
    "warmup_steps": 4,
    "log_every": 3,
    "sample_every": 0,
    "sample_steps": 4,
    "checkpoint_every": 1,
    "val_every": 1,
    "door_augment": 0,
}
ROOMS = 1212  # training rooms per epoch (mirrors included)


def config(vglc_dir: Path, root: Path, **extra: Any) -> Config:
    return Config.from_flat(
        {
            **TINY,
            "data_dir": str(vglc_dir),
            "checkpoint_dir": str(root / "ckpt"),
            "output_dir": str(root / "out"),
            **extra,
        }
    )


def quiet(msg: str) -> None:
    pass


# ---------------------------------------------------------------- item 4: batch size changed on resume


@pytest.mark.parametrize("new_batch", [128, 32])
def test_changed_batch_size_continues_the_epoch_with_the_same_rooms(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_batch: int
) -> None:
    batches: list[tuple[int, float]] = []  # (rooms, loss) of every optimizer step, in order, across both runs
    real_step = Optimization.step

    def step(self: Optimization, objective: Any, x: torch.Tensor, *args: Any) -> torch.Tensor:
        loss = real_step(self, objective, x, *args)
        batches.append((x.shape[0], float(loss.detach())))
        return loss

    monkeypatch.setattr(Optimization, "step", step)
    # one step of 64 rooms, then a clean stop
    stopped = train(config(vglc_dir, tmp_path, max_runtime_hours=1e-9), log=quiet)
    assert stopped.stopped == "time budget" and batches == [(64, batches[0][1])]
    result = train(config(vglc_dir, tmp_path, batch_size=new_batch), log=quiet)
    assert result.finished
    ends = [r["step"] for r in result.history]
    first_epoch = 1 + -(-(ROOMS - 64) // new_batch)  # the 64 rooms already done, then the rest at the new size
    assert ends == [first_epoch, first_epoch + -(-ROOMS // new_batch)]
    start = 0
    for record, end in zip(result.history, ends):
        epoch = batches[start:end]
        assert sum(n for n, _ in epoch) == ROOMS, f"epoch {record['epoch']} trained {sum(n for n, _ in epoch)} rooms"
        assert record["train_loss"] == pytest.approx(sum(loss for _, loss in epoch) / len(epoch), rel=1e-5)
        start = end
    assert len(batches) == ends[-1]
    latest = load_checkpoint(tmp_path / "ckpt" / LATEST)
    assert latest["scheduler"]["total_steps"] == ends[-1]  # the schedule ends where the stage ends


# ---------------------------------------------------------------- items 11 and 12: re-runs of a finished training


def test_finished_training_says_so_and_leaves_its_outputs(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(vglc_dir, tmp_path, vqvae_epochs=1, num_epochs=1, batch_size=256)
    train(cfg, log=quiet)
    out = tmp_path / "out"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    messages: list[str] = []
    again = train(cfg.with_overrides(vqvae_epochs=2), log=messages.append)
    assert again.finished and again.already_finished and again.resumed_from == tmp_path / "ckpt" / LATEST
    assert "training already finished (stage diffusion, epoch 1): nothing to train" in messages
    assert any(
        m.startswith("vqvae_epochs=2 but stage vqvae ended after 1 epochs and the run is already in stage diffusion")
        for m in messages
    )
    assert any(m.startswith(f"outputs in {out} left as they are") for m in messages)
    # config.json, model_final.pt, pictures, zip untouched
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    (out / "h_molqd_outputs.zip").unlink()  # an output that is missing is written again, and only that one
    train(cfg, log=messages.append)
    assert (out / "h_molqd_outputs.zip").is_file()
    assert (out / "model_final.pt").stat().st_mtime_ns == before["model_final.pt"]
    rewritten = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    train(cfg, log=quiet, rewrite_outputs=True)
    assert (out / "model_final.pt").stat().st_mtime_ns != rewritten["model_final.pt"]


def test_cli_train_passes_rewrite_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(loop, "train", lambda cfg, **kw: calls.append(kw) or SimpleNamespace(finished=True))
    assert cli.main(["train", "--preset", "smoke", "--set", "device=cpu"]) == 0
    assert cli.main(["train", "--preset", "smoke", "--set", "device=cpu", "--rewrite-outputs"]) == 0
    assert calls == [{"rewrite_outputs": False}, {"rewrite_outputs": True}]


def test_lowered_epoch_count_says_the_run_is_past_the_new_end(vglc_dir: Path, tmp_path: Path) -> None:
    train(config(vglc_dir, tmp_path, batch_size=256), log=quiet)
    messages: list[str] = []
    result = train(config(vglc_dir, tmp_path, batch_size=256, vqvae_epochs=1), log=messages.append)
    assert result.finished and result.already_finished
    assert (
        "the run is already past the new end of stage vqvae: it trained 2 epochs, and vqvae_epochs is now 1; "
        "nothing more is trained in stage vqvae"
    ) in messages
    assert "training already finished (stage vqvae, epoch 2): nothing to train" in messages


@pytest.mark.slow
def test_config_change_warning_is_printed_once(vglc_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                **TINY,
                "vqvae_epochs": 1,
                "batch_size": 256,
                "data_dir": str(vglc_dir),
                "checkpoint_dir": str(tmp_path / "ckpt"),
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        [sys.executable, "-m", "hmolqd", "train", "--config", str(path)],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(
        [sys.executable, "-m", "hmolqd", "train", "--config", str(path), "--set", "seed=3"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert (second.stdout + second.stderr).count("config key 'seed' changed since the checkpoint") == 1


def test_end_of_run_line_reports_what_the_folder_holds(vglc_dir: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    result = train(config(vglc_dir, tmp_path, batch_size=256), log=messages.append)
    line = next(m for m in messages if m.startswith("checkpointing: "))
    m = re.search(
        r"(\d+) saves, ([\d.]+) MiB written; (\S+) holds (\d+) files \((\d+) distinct, ([\d.]+) MiB on disk\); "
        r"training waited [\d.]+ s \(\d+ ms per save\) = [\d.]+ % of this session's \d+ s; "
        r"writing took [\d.]+ s in the background",
        line,
    )
    assert m, line
    folder = tmp_path / "ckpt"
    present = [p for p in folder.iterdir() if p.is_file()]
    assert int(m[1]) == result.checkpoint_stats.saves == 2 and Path(m[3]) == folder
    assert int(m[4]) == len(present) and int(m[5]) == len({p.stat().st_ino for p in present})
    assert float(m[6]) == round(sum({p.stat().st_ino: p.stat().st_size for p in present}.values()) / 2**20, 1)


# ---------------------------------------------------------------- items 1, 6, 7: the directory before any training


def test_second_training_on_a_locked_directory_does_not_start(vglc_dir: Path, tmp_path: Path) -> None:
    holder_code = (
        "import sys, time; from hmolqd.checkpointing.lock import DirLock; DirLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(120)"
    )
    (tmp_path / "ckpt").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(tmp_path / "ckpt")], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        messages: list[str] = []
        with pytest.raises(
            CheckpointError, match=rf"is in use by another training: pid {holder.pid} on host '.+', started 20"
        ):
            train(config(vglc_dir, tmp_path), log=messages.append)
        assert messages == [] and not (tmp_path / "out").exists()  # refused before any start-up work
    finally:
        holder.kill()
        holder.wait()
    messages = []
    assert train(config(vglc_dir, tmp_path, vqvae_epochs=1, batch_size=256), log=messages.append).finished
    assert any(
        m.startswith(f"took over the lock {tmp_path / 'ckpt' / LOCK_NAME} of pid {holder.pid}") for m in messages
    )
    assert not (tmp_path / "ckpt" / LOCK_NAME).exists()  # released at the end


@pytest.mark.parametrize("problem", ["directory named like latest", "file instead of a folder"])
def test_a_bad_checkpoint_dir_is_named_before_any_training(vglc_dir: Path, tmp_path: Path, problem: str) -> None:
    if problem == "file instead of a folder":
        (tmp_path / "ckpt").write_text("oops")
        expected = f"checkpoint_dir {tmp_path / 'ckpt'} is a file, not a directory"
    else:
        (tmp_path / "ckpt" / LATEST).mkdir(parents=True)
        expected = f"{tmp_path / 'ckpt' / LATEST} is a directory, not a checkpoint file"
    messages: list[str] = []
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        train(config(vglc_dir, tmp_path), log=messages.append)
    assert messages == [] and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- items 2 and 3: run identity


def test_another_runs_checkpoint_copied_in_is_not_adopted(vglc_dir: Path, tmp_path: Path) -> None:
    train(config(vglc_dir, tmp_path / "a", batch_size=256), log=quiet)
    # other architecture, further on
    train(config(vglc_dir, tmp_path / "b", batch_size=256, latent_dim=16, vqvae_epochs=3, seed=5), log=quiet)
    run_a = read_run_info(tmp_path / "a" / "ckpt").run_id
    assert all(load_checkpoint(f.path)["run_id"] == run_a for f in list_checkpoint_files(tmp_path / "a" / "ckpt"))
    # cp writes into latest's file: all its names change
    shutil.copy(tmp_path / "b" / "ckpt" / LATEST, tmp_path / "a" / "ckpt" / LATEST)
    messages: list[str] = []
    # no architecture error
    result = train(config(vglc_dir, tmp_path / "a", batch_size=256, vqvae_epochs=3), log=messages.append)
    assert (
        result.finished
        and result.resumed_from is not None
        and "ignored" in messages[0]
        and "of another run" in messages[0]
    )
    assert load_checkpoint(result.resumed_from)["run_id"] == run_a
    final = load_checkpoint(tmp_path / "a" / "ckpt" / LATEST)
    assert final["run_id"] == run_a and final["config"]["model"]["latent_dim"] == TINY["latent_dim"]


def test_resume_from_seeds_the_run_once_then_its_newer_checkpoints_win(vglc_dir: Path, tmp_path: Path) -> None:
    train(config(vglc_dir, tmp_path / "src", vqvae_epochs=1, batch_size=256), log=quiet)
    seed = tmp_path / "src" / "ckpt" / LATEST
    seeded = config(vglc_dir, tmp_path / "run", vqvae_epochs=3, batch_size=256, resume_from=str(seed))
    stop = StopFlag()
    stop.request("stop requested by the test")  # honoured at the first stop check: one step past the seed, a clean stop
    # not a tiny time budget: the seed's own training time spent it already
    stopped = train(seeded, log=quiet, stop=stop)
    assert stopped.resumed_from == seed and load_checkpoint(tmp_path / "run" / "ckpt" / LATEST)["global_step"] == 6
    messages: list[str] = []
    result = train(seeded, log=messages.append)  # the same resume_from: the run's newer progress wins
    assert result.resumed_from == tmp_path / "run" / "ckpt" / LATEST
    assert f"resume_from={str(seed)!r} started this run" in messages[0] and "wins over resume_from" in messages[0]
    assert [(r["stage"], r["epoch"]) for r in result.history] == [("vqvae", 1), ("vqvae", 2), ("vqvae", 3)]
    # 5 steps per epoch, none trained twice
    assert load_checkpoint(tmp_path / "run" / "ckpt" / LATEST)["global_step"] == 15


# ---------------------------------------------------------------- issue 13: the last write and write errors


@pytest.mark.parametrize("checkpoint_async", [False, True], ids=["sync", "async"])
def test_a_stopped_training_returns_only_after_its_last_save_is_written(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_async: bool
) -> None:
    real = fileformat._write_payload

    def slow(f: Any, data: memoryview) -> None:
        import time

        time.sleep(0.3)
        real(f, data)

    monkeypatch.setattr(fileformat, "_write_payload", slow)
    stop = StopFlag()
    stop.request("SIGTERM")  # as the handler does; the loop stops after one step and saves latest
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config(vglc_dir, tmp_path, checkpoint_async=checkpoint_async), log=quiet, stop=stop)
    result = stopped.value.result
    assert result.stopped == "SIGTERM" and result.checkpoint_stats.saves == 1
    assert load_checkpoint(tmp_path / "ckpt" / LATEST)["global_step"] == 1
    assert not stale_temp_files(tmp_path / "ckpt") and not (tmp_path / "ckpt" / LOCK_NAME).exists()


@pytest.mark.parametrize("checkpoint_async", [False, True], ids=["sync", "async"])
def test_a_write_error_stops_training_with_its_reason(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_async: bool
) -> None:
    real, writes = fileformat._write_payload, []

    def read_only_after_first(f: Any, data: memoryview) -> None:
        writes.append(1)
        if len(writes) > 1:
            raise OSError(errno.EROFS, "Read-only file system")
        real(f, data)

    monkeypatch.setattr(fileformat, "_write_payload", read_only_after_first)
    with pytest.raises(CheckpointError, match=r"saving .*checkpoint_latest\.pt failed: Read-only file system") as err:
        train(config(vglc_dir, tmp_path, batch_size=256, vqvae_epochs=3, checkpoint_async=checkpoint_async), log=quiet)
    assert "free" not in str(err.value)
    assert load_checkpoint(tmp_path / "ckpt" / LATEST)["epoch"] == 1  # the first save is intact
    assert not (tmp_path / "ckpt" / LOCK_NAME).exists()
