"""Checkpoints off the critical path (issue 13): bytes written once per save plus hard links, the background
writer (snapshot, at most one save in flight, errors, flush, SIGKILL mid-write) and the single-copy zip."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from test_checkpoint import assert_same, make_objects, make_state, train_steps

from hmolqd.atomic import stale_temp_files
from hmolqd.checkpointing import fileformat
from hmolqd.checkpointing.fileformat import LATEST, CheckpointError, load_checkpoint
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
from hmolqd.checkpointing.resume import find_resume_checkpoint
from hmolqd.training.outputs import SAME_FILES_NOTE, ZIP_NAME, zip_outputs

MODES = pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def objs() -> SimpleNamespace:
    o = make_objects(0)
    train_steps(o, 3)
    return o


def mgr_for(folder: Path, async_save: bool, **policy: Any) -> CheckpointManager:
    return CheckpointManager(folder, CheckpointPolicy(**policy), async_save=async_save)


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------- one file per save, hard links


@MODES
def test_one_save_is_one_file_written_once_plus_links(tmp_path: Path, objs: SimpleNamespace, async_save: bool) -> None:
    mgr = mgr_for(tmp_path, async_save)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=10), {"val_loss": 1.0})  # latest + epoch_1 + best
    mgr.flush()
    latest, epoch, best = tmp_path / LATEST, tmp_path / "checkpoint_epoch_1.pt", tmp_path / "checkpoint_best.pt"
    assert latest.samefile(epoch) and latest.samefile(best) and latest.stat().st_nlink == 3
    st = mgr.stats
    assert (st.saves, st.files, st.bytes_written) == (1, 3, latest.stat().st_size) == (1, 3, st.last_size)
    assert mgr.on_disk() == (3, 1, latest.stat().st_size)
    assert st.write_seconds > 0 and st.blocked_seconds > 0
    assert load_checkpoint(best)["epoch"] == 1


@MODES
def test_replacing_latest_never_touches_the_file_epoch_n_shares(
    tmp_path: Path, objs: SimpleNamespace, async_save: bool
) -> None:
    mgr = mgr_for(tmp_path, async_save, keep_last_n=5)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=10), {"val_loss": 1.0})
    mgr.flush()
    epoch1 = tmp_path / "checkpoint_epoch_1.pt"
    before, inode = epoch1.read_bytes(), epoch1.stat().st_ino
    train_steps(objs, 2)
    mgr.save_epoch_end(make_state(objs, epoch=2, step=20), {"val_loss": 2.0})  # latest moves on; best stays at epoch 1
    mgr.flush()
    assert epoch1.read_bytes() == before and epoch1.stat().st_ino == inode
    assert epoch1.samefile(tmp_path / "checkpoint_best.pt") and not epoch1.samefile(tmp_path / LATEST)
    assert load_checkpoint(tmp_path / LATEST)["epoch"] == 2 and load_checkpoint(epoch1)["epoch"] == 1


@MODES
def test_rotation_deletes_a_name_never_the_file_of_latest_or_best(
    tmp_path: Path, objs: SimpleNamespace, async_save: bool
) -> None:
    mgr = mgr_for(tmp_path, async_save, keep_last_n=1)
    for epoch, loss in ((1, 1.0), (2, 2.0), (3, 3.0)):  # best only at epoch 1
        mgr.save_epoch_end(make_state(objs, epoch=epoch, step=10 * epoch), {"val_loss": loss})
    mgr.flush()
    assert files(tmp_path) == {LATEST, "checkpoint_best.pt", "checkpoint_epoch_3.pt"}
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == 1  # epoch_1's name went, its file stays as best
    (tmp_path / "checkpoint_epoch_3.pt").unlink()  # deleting epoch_N by hand does not hurt latest either
    assert load_checkpoint(tmp_path / LATEST)["epoch"] == 3 and (tmp_path / LATEST).stat().st_nlink == 1


def test_without_hard_links_each_name_is_a_copy_logged_once(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_links(src: Any, dst: Any, **kw: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    mgr = mgr_for(tmp_path / "ck", False)
    with caplog.at_level(logging.INFO, logger="hmolqd.checkpointing.fileformat"):
        mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
        first_size = mgr.stats.last_size  # the two saves may differ by a few bytes (zip record padding)
        mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 0.5})
    latest = tmp_path / "ck" / LATEST
    copies = [latest, tmp_path / "ck" / "checkpoint_epoch_2.pt", tmp_path / "ck" / "checkpoint_best.pt"]
    assert len({p.stat().st_ino for p in copies}) == 3 and all(p.read_bytes() == latest.read_bytes() for p in copies)
    # every name of both saves is a full copy
    assert mgr.stats.bytes_written == 3 * first_size + 3 * mgr.stats.last_size
    assert caplog.text.count("no hard links in") == 1


# ---------------------------------------------------------------- the background writer


def test_async_snapshot_is_taken_before_training_moves_on(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real = fileformat._write_payload

    def held(f: Any, data: memoryview) -> None:
        gate.wait(30)
        real(f, data)

    monkeypatch.setattr(fileformat, "_write_payload", held)
    mgr = mgr_for(tmp_path, True)
    live = make_state(objs, epoch=1, step=3)
    saved_models = {name: {k: t.clone() for k, t in sd.items()} for name, sd in live["models"].items()}
    mgr.save_epoch_end(live, {"val_loss": 1.0})
    train_steps(objs, 5)  # training mutates the very tensors the state dict holds, while the write waits
    live["history"].append({"epoch": 99})
    gate.set()
    mgr.flush()
    ckpt = load_checkpoint(tmp_path / LATEST)
    assert_same(ckpt["models"], saved_models, "models")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1


def test_a_save_waits_for_the_one_in_flight_and_step_saves_are_skipped(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gate, events = threading.Event(), []
    real = fileformat._write_payload

    def held(f: Any, data: memoryview) -> None:
        events.append("start")
        gate.wait(30)
        real(f, data)
        events.append("end")

    monkeypatch.setattr(fileformat, "_write_payload", held)
    mgr = mgr_for(tmp_path, True, every_steps=1)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=10), {"val_loss": 1.0})
    with caplog.at_level(logging.INFO, logger="hmolqd.checkpointing.manager"):
        assert mgr.save_step(make_state(objs, epoch=1, step=11), skippable=True) == []  # in flight: skipped, said once
        assert mgr.save_step(make_state(objs, epoch=1, step=12), skippable=True) == []
    assert mgr.stats.skipped == 2 and caplog.text.count("skipped: the previous save is still being written") == 1
    threading.Timer(0.2, gate.set).start()
    mgr.save_step(make_state(objs, epoch=1, step=13))  # a stop save: never skipped, waits for the first write
    assert events[:2] == ["start", "end"] and mgr.stats.wait_seconds > 0
    mgr.flush()
    assert events == ["start", "end", "start", "end"]  # never two writes at once
    assert files(tmp_path) == {LATEST, "checkpoint_epoch_1.pt", "checkpoint_best.pt", "checkpoint_step_13.pt"}
    assert load_checkpoint(tmp_path / LATEST)["global_step"] == 13 and mgr.stats.saves == 2


@MODES
def test_a_write_error_reaches_the_training_thread_with_its_reason(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, async_save: bool
) -> None:
    mgr = mgr_for(tmp_path, async_save)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    mgr.flush()
    before = {n: (tmp_path / n).read_bytes() for n in files(tmp_path)}

    def read_only(f: Any, data: memoryview) -> None:  # the folder became read-only mid-run
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fileformat, "_write_payload", read_only)
    expected = r"saving .*checkpoint_latest\.pt failed: Read-only file system .*earlier checkpoints are untouched"
    if async_save:
        mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 0.5})  # returns: the write runs behind
        with pytest.raises(CheckpointError, match=expected) as err:
            mgr.flush()
    else:
        with pytest.raises(CheckpointError, match=expected) as err:
            mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 0.5})
    assert "free" not in str(err.value)  # space is not the cause: no free-space figures
    assert {n: (tmp_path / n).read_bytes() for n in files(tmp_path)} == before
    mgr.flush()  # the error was reported once


def test_an_async_write_error_is_raised_by_the_next_save(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(f: Any, data: memoryview) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fileformat, "_write_payload", broken)
    mgr = mgr_for(tmp_path, True)
    mgr.save_latest(make_state(objs, epoch=1, step=1))
    with pytest.raises(CheckpointError, match="Input/output error"):
        mgr.save_latest(make_state(objs, epoch=1, step=2))


def test_flush_returns_only_when_the_file_is_complete(
    tmp_path: Path, objs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fileformat._write_payload

    def slow(f: Any, data: memoryview) -> None:
        time.sleep(0.3)
        real(f, data)

    monkeypatch.setattr(fileformat, "_write_payload", slow)
    mgr = mgr_for(tmp_path, True)
    mgr.save_latest(make_state(objs, epoch=1, step=7))
    mgr.flush()
    assert load_checkpoint(tmp_path / LATEST)["global_step"] == 7 and not stale_temp_files(tmp_path)


# A process that saves once, then dies by SIGKILL in the middle of the second (background) write.
KILLED_WRITER = """
import sys, time
from pathlib import Path
from hmolqd.checkpointing import fileformat
from hmolqd.checkpointing.manager import CheckpointManager, CheckpointPolicy
sys.path.insert(0, 'tests')
from test_checkpoint import make_objects, make_state, train_steps

