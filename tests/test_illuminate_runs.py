"""Issue 28: an illumination resumes only its own archive, extends past a partial batch, is locked, checksummed,
and a re-run of a finished archive rewrites nothing."""

from __future__ import annotations

import errno
import re
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ribs")

from model_helpers import TINY_CLI_MODEL
from test_illuminate import SeededPlain, same, start_slow_run

from hmolqd.cli import main
from hmolqd.config import Config
from hmolqd.dungeon.source import PlainRoomSource
from hmolqd.illuminate import IlluminateError, illuminate
from hmolqd.illuminate.checkpoint import CHECKPOINT_NAME, load_state
from hmolqd.illuminate.outputs import ELITE_KINDS as KINDS
from hmolqd.models.room_model import RoomModel
from hmolqd.training.outputs import export_final


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny untrained models of one config (so one name and one set of sampling settings), other weights."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = RoomModel.from_config(Config().with_overrides(**TINY_CLI_MODEL))
        paths.append(export_final(model, tmp_path_factory.mktemp(f"model{seed}")))
    return paths


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_an_extension_past_a_partial_batch_is_one_run_of_that_length(tmp_path: Path) -> None:
    args = {"batch_size": 10, "seed": 2, "out": tmp_path, "outputs": False}
    assert illuminate(SeededPlain(), evaluations=25, **args).stats["evaluations"] == 25
    extended = illuminate(SeededPlain(), evaluations=35, **args)  # was: "ask cannot be called immediately after ask"
    straight = illuminate(SeededPlain(), evaluations=35, batch_size=10, seed=2)
    assert same(extended, straight) and extended.stats == straight.stats
    assert all(torch.equal(extended.elites[c].rooms, straight.elites[c].rooms) for c in straight.elites)
    again = illuminate(SeededPlain(), evaluations=35, **args)  # the partial batch is added again, not evaluated
    assert same(again, straight) and again.counts == extended.counts


def test_fewer_evaluations_than_the_archive_holds_are_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    illuminate(PlainRoomSource(), evaluations=20, batch_size=10, out=tmp_path, outputs=False)
    result = illuminate(PlainRoomSource(), evaluations=10, batch_size=10, out=tmp_path, outputs=False)
    assert result.stats["evaluations"] == 20
    assert result.notes == (
        "the archive already holds 20 evaluations, more than the 10 asked: nothing was evaluated, "
        "and all 20 are reported",
    )


def test_another_models_weights_cannot_resume(models: list[Path], tmp_path: Path) -> None:
    illuminate(models[0], evaluations=2, batch_size=2, out=tmp_path, outputs=False)
    with pytest.raises(IlluminateError, match="another room model") as err:  # one name, one sampling, other weights
        illuminate(models[1], evaluations=4, batch_size=2, out=tmp_path, outputs=False)
    digests = re.findall(r"weights sha256 ([0-9a-f]{64})", str(err.value))
    assert len(set(digests)) == 2 and load_state(tmp_path / CHECKPOINT_NAME).evaluations == 2


def test_a_sampling_setting_restated_resumes_and_another_does_not(models: list[Path], tmp_path: Path) -> None:
    illuminate(models[0], evaluations=2, batch_size=2, out=tmp_path, outputs=False)
    illuminate(models[0], evaluations=2, batch_size=2, out=tmp_path, outputs=False, steps=2)  # its own sample_steps
    with pytest.raises(IlluminateError, match="other settings .*sampling"):
        illuminate(models[0], evaluations=2, batch_size=2, out=tmp_path, outputs=False, steps=3)


