"""The smaller things a new user tripped on, each fixed and held here: paged sample grids, `evaluate` reading the
model's own data_dir, no empty folder after a failed fetch, the learning rate on a resume with more epochs,
an honest dungeon map title, one door vocabulary, write errors naming the target, the stale-lock message,
a used-up time budget, and the count of diffusers skips in docs/development.md."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_helpers import TINY_CLI_MODEL

from hmolqd.checkpointing.fileformat import load_checkpoint
from hmolqd.checkpointing.lock import LOCK_NAME, DirLock, _proc_start
from hmolqd.cli import main
from hmolqd.config import Config
from hmolqd.data import find_data_dir
from hmolqd.data.fetch import NetworkUnavailableError, fetch_vglc, load_manifest
from hmolqd.data.tiles import screen_sides
from hmolqd.dungeon import generate_dungeon
from hmolqd.dungeon.export import map_title
from hmolqd.evaluation import report
from hmolqd.models.room_model import RoomModel
from hmolqd.render import save_png
from hmolqd.training.loop import train
from hmolqd.training.optim import LRSchedule
from hmolqd.training.outputs import export_final

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_CLI_MODEL
# A tiny discrete run on the real corpus: 5 VQ-VAE steps, then diffusion epochs of 5 steps each.
TRAIN = {
    **TINY,
    "downsample": 4,
    "vqvae_epochs": 1,
    "num_epochs": 1,
    "joint_epochs": 0,
    "batch_size": 256,
    "warmup_steps": 2,
    "eval_samples": 8,
    "mirror_augment": False,
    "sample_every": 0,
    "log_every": 1,
}
TEXT_SIDES = re.compile(r"\b(top|bottom|left|right)\b")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_final(RoomModel.from_config(Config().with_overrides(**TINY)), tmp_path_factory.mktemp("run"))


# ---------------------------------------------------------------- sample: bounded memory for any -n


def test_many_rooms_are_drawn_on_pages(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "PAGE_ROOMS", 4)  # 10 rooms -> pages of 4, 4 and 2
    assert main(["sample", "--model", str(model), "-n", "10", "--steps", "1", "--out", str(tmp_path / "s.png")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_001.png", "s_002.png", "s_003.png"]
    assert capsys.readouterr().out.strip() == f"wrote 3 pages: {tmp_path / 's_001.png'} .. {tmp_path / 's_003.png'}"
    assert main(["sample", "--model", str(model), "-n", "4", "--steps", "1", "--out", str(tmp_path / "one.png")]) == 0
    assert (tmp_path / "one.png").is_file() and not (tmp_path / "one_001.png").exists()  # one page: the name asked for


# ---------------------------------------------------------------- evaluate: the model's own data_dir


@pytest.mark.real_data
def test_evaluate_without_data_uses_the_data_dir_stored_with_the_model(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = Config().with_overrides(**TINY, data_dir=str(vglc_dir))
    path = export_final(RoomModel.from_config(cfg), tmp_path / "run")
    monkeypatch.chdir(tmp_path)  # nothing to discover here: only the stored data_dir can be found
    out = tmp_path / "r.json"
    assert (
        main(["evaluate", "--model", str(path), "--samples", "4", "--steps", "1", "--no-dungeons", "--json", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["settings"]["data_dir"] == str(find_data_dir(vglc_dir))


# ---------------------------------------------------------------- fetch-data: no empty folder after a failure


def test_a_failed_fetch_leaves_no_folder_it_made(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port on this machine that nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "kept").mkdir()
    for dest in (tmp_path / "new" / "corpus", tmp_path / "kept"):
        with pytest.raises(NetworkUnavailableError):
            fetch_vglc(
                dest, f"http://127.0.0.1:{port}", timeout=5, progress=False, retries=0, manifest=load_manifest()[:2]
            )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kept"
    ]  # "new/corpus/Processed" removed; "kept" was there before
    assert list((tmp_path / "kept").iterdir()) == []


# ---------------------------------------------------------------- learning rate on a resume with more epochs


def test_more_steps_on_resume_continue_the_decay_instead_of_rising() -> None:
    before = LRSchedule(1e-3, total_steps=100, warmup_steps=10, min_ratio=0.1)
    fresh = LRSchedule(1e-3, total_steps=200, warmup_steps=10, min_ratio=0.1)
    assert fresh(100) > 5 * before(
        100
    )  # what a schedule rebuilt from the new total alone would do: back up to 0.58 peak
    ended = fresh.resumed(before.state_dict(), 100)  # the stage had ended at its floor
    assert ended(100) == pytest.approx(before(100)) and max(ended(s) for s in range(100, 220)) <= before(100) * (
        1 + 1e-12
    )
    middle = fresh.resumed(before.state_dict(), 50)  # raised half-way: the same rate at the resumed step, then down
    lrs = [middle(s) for s in range(50, 201)]
    assert (
        lrs[0] == pytest.approx(before(50))
        and all(a >= b for a, b in itertools.pairwise(lrs))
        and lrs[-1] == pytest.approx(1e-4)
    )
    assert middle.resumed(middle.state_dict(), 120) == middle  # resumed again with the same steps: the same schedule
    assert fresh.resumed(fresh.state_dict(), 100) == fresh  # nothing changed: nothing moves
    warm = fresh.resumed(LRSchedule(1e-3, 100, 10, 0.1).state_dict(), 5)  # still warming up: the new total applies
    assert warm == fresh


@pytest.mark.real_data
def test_raising_num_epochs_after_the_end_keeps_the_learning_rate_down(vglc_dir: Path, tmp_path: Path) -> None:
    cfg = Config.from_flat(
        {**TRAIN, "data_dir": str(vglc_dir), "checkpoint_dir": str(tmp_path / "c"), "output_dir": str(tmp_path / "o")}
    )
    first = train(cfg, log=lambda msg: None)
    assert first.finished
    end_lr = first.history[-1]["lr"]
    more = train(cfg.with_overrides(num_epochs=3), log=lambda msg: None)
    assert more.finished and len([r for r in more.history if r["stage"] == "diffusion"]) == 3
    later = [r["lr"] for r in more.history if r["stage"] == "diffusion"][1:]
    assert later and max(later) <= end_lr * (1 + 1e-9), (end_lr, later)


# ---------------------------------------------------------------- dungeon: an honest title, sides as on screen


def test_map_title_and_diagnostics_say_what_failed(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dungeon = generate_dungeon(model, rooms=6, seed=1, steps=1)  # an untrained model: every room fails its checks
    assert len(dungeon.failures) == 6
    assert map_title(dungeon, "d").startswith("d: all 6 rooms fail their checks (x); ")
    assert "keys and locks of the layout" in map_title(dungeon, "d")
    assert (
        main(
            [
                "dungeon",
                "--model",
                str(model),
                "--rooms",
                "6",
                "--seed",
                "1",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1  # a dungeon that cannot be walked: its files written, exit 1 with one line why
    )
    out = capsys.readouterr().out
    reasons = (
        [r for rs in dungeon.failures.values() for r in rs]
        + list(dungeon.walk.disagreements)
        + list(dungeon.walk.misaligned)
    )
    assert any("asked" in r for r in reasons) and not any(TEXT_SIDES.search(r) for r in reasons), reasons
    assert not TEXT_SIDES.search(out), out
    assert screen_sides([True, False, True, False]) == "north,west" and screen_sides([False] * 4) == "none"


# ---------------------------------------------------------------- write errors name the target


def test_an_unwritable_png_target_is_named_not_its_temp_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.png").mkdir()
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    for target in (tmp_path / "afile" / "x.png", tmp_path / "adir.png"):
        with pytest.raises(OSError) as err:
            save_png(rgb, target)
        assert str(target) in str(err.value) and ".tmp" not in str(err.value), err.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.png", "afile"]  # no temp file left either


# ---------------------------------------------------------------- a stale lock of a live pid


def test_stale_lock_of_a_live_process_says_so_and_prints_nothing_itself(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {
            "pid": sleeper.pid,
            "host": socket.gethostname(),
            "started": "2020-01-01T00:00:00+00:00",
            "proc_start": _proc_start(sleeper.pid),
        }
        (tmp_path / LOCK_NAME).write_text(json.dumps(record))  # its process runs, but holds no flock on the file
        with DirLock(tmp_path) as lock:
            assert lock.took_over is not None and f"pid {sleeper.pid}" in lock.took_over
            assert "still runs but no longer holds the lock" in lock.took_over and "gone" not in lock.took_over
        assert capfd.readouterr().err == ""  # the trainer prints the message once (training.session); the lock does not
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- a used-up time budget


@pytest.mark.real_data
def test_a_used_up_time_budget_trains_nothing_and_says_how_to_go_on(vglc_dir: Path, tmp_path: Path) -> None:
    cfg = Config.from_flat(
        {
            **TRAIN,
            "data_dir": str(vglc_dir),
            "checkpoint_dir": str(tmp_path / "c"),
            "output_dir": str(tmp_path / "o"),
            "max_runtime_hours": 1e-9,
        }
    )
    first: list[str] = []
    assert train(cfg, log=first.append).stopped == "time budget"
    assert (
        load_checkpoint(tmp_path / "c" / "checkpoint_latest.pt")["global_step"] == 1
    )  # a fresh run checks after a step
    again: list[str] = []
    result = train(cfg, log=again.append)
    assert (
        result.stopped == "time budget" and load_checkpoint(tmp_path / "c" / "checkpoint_latest.pt")["global_step"] == 1
    )
    said = [m for m in again if m.startswith("stopped (time budget")]
    assert len(said) == 1 and "nothing trained: the budget was used up before this run" in said[0], again
    assert "raise max_runtime_hours (0 = no limit)" in said[0] and not any(
        "re-run to resume" in m for m in first + again
    )


# ---------------------------------------------------------------- the count of diffusers skips (docs/development.md)


def test_readme_counts_the_tests_that_skip_without_diffusers(tmp_path: Path) -> None:
    hidden = tmp_path / "diffusers"
    hidden.mkdir()
    (hidden / "__init__.py").write_text('raise ModuleNotFoundError("hidden by this test", name="diffusers")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_diffusion_math.py"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    skipped = re.search(r"(\d+) skipped", done.stdout)
    assert done.returncode == 0 and skipped, done.stdout[-2000:]
    page = (REPO / "docs" / "development.md").read_text()
    assert f"the {skipped.group(1)} tests (five test functions in `tests/test_diffusion_math.py`" in page
