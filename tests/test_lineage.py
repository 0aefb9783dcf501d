"""No setting ever overwrites or deletes a file of another run (issue 17): each case trains for real (a few
optimizer steps on the real corpus) on a folder holding an earlier run, and compares the folder's files byte
for byte before and after. Files of another run may only move, unchanged, into `previous_runs/`."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hmolqd.atomic import atomic_write_text, stale_temp_files
from hmolqd.checkpointing import fileformat
from hmolqd.checkpointing.export import load_model
from hmolqd.checkpointing.fileformat import LATEST, CheckpointError, load_checkpoint
from hmolqd.checkpointing.identity import read_run_info
from hmolqd.checkpointing.lineage import ARCHIVE, UNREADABLE
from hmolqd.checkpointing.lock import LOCK_NAME, DirLock
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
from hmolqd.checkpointing.resume import find_resume_checkpoint
from hmolqd.config import Config
from hmolqd.training.loop import train
from hmolqd.training.outputs import FINAL_MODEL, ZIP_NAME, zip_outputs
from hmolqd.training.runtime import StopFlag, TrainingInterrupted
from hmolqd.training.trainee import TINY_MODEL

pytestmark = pytest.mark.real_data

# Discrete model, 3 optimizer steps per epoch on the 1212 training rooms (mirrors included): seconds per run.
TINY = {
    **TINY_MODEL,
    "vqvae_epochs": 1,
    "num_epochs": 2,
    "joint_epochs": 0,
    "batch_size": 512,
    "warmup_steps": 1,
    "checkpoint_every": 1,
    "val_every": 1,
    "sample_every": 0,
    "sample_steps": 2,
    "door_augment": 0,
    "checkpoint_every_minutes": 0.0,
}


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


def run(cfg: Config) -> tuple[Any, list[str]]:
    messages: list[str] = []
    return train(cfg, log=messages.append), messages


def files(folder: Path) -> dict[str, str]:
    """{path relative to folder: sha256} of every file below it (the live lock aside)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def assert_kept(before: dict[str, str], folder: Path) -> list[str]:
    """Every file of `before` is still in `folder` with the same bytes: where it was, or set aside under previous_runs/
    with the same name. Returns the paths of those that moved."""
    after = files(folder)
    moved = []
    for rel, digest in before.items():
        if after.get(rel) == digest:
            continue
        name = Path(rel).name
        homes = [r for r, d in after.items() if d == digest and Path(r).name == name and Path(r).parts[0] == ARCHIVE]
        assert homes, f"{rel} of the earlier run changed or disappeared (nothing with its bytes under {ARCHIVE}/)"
        moved.append(homes[0])
    return moved