def test_a_flipped_bit_in_the_archive_is_refused_and_the_file_kept(
    models: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    illuminate(PlainRoomSource(), evaluations=10, batch_size=10, out=tmp_path / "a", outputs=False)
    good = (tmp_path / "a" / CHECKPOINT_NAME).read_bytes()
    inner = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=True)["archive"].numpy().tobytes()
    start = good.find(inner)  # the uint8 tensor, stored as is
    assert start > 0 and good[start : start + len(inner)] == inner
    rng = np.random.default_rng(0)
    payload = [start + int(i) for i in rng.integers(0, len(inner), 40)]  # the archive's state itself
    anywhere = [int(i) for i in rng.integers(0, len(good), 20)]
    path = tmp_path / "b" / CHECKPOINT_NAME
    path.parent.mkdir()
    for k, offset in enumerate(payload + anywhere):
        flipped = bytearray(good)
        flipped[offset] ^= 1 << (k % 8)
        path.write_bytes(bytes(flipped))
        try:
            load_state(path)
        except IlluminateError as err:
            assert "\n" not in str(err) and str(path) in str(err) and "the file is kept" in str(err)
            continue
        # only a flip in the zip's framing (not its contents, which the digest covers) may still load
        assert k >= len(payload), f"flip at byte {offset} of the payload was not detected"
        assert torch.load(path, weights_only=True)["archive"].numpy().tobytes() == inner
    flipped = bytearray(good)
    flipped[payload[0]] ^= 1
    path.write_bytes(bytes(flipped))
    argv = ["illuminate", "--model", str(models[0]), "--out", str(path.parent), "--evaluations", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum mismatch" in err and path.read_bytes() == bytes(flipped)


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(
    models: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    proc = start_slow_run(out, seed=0)
    try:
        deadline = time.monotonic() + 300
        while not (out / CHECKPOINT_NAME).exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "the first run ended early"
            time.sleep(0.2)
        with pytest.raises(IlluminateError, match="in use by another illumination: pid"):
            illuminate(SeededPlain(), evaluations=40, batch_size=10, seed=1, out=out, outputs=False)
        argv = ["illuminate", "--model", str(models[0]), "--out", str(out), "--evaluations", "2"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another illumination" in err
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load_state(out / CHECKPOINT_NAME).settings["seed"] == 0  # the first run's archive, not replaced


def test_a_rerun_of_a_finished_archive_rewrites_nothing(tmp_path: Path) -> None:
    args = {"batch_size": 10, "seed": 3, "out": tmp_path}
    first = illuminate(PlainRoomSource(), evaluations=25, **args)
    before = files_of(tmp_path)
    assert len([n for n in before if n.startswith("elites/")]) == 4 * len(first.elites)
    again = illuminate(PlainRoomSource(), evaluations=25, **args)
    assert files_of(tmp_path) == before and same(again, first)
    assert first.written == 4 * len(first.elites) + 3 and again.written == 0  # what the CLI says it wrote
    cell = min(first.elites)
    (tmp_path / "elites" / f"cell_{cell}.png").unlink()  # a missing file is written again, with its cell's alone
    assert illuminate(PlainRoomSource(), evaluations=25, **args).written == 4
    after = files_of(tmp_path)
    assert {n for n in after if after[n] != before.get(n)} == {"elites", *(f"elites/cell_{cell}.{x}" for x in KINDS)}


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_archive(
    models: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["illuminate", "--model", str(models[0]), "--out", str(tmp_path), "--batch-size", "2", "--evaluations"]
    assert main([*argv, "2"]) == 0
    capsys.readouterr()
    saved = (tmp_path / CHECKPOINT_NAME).read_bytes()
    real = tempfile.mkstemp

    def full(*args, prefix: str = "", **kwargs):  # type: ignore[no-untyped-def]
        if prefix.startswith((f".{CHECKPOINT_NAME}.", ".cell_")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    assert main([*argv, "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and (tmp_path / CHECKPOINT_NAME).read_bytes() == saved


def test_worker_processes_give_the_archive_and_files_of_one_process(models: list[Path], tmp_path: Path) -> None:
    """Issue 29: each dungeon's decoding, walking and playing and each elite's files run on worker processes
    (one per core by default); where they run changes no byte of the archive or of the files."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        runs[workers] = illuminate(models[0], evaluations=12, batch_size=6, seed=4, out=out, workers=workers)
    one, two = runs[1], runs[2]
    assert same(one, two) and one.stats == two.stats and one.counts.keys() == two.counts.keys()
    assert all(torch.equal(one.elites[c].rooms, two.elites[c].rooms) for c in one.elites)
    names = sorted(p.name for p in (tmp_path / "workers1" / "elites").iterdir())
    assert names and names == sorted(p.name for p in (tmp_path / "workers2" / "elites").iterdir())
    for name in names:
        if not name.endswith(".png"):  # the maps are drawn by the same code; their text and JSON are compared
            a = (tmp_path / "workers1" / "elites" / name).read_bytes()
            assert a == (tmp_path / "workers2" / "elites" / name).read_bytes(), name


def test_a_model_file_with_one_denoiser_or_both_is_the_same_source(models: list[Path], tmp_path: Path) -> None:
    """The archive identifies a model by the weights its rooms come from, so re-exporting it with one denoiser
    (model_final.pt since issue 29) resumes an archive started from the file of both."""
    from hmolqd.checkpointing.export import export_inference, export_model, load_inference, load_model

    model = load_model(models[0])
    with torch.no_grad():  # the trained weights apart from the EMA copy that sampling uses
        for p in model.diffusion.denoiser.parameters():
            p.add_(0.1)
    epochs = load_inference(models[0])["trained_epochs"]
    both = export_inference(tmp_path / "both" / "model_final.pt", model.parts(), model.config, epochs)
    one = export_model(model, tmp_path / "one" / "model_final.pt", epochs)
    illuminate(both, evaluations=2, batch_size=2, out=tmp_path / "run", outputs=False)
    resumed = illuminate(one, evaluations=4, batch_size=2, out=tmp_path / "run", outputs=False)
    assert resumed.stats["evaluations"] == 4


def test_the_cli_rerun_of_a_finished_archive_reads_its_report_alone(
    models: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run of a finished archive reads the checkpoint's finished report: the archive is not unpickled
    (nor pyribs imported), no file is written, and it says what the first run said."""
    import hmolqd.illuminate.run as run

    argv = ["illuminate", "--model", str(models[0]), "--out", str(tmp_path), "--batch-size", "2", "--evaluations"]
    assert main([*argv, "4"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    before = files_of(tmp_path)

    def no_unpickling(path: Path) -> None:
        raise AssertionError(f"the re-run unpickled {path}")

    monkeypatch.setattr(run, "load_state", no_unpickling)
    assert main([*argv, "4"]) == 0 and main([*argv, "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [first, f"the outputs in {tmp_path} are up to date: no file written"] * 2
    assert "the archive already holds 4 evaluations, more than the 2 asked" in err
    assert files_of(tmp_path) == before
    # more evaluations, other settings or a missing output: the archive is read as before
    with pytest.raises(AssertionError, match="unpickled"):
        main([*argv, "6"])
    with pytest.raises(AssertionError, match="unpickled"):
        main([*argv, "4", "--seed", "1"])
    next((tmp_path / "elites").iterdir()).unlink()
    with pytest.raises(AssertionError, match="unpickled"):
        main([*argv, "4"])