folder = Path(sys.argv[1])
o = make_objects(0)
mgr = CheckpointManager(folder, CheckpointPolicy(), async_save=True)
mgr.save_epoch_end(make_state(o, epoch=1, step=10), {"val_loss": 1.0})
mgr.flush()

def half_then_hang(f, data):
    f.write(data[: len(data) // 2])
    f.flush()
    (folder.parent / "mid-write").write_text("now")
    time.sleep(120)

fileformat._write_payload = half_then_hang
train_steps(o, 2)
mgr.save_epoch_end(make_state(o, epoch=2, step=20), {"val_loss": 0.5})
time.sleep(120)
"""


def test_sigkill_during_the_background_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(folder)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "mid-write").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            proc.stderr.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    temps = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    # the half-written file names its writer
    assert [p.name.split(".")[-2].split("-")[0] for p in temps] == [str(proc.pid)]
    assert load_checkpoint(folder / LATEST)["epoch"] == 1  # the previous save is intact and valid
    CheckpointManager(folder)  # the next start removes the temp file of the dead writer
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    assert find_resume_checkpoint(folder).checkpoint["global_step"] == 10


def test_stale_temp_cleanup_spares_a_live_writer(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            f".checkpoint_latest.pt.{live.pid}-abc123.tmp": True,  # another training still writing it: kept
            f".checkpoint_epoch_3.pt.{dead.pid}-abc123.tmp": False,  # its writer is gone
            ".checkpoint_best.pt.x1y2z3.tmp": False,
        }  # an older name without a pid
        for name in names:
            (tmp_path / name).write_bytes(b"half a checkpoint")
        CheckpointManager(tmp_path)
        assert files(tmp_path) == {name for name, kept in names.items() if kept}
    finally:
        live.kill()
        live.wait()


# ---------------------------------------------------------------- the outputs zip


def test_zip_stores_each_file_once_and_never_deflates_checkpoints(tmp_path: Path, objs: SimpleNamespace) -> None:
    ckpt, out = tmp_path / "ck", tmp_path / "out"
    out.mkdir()
    (out / "training_history.json").write_text("[]\n" * 100)
    mgr = mgr_for(ckpt, True, keep_last_n=5)
    mgr.save_epoch_end(make_state(objs, epoch=1, step=1), {"val_loss": 1.0})
    mgr.save_epoch_end(make_state(objs, epoch=2, step=2), {"val_loss": 2.0})
    mgr.flush()
    with zipfile.ZipFile(zip_outputs(out, ckpt)) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        note = zf.read(SAME_FILES_NOTE).decode()
        assert zf.testzip() is None
    stored = {n.split("/", 1)[1] for n in infos if n.startswith("checkpoints/") and n.endswith(".pt")}
    assert stored == {LATEST, "checkpoint_best.pt"}  # epoch_2 is latest's file, epoch_1 best's
    assert (
        "checkpoint_epoch_2.pt: the same file as checkpoint_latest.pt" in note
        and "checkpoint_epoch_1.pt: the same file as checkpoint_best.pt" in note
    )
    assert all(i.compress_type == zipfile.ZIP_STORED for n, i in infos.items() if n.endswith(".pt"))
    assert infos["outputs/training_history.json"].compress_type == zipfile.ZIP_DEFLATED
    assert (out / ZIP_NAME).stat().st_size < 2.2 * (ckpt / LATEST).stat().st_size  # two files' worth, not four
    assert torch.load(ckpt / LATEST, weights_only=True)["epoch"] == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_async_snapshot_of_cuda_tensors_goes_through_pinned_buffers(tmp_path: Path) -> None:
    model = torch.nn.Linear(256, 256).cuda()
    state = {
        "stage": "diffusion",
        "epoch": 1,
        "global_step": 1,
        "models": {"denoiser": model.state_dict()},
        "config": {"model": {}},
    }
    expected = {k: v.cpu().clone() for k, v in model.state_dict().items()}
    mgr = mgr_for(tmp_path, True)
    mgr.save_latest(state)
    with torch.no_grad():
        model.weight.mul_(2.0)  # queued on the same stream after the device-to-host copies
    mgr.flush()
    saved = load_checkpoint(tmp_path / LATEST)["models"]["denoiser"]
    assert_same(saved, expected, "denoiser")
    assert all(buf.is_pinned() for buf in mgr._snapshot._buffers.values() if buf.numel() > 1)