@pytest.fixture(scope="module")
def finished(vglc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished earlier run (checkpoints, best, outputs, zip); each test copies it."""
    root = tmp_path_factory.mktemp("finished")
    result, _ = run(config(vglc_dir, root, keep_last_n=5))
    assert result.finished
    return root


def copy_of(finished: Path, tmp_path: Path) -> Path:
    root = tmp_path / "run"
    shutil.copytree(finished, root, copy_function=shutil.copy2)
    return root


def test_auto_resume_false_sets_the_finished_run_aside_and_says_so(
    vglc_dir: Path, finished: Path, tmp_path: Path
) -> None:
    root = copy_of(finished, tmp_path)
    before_ckpt, before_out = files(root / "ckpt"), files(root / "out")
    old = read_run_info(root / "ckpt")
    best = load_checkpoint(root / "ckpt" / "checkpoint_best.pt")["best_metric"]
    result, messages = run(config(vglc_dir, root, auto_resume=False, learning_rate=1e-5))  # a worse run
    moved = assert_kept(before_ckpt, root / "ckpt")
    assert sorted(Path(m).name for m in moved) == sorted(before_ckpt)  # every file of the old run left the top level
    assert_kept(before_out, root / "out")
    assert result.finished and read_run_info(root / "ckpt").run_id != old.run_id
    said = next(m for m in messages if m.startswith("No checkpoint found"))
    assert f"set aside {len(before_ckpt)} file(s) of run {old.run_id[:8]}" in said and "(kept, not resumed)" in said
    assert load_checkpoint(root / "ckpt" / ARCHIVE / old.run_id[:8] / "checkpoint_best.pt")["best_metric"] == best
    assert any(f"output_dir {root / 'out'} held the outputs of run {old.run_id[:8]}" in m for m in messages)


def test_resume_from_an_epoch_file_keeps_the_later_files_and_the_better_best(
    vglc_dir: Path, finished: Path, tmp_path: Path
) -> None:
    root = copy_of(finished, tmp_path)
    before = files(root / "ckpt")
    seed = root / "ckpt" / "checkpoint_epoch_1.pt"
    result, messages = run(config(vglc_dir, root, resume_from=str(seed)))
    moved = assert_kept(before, root / "ckpt")
    assert {Path(m).name for m in moved} >= {LATEST, "checkpoint_epoch_2.pt", "checkpoint_best.pt"}
    assert result.finished and result.resumed_from is not None and result.resumed_from.parts[-3] == ARCHIVE
    # Re-running with the same resume_from continues the new run (its own files), not the seed again.
    _, again = run(config(vglc_dir, root, resume_from=str(seed)))
    assert any("wins over resume_from" in m or "training already finished" in m for m in again)
    assert_kept(before, root / "ckpt")


def test_a_folder_of_a_newer_format_is_refused_and_left_as_it_is(
    vglc_dir: Path, finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_of(finished, tmp_path)
    newer = load_checkpoint(root / "ckpt" / LATEST)
    monkeypatch.setattr(fileformat, "FORMAT_VERSION", 2)
    fileformat.write_atomic(root / "ckpt" / LATEST, fileformat.serialize(fileformat.finalize(newer)))
    monkeypatch.undo()
    before = files(root / "ckpt")
    with pytest.raises(
        CheckpointError,
        match=r"written by a newer hmolqd \(checkpoint_latest\.pt: format_version 2 > 1\).*upgrade hmolqd",
    ):
        run(config(vglc_dir, root))
    assert files(root / "ckpt") == before


def test_files_that_fail_to_load_are_set_aside_not_replaced(vglc_dir: Path, finished: Path, tmp_path: Path) -> None:
    root = copy_of(finished, tmp_path)
    for name in (LATEST, "checkpoint_best.pt", "checkpoint_epoch_2.pt", "checkpoint_epoch_1.pt"):
        path = root / "ckpt" / name
        if path.exists():
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF  # a flipped byte: the checksum fails
            path.unlink()  # its own file (the names were hard links of one another)
            path.write_bytes(bytes(data))
    before = files(root / "ckpt")
    result, messages = run(config(vglc_dir, root, num_epochs=3))
    moved = assert_kept(before, root / "ckpt")
    assert {Path(m).parts[1] for m in moved if Path(m).name in (LATEST, "checkpoint_best.pt")} == {UNREADABLE}
    assert result.finished and any("that failed to load" in m for m in messages)


def test_rotation_never_deletes_a_file_of_another_run(tmp_path: Path) -> None:
    from test_checkpoint import make_objects, make_state

    objs = make_objects(0)
    other = CheckpointManager(tmp_path, CheckpointPolicy(keep_last_n=1), run_id="b" * 32)
    other.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    os.unlink(tmp_path / LATEST)
    os.unlink(tmp_path / "checkpoint_best.pt")
    foreign = files(tmp_path)
    mine = CheckpointManager(tmp_path, CheckpointPolicy(keep_last_n=1), run_id="a" * 32)
    for epoch in (2, 3, 4):
        mine.save_epoch_end(make_state(objs, epoch=epoch, step=epoch), {"val_loss": 1.0})
    assert files(tmp_path)["checkpoint_epoch_1.pt"] == foreign["checkpoint_epoch_1.pt"]
    assert not (tmp_path / "checkpoint_epoch_2.pt").exists() and (tmp_path / "checkpoint_epoch_4.pt").exists()


def test_a_second_ctrl_c_during_a_save_lets_the_save_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt while the background writer writes: the wait goes on until the file is complete (no temp
    file left), and only then is the interrupt raised; the caller (train) releases the lock after that."""
    from test_checkpoint import make_objects, make_state

    real, finished_at = fileformat._write_payload, []

    def slow(f: Any, data: memoryview) -> None:
        time.sleep(1.0)
        real(f, data)
        finished_at.append(time.monotonic())

    monkeypatch.setattr(fileformat, "_write_payload", slow)
    mgr = CheckpointManager(tmp_path, async_save=True, run_id="a" * 32)
    mgr.save_latest(make_state(make_objects(0)))
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # "Interrupt kernel" again, mid-write
    with pytest.raises(KeyboardInterrupt):
        mgr.flush()
    raised_at = time.monotonic()
    assert finished_at and finished_at[0] <= raised_at and not mgr._writer.busy
    assert load_checkpoint(tmp_path / LATEST)["global_step"] == 10 and not stale_temp_files(tmp_path)


def test_interrupt_kernel_raises_after_its_save_so_run_all_stops(vglc_dir: Path, tmp_path: Path) -> None:
    stop = StopFlag()
    stop.request("SIGINT")
    with pytest.raises(TrainingInterrupted, match=r"saved checkpoint_vqvae_step_1\.pt and checkpoint_latest\.pt"):
        train(config(vglc_dir, tmp_path), log=lambda m: None, stop=stop)
    assert load_checkpoint(tmp_path / "ckpt" / "checkpoint_vqvae_step_1.pt")["global_step"] == 1
    assert not (tmp_path / "out" / FINAL_MODEL).exists() and not (tmp_path / "ckpt" / LOCK_NAME).exists()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / LOCK_NAME).symlink_to(target)
    with pytest.raises(CheckpointError, match=rf"{LOCK_NAME} is a symbolic link \(to {target}\)"):
        DirLock(tmp_path / "ckpt").acquire()
    assert target.read_text() == "keep me\n"


