"""The checkpoint directory (issue 9): one training per directory (lock), checked up front, run identity,
`resume_from` seeding a run once, and Kaggle's cross-session copy of the best checkpoints. Tiny CPU states."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_checkpoint import make_objects, make_state, train_steps

from hmolqd.checkpointing.fileformat import (
    LATEST,
    CheckpointError,
    load_checkpoint,
    try_load_checkpoint,
)
from hmolqd.checkpointing.identity import RunInfo, read_run_info, write_run_info
from hmolqd.checkpointing.lineage import start_run
from hmolqd.checkpointing.lock import LOCK_NAME, DirLock, check_checkpoint_dir
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
from hmolqd.checkpointing.resume import find_resume_checkpoint

REPO = Path(__file__).resolve().parents[1]
# A process that takes the lock of argv[1], says so on stdout, and holds it until killed.
HOLDER = """
import sys, time
from hmolqd.checkpointing.lock import DirLock
lock = DirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def objs() -> SimpleNamespace:
    o = make_objects(0)
    train_steps(o, 3)
    return o


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A live child process holding the lock of tmp_path / 'ck'."""
    folder = tmp_path / "ck"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield SimpleNamespace(folder=folder, proc=proc)
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- the lock


def test_second_training_on_a_locked_directory_refuses_naming_the_holder(holder: SimpleNamespace) -> None:
    with pytest.raises(CheckpointError) as err:
        DirLock(holder.folder).acquire()
    text = str(err.value)
    assert f"in use by another training: pid {holder.proc.pid} on host {socket.gethostname()!r}, started 20" in text
    assert str(holder.folder / LOCK_NAME) in text and "another checkpoint_dir" in text
    # the holder's record is untouched
    assert json.loads((holder.folder / LOCK_NAME).read_text())["pid"] == holder.proc.pid


def test_lock_of_a_killed_process_is_taken_over_with_its_pid_and_host(holder: SimpleNamespace) -> None:
    holder.proc.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays, the kernel drops the flock
    holder.proc.wait()
    assert (holder.folder / LOCK_NAME).is_file()
    with DirLock(holder.folder) as lock:
        assert (
            lock.took_over
            and f"pid {holder.proc.pid} on host {socket.gethostname()!r}" in lock.took_over
            and "gone" in lock.took_over
        )
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (holder.folder / LOCK_NAME).exists()  # released on exit


def test_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"})
    )
    lock = DirLock(tmp_path).acquire()
    try:
        assert f"pid {pid} on host {socket.gethostname()!r}, started 2020-01-01" in lock.took_over
    finally:
        lock.release()


def test_lock_from_another_host_is_reported_never_stolen(tmp_path: Path) -> None:
    record = json.dumps({"pid": 4242, "host": "gpu-node-7", "started": "2020-01-01T00:00:00+00:00"})
    (tmp_path / LOCK_NAME).write_text(record)
    with pytest.raises(
        CheckpointError, match=r"locked by pid 4242 on host 'gpu-node-7'.*another machine.*delete .*hmolqd\.lock"
    ):
        DirLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == record


def test_lock_is_released_when_the_holder_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), DirLock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with DirLock(tmp_path) as again:
        assert again.took_over is None


def test_the_same_process_cannot_hold_one_directory_twice(tmp_path: Path) -> None:
    with DirLock(tmp_path), pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
        DirLock(tmp_path).acquire()


# ---------------------------------------------------------------- the directory, checked up front


def test_checkpoint_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "ck").write_text("x")
    with pytest.raises(CheckpointError, match=f"checkpoint_dir {tmp_path / 'ck'} is a file, not a directory"):
        check_checkpoint_dir(tmp_path / "ck")


@pytest.mark.parametrize("name", [LATEST, "checkpoint_best.pt", "checkpoint_vqvae_epoch_2.pt", "run.json"])
def test_a_directory_with_a_checkpoint_name_is_named_at_start_up(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    with pytest.raises(
        CheckpointError,
        match=f"{tmp_path / name} is a directory, not a checkpoint file: every save under that name would fail",
    ):
        check_checkpoint_dir(tmp_path)
    assert try_load_checkpoint(tmp_path / name)[1] in ("is a directory, not a checkpoint file", "no such file")


def test_unwritable_checkpoint_dir_is_named_with_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def read_only(fd: int, data: bytes) -> int:
        if "hmolqd-probe" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", read_only)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint_dir(tmp_path / "ck")
    # no free-space figures
    assert str(err.value) == f"checkpoint_dir {tmp_path / 'ck'} is not writable: Read-only file system"
    assert not [p for p in (tmp_path / "ck").iterdir()]  # the probe file is gone


def test_full_disk_at_start_up_gives_the_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CheckpointError, match=r"is not writable: No space left on device; [\d.]+ MiB free"):
        check_checkpoint_dir(tmp_path)


@pytest.mark.skipif(not Path("/sys/fs").is_dir(), reason="needs sysfs (Linux)")
@pytest.mark.parametrize("where", ["/sys/fs", "/sys/fs/hmolqd-checkpoints"])
def test_real_read_only_places_are_refused_up_front(where: str) -> None:
    """sysfs refuses new files even to root: a real unwritable (or uncreatable) directory."""
    with pytest.raises(
        CheckpointError,
        match=rf"checkpoint_dir {where} (is not writable|cannot be created): "
        r"(Permission denied|Operation not permitted)",
    ):
        check_checkpoint_dir(where)


# ---------------------------------------------------------------- run identity


def _run_dir(folder: Path, objs: SimpleNamespace, run_id: str, epochs: int = 2) -> CheckpointManager:
    """A directory of run `run_id` (run.json and files carrying the id) with `epochs` epoch saves."""
    found = find_resume_checkpoint(folder)
    assert found.run_info is not None
    write_run_info(folder, RunInfo(run_id, found.run_info.created, found.run_info.host))
    mgr = CheckpointManager(folder, CheckpointPolicy(keep_last_n=10), run_id=run_id)
    for epoch in range(1, epochs + 1):
        mgr.save_epoch_end(make_state(objs, epoch=epoch, step=10 * epoch), {"val_loss": 1.0 / epoch})
    return mgr


def test_auto_resume_ignores_another_runs_newer_file(tmp_path: Path, objs: SimpleNamespace) -> None:
    _run_dir(tmp_path / "a", objs, "a" * 32)
    _run_dir(tmp_path / "b", objs, "b" * 32, epochs=5)
    # another run's newer latest dropped into run a's folder
    os.replace(tmp_path / "b" / LATEST, tmp_path / "a" / LATEST)
    shutil.copy(tmp_path / "b" / "checkpoint_epoch_5.pt", tmp_path / "a" / "checkpoint_epoch_5.pt")
    result = find_resume_checkpoint(tmp_path / "a")
    assert result.path == tmp_path / "a" / "checkpoint_epoch_2.pt" and result.checkpoint["run_id"] == "a" * 32
    assert result.run_id == "a" * 32 and result.run_info is None
    assert "ignored 2 file(s) of another run (checkpoint_epoch_5.pt, checkpoint_latest.pt)" in result.message


def test_only_another_runs_files_is_an_error_that_names_them(tmp_path: Path, objs: SimpleNamespace) -> None:
    _run_dir(tmp_path / "b", objs, "b" * 32)
    (tmp_path / "a").mkdir()
    write_run_info(tmp_path / "a", RunInfo("a" * 32, "now", "host"))
    assert read_run_info(tmp_path / "a").run_id == "a" * 32
    shutil.copy(tmp_path / "b" / LATEST, tmp_path / "a" / LATEST)
    with pytest.raises(
        CheckpointError,
        match=r"holds only checkpoints of another run: checkpoint_latest\.pt \(run bbbbbbbb; "
        r"this directory is run aaaaaaaa.*set resume_from=",
    ):
        find_resume_checkpoint(tmp_path / "a")
    assert find_resume_checkpoint(tmp_path / "a", resume_from=tmp_path / "a" / LATEST).checkpoint["run_id"] == "b" * 32


def test_files_without_a_run_id_resume_and_the_run_gets_one(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "v0_1_0" / "checkpoint_latest.pt"
    shutil.copy(fixture, tmp_path / LATEST)
    result = find_resume_checkpoint(tmp_path)
    assert result.path == tmp_path / LATEST and "written before run ids existed" in result.message
    assert result.run_info is not None and result.run_info.run_id == result.run_id and len(result.run_id) == 32


def test_resume_from_seeds_the_run_once(tmp_path: Path, objs: SimpleNamespace) -> None:
    _run_dir(tmp_path / "src", objs, "s" * 32)
    seed = tmp_path / "src" / "checkpoint_epoch_1.pt"
    first = find_resume_checkpoint(tmp_path / "new", resume_from=seed)
    assert first.path == seed and first.run_info.seeded_from["global_step"] == 10 and first.run_id != "s" * 32
    (tmp_path / "new").mkdir()
    write_run_info(tmp_path / "new", first.run_info)
    again = find_resume_checkpoint(tmp_path / "new", resume_from=seed)  # stopped before any save: the seed again
    assert again.path == seed and again.run_id == first.run_id and again.run_info is None
    mgr = CheckpointManager(tmp_path / "new", run_id=first.run_id)
    train_steps(objs, 2)
    mgr.save_step(make_state(objs, epoch=1, step=13))
    later = find_resume_checkpoint(tmp_path / "new", resume_from=seed)  # the re-run keeps the newer progress
    assert later.path == tmp_path / "new" / LATEST and later.checkpoint["global_step"] == 13
    assert f"resume_from={str(seed)!r} started this run" in later.message and "wins over resume_from" in later.message
    # another seed: a new run
    other = find_resume_checkpoint(tmp_path / "new", resume_from=tmp_path / "src" / "checkpoint_epoch_2.pt")
    assert other.checkpoint["global_step"] == 20 and other.run_id not in (first.run_id, "s" * 32) and other.new_run


# ---------------------------------------------------------------- Kaggle: a previous version's output as input


def test_kaggle_resume_brings_every_best_checkpoint_and_the_run(tmp_path: Path, objs: SimpleNamespace) -> None:
    source = tmp_path / "kaggle" / "input" / "my-notebook-v3" / "checkpoints"
    source.mkdir(parents=True)
    mgr = CheckpointManager(source, CheckpointPolicy(keep_last_n=1), run_id="k" * 32)
    write_run_info(source, RunInfo("k" * 32, "then", "kaggle"))
    mgr.save_epoch_end(make_state(objs, "vqvae", epoch=1, step=5), {"val_loss": 2.0})
    mgr.save_epoch_end(make_state(objs, "diffusion", epoch=1, step=10), {"val_loss": 1.0})  # the best diffusion model
    mgr.save_epoch_end(make_state(objs, "diffusion", epoch=2, step=20), {"val_loss": 3.0})
    best = (source / "checkpoint_best.pt").read_bytes()
    work = tmp_path / "working" / "checkpoints"
    work.mkdir(parents=True)
    result = start_run(work, find_resume_checkpoint(work, resume_input=tmp_path / "kaggle" / "input"))
    assert result.path == work / LATEST and result.checkpoint["epoch"] == 2 and result.run_id == "k" * 32
    assert {"checkpoint_best.pt", "checkpoint_vqvae_best.pt"} <= {p.name for p in work.iterdir()}
    assert "copied checkpoint_latest.pt, checkpoint_best.pt, checkpoint_vqvae_best.pt, run.json" in result.message
    assert read_run_info(work).run_id == "k" * 32
    # A new session that never improves still holds the best model so far.
    session = CheckpointManager(work, run_id=result.run_id)
    session.restore(result.checkpoint)
    session.save_epoch_end(make_state(objs, "diffusion", epoch=3, step=30), {"val_loss": 2.5})
    assert (work / "checkpoint_best.pt").read_bytes() == best and load_checkpoint(work / "checkpoint_best.pt")[
        "epoch"
    ] == 1
    assert find_resume_checkpoint(work, resume_input=tmp_path / "kaggle" / "input").checkpoint["global_step"] == 30


def test_resume_status_style_lookup_copies_nothing(tmp_path: Path, objs: SimpleNamespace) -> None:
    source = tmp_path / "input" / "v1"
    CheckpointManager(source).save_epoch_end(make_state(objs), {"val_loss": 1.0})
    write_run_info(source, RunInfo.new())
    work = tmp_path / "work"
    result = find_resume_checkpoint(work, resume_input=tmp_path / "input")
    assert result.path == source / LATEST and not work.exists()


def test_a_holder_that_has_not_written_its_record_yet_counts_as_busy(tmp_path: Path) -> None:
    """An empty lock file (a holder between open and writing its record) held by flock: busy, 'details not written
    yet'."""
    import fcntl

    (tmp_path / LOCK_NAME).touch()
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hmolqd.checkpointing.lock import DirLock; DirLock(sys.argv[1]).acquire()",
            str(tmp_path),
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    os.close(fd)
    assert child.returncode != 0 and "details are not written yet" in child.stderr