def test_a_second_training_into_the_same_output_dir_is_refused(vglc_dir: Path, tmp_path: Path) -> None:
    cfg = config(vglc_dir, tmp_path, checkpoint_dir=str(tmp_path / "other_ckpt"))
    (tmp_path / "out").mkdir()
    with DirLock(tmp_path / "out", "output_dir"):  # another training writing these outputs
        with pytest.raises(CheckpointError, match=r"output_dir .* is in use by another training"):
            train(cfg, log=lambda m: None)
    assert not (tmp_path / "out" / "config.json").exists()


def test_another_runs_outputs_are_set_aside_before_new_ones_are_written(
    vglc_dir: Path, finished: Path, tmp_path: Path
) -> None:
    root = copy_of(finished, tmp_path)
    before = files(root / "out")
    result, messages = run(config(vglc_dir, root, checkpoint_dir=str(root / "second_ckpt")))
    assert result.finished and (root / "out" / FINAL_MODEL).is_file()
    moved = assert_kept(before, root / "out")
    assert {Path(m).name for m in moved} >= {FINAL_MODEL, ZIP_NAME, "config.json"}
    old = Path(moved[0]).parent  # previous_runs/<run id>/ of output_dir holds the earlier run's outputs, all of them
    assert {p.name for p in (root / "out" / old).iterdir()} >= {
        FINAL_MODEL,
        ZIP_NAME,
        "config.json",
        "training_history.json",
        "run.json",
    }


def test_num_epochs_0_exports_a_model_that_says_it_cannot_generate(vglc_dir: Path, tmp_path: Path) -> None:
    result, messages = run(config(vglc_dir, tmp_path, num_epochs=0))
    assert result.finished and any("no sample grids: the diffusion stage trained 0 epochs" in m for m in messages)
    assert not list((tmp_path / "out").glob("sample_*.png"))
    with pytest.raises(CheckpointError, match=r"denoiser was never trained .*num_epochs=0"):
        load_model(tmp_path / "out" / FINAL_MODEL)
    assert load_model(tmp_path / "out" / FINAL_MODEL, allow_untrained=True) is not None


def test_a_file_system_without_chmod_or_hard_links_still_saves(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no(*args: Any) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "fchmod", no)
    monkeypatch.setattr(os, "link", no)
    result, _ = run(config(vglc_dir, tmp_path))
    assert result.finished and read_run_info(tmp_path / "ckpt") is not None
    latest, best = tmp_path / "ckpt" / LATEST, tmp_path / "ckpt" / "checkpoint_best.pt"
    assert latest.stat().st_ino != best.stat().st_ino and load_checkpoint(best)["epoch"] >= 1  # copies, not links
    atomic_write_text(tmp_path / "x.txt", "ok")


def test_zip_of_one_folder_for_checkpoints_and_outputs(vglc_dir: Path, tmp_path: Path) -> None:
    """checkpoint_dir == output_dir: each file once, never the lock, and best under its own name even where it is
    latest's file (a hard link): a zip entry cannot share bytes, so those two names are stored twice."""
    both = str(tmp_path / "both")
    result, _ = run(config(vglc_dir, tmp_path, checkpoint_dir=both, output_dir=both, num_epochs=1))
    folder = Path(both)
    assert (folder / LATEST).stat().st_ino == (folder / "checkpoint_best.pt").stat().st_ino  # one save, one file
    with DirLock(folder):  # the lock of a live training is in the folder while the zip is made
        with zipfile.ZipFile(zip_outputs(folder, folder)) as zf:
            names = zf.namelist()
    assert len(names) == len(set(names)) and not any(LOCK_NAME in n for n in names)
    assert {"checkpoints/checkpoint_best.pt", "checkpoints/checkpoint_latest.pt", "outputs/model_final.pt"} <= set(
        names
    )
    # a checkpoint is stored once, under checkpoints/
    assert not any(n.startswith("outputs/checkpoint_") for n in names)
    with zipfile.ZipFile(folder / ZIP_NAME) as zf:
        assert zf.read("checkpoints/checkpoint_best.pt") == (folder / "checkpoint_best.pt").read_bytes()


def test_the_input_search_never_adopts_a_repository_fixture_or_another_architecture(
    vglc_dir: Path, finished: Path, tmp_path: Path
) -> None:
    repo = Path(__file__).resolve().parents[1]
    inp = tmp_path / "input"
    shutil.copytree(repo / "tests" / "fixtures", inp / "hmolqd" / "tests" / "fixtures")  # the repository as a data set
    (inp / "hmolqd" / "pyproject.toml").write_text("[project]\n")
    shutil.copytree(finished / "ckpt", inp / "hmolqd" / "runs" / "ckpt")  # even a real run inside a repository tree
    shutil.copytree(finished / "ckpt", inp / "my-notebook" / "checkpoints")
    found = find_resume_checkpoint(tmp_path / "work", resume_input=str(inp), model=config(vglc_dir, tmp_path).model)
    assert found.path == inp / "my-notebook" / "checkpoints" / LATEST
    other = Config.from_flat({**TINY, "latent_dim": 8}).model
    found = find_resume_checkpoint(tmp_path / "work", resume_input=str(inp), model=other)
    assert found.checkpoint is None and "another architecture than the config (latent_dim" in found.message
    assert not (tmp_path / "work").exists()
    (inp / "my-notebook" / "checkpoints" / "run.json").unlink()  # not recognisable as hmolqd's output any more
    assert find_resume_checkpoint(tmp_path / "work", resume_input=str(inp)).checkpoint is None


def test_a_folder_that_cannot_take_the_set_aside_files_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hmolqd.checkpointing.lineage import set_aside

    (tmp_path / LATEST).write_bytes(b"an earlier run's file")

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ARCHIVE / "abcd1234"))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(
        CheckpointError, match=rf"cannot set aside {tmp_path / ARCHIVE / 'abcd1234'} .*Read-only file system"
    ):
        set_aside(tmp_path, [tmp_path / LATEST], "abcd1234")
    assert (tmp_path / LATEST).read_bytes() == b"an earlier run's file"
