"""Issue 28: bad input to `illuminate` (and around it) is one line, exit status 2, and writes nothing; training
folders are not the archive's; the notebook's zip holds the archive's summary; temp files of killed runs go."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ribs")

from model_helpers import TINY_CLI_MODEL

from hmolqd.checkpointing.fileformat import CheckpointError
from hmolqd.checkpointing.identity import RunInfo, write_run_info
from hmolqd.cli import main
from hmolqd.config import Config
from hmolqd.dungeon.layout import LayoutError, read_layout
from hmolqd.dungeon.source import PlainRoomSource
from hmolqd.illuminate import IlluminateError, generate_dungeon, illuminate
from hmolqd.illuminate.checkpoint import CHECKPOINT_NAME, load_state
from hmolqd.models.room_model import RoomModel
from hmolqd.training.outputs import ZIP_NAME, export_final, zip_outputs


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_final(RoomModel.from_config(Config().with_overrides(**TINY_CLI_MODEL)), tmp_path_factory.mktemp("m"))


def refused(argv: list[str], capsys: pytest.CaptureFixture, *words: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert all(w in captured.err for w in words), (words, captured.err)
    return captured.err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--seed", "-1"], ("--seed -1", "0 .. 4294967295")),
        (["--seed", "99999999999999999999"], ("--seed", "0 .. 4294967295")),
        (["--seed", "4294967296"], ("--seed 4294967296", "0 .. 4294967295")),
        (["--dask", "garbage!!"], ("--dask 'garbage!!'", "tcp://host:8786")),
        (["--dask", ""], ("--dask ''",)),
        (["--dask", "foo:bar"], ("--dask 'foo:bar'",)),
        (["--batch-size", "1000000000"], ("batch_size 1000000000: must be <= 10000",)),
    ],
)
def test_bad_flags_are_one_line_and_write_nothing(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], words: tuple[str, ...]
) -> None:
    refused(["illuminate", "--model", str(model), "--out", str(tmp_path / "o"), *extra], capsys, *words)
    assert not (tmp_path / "o").exists()


def test_out_a_file_or_read_only_or_a_training_folder_is_refused(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["illuminate", "--model", str(model), "--evaluations", "2"]
    (tmp_path / "file").write_text("x")
    refused([*base, "--out", str(tmp_path / "file")], capsys, "is a file")
    # the model's own folder holds model_final.pt: a training's output_dir
    refused([*base, "--out", str(model.parent)], capsys, "a training run's folder", "model_final.pt")
    write_run_info(tmp_path / "ckpt", RunInfo.new())
    with pytest.raises(IlluminateError, match="a training run's folder .*run.json"):
        illuminate(PlainRoomSource(), evaluations=2, out=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["run.json"]
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK else real(p, mode, **kw))
    refused([*base, "--out", str(tmp_path / "ro")], capsys, "is not writable")
    refused(base, capsys, "--out", "illuminate", "is not writable")  # the default, beside a read-only model
    monkeypatch.setattr(os, "access", real)

    def read_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(IlluminateError, match="is not writable: Read-only file system"):
        illuminate(PlainRoomSource(), evaluations=2, out=tmp_path / "ro2")


def test_pyribs_missing_says_how_to_get_it(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ribs", None)  # import ribs now raises ImportError
    refused(["illuminate", "--model", str(model), "--out", str(tmp_path / "o")], capsys, "pip install hmolqd[qd]")
    assert not (tmp_path / "o").exists()


def test_malformed_archive_state_and_a_fifo_are_one_line(tmp_path: Path) -> None:
    from illuminate_helpers import write_raw_archive

    from hmolqd.illuminate.checkpoint import State

    illuminate(PlainRoomSource(), evaluations=2, batch_size=2, out=tmp_path / "a", outputs=False)
    state = load_state(tmp_path / "a" / CHECKPOINT_NAME)
    fields = {k: getattr(state, k) for k in State.__dataclass_fields__}
    for name, bad, rule in (
        ("evaluations", "x", "evaluations 'x'"),
        ("scheduler", None, "scheduler: a NoneType"),
        ("elites", {0: "not a dungeon"}, "elites: expected a dict"),
        ("settings", {"mode": "map-elites"}, "settings: expected a dict"),
    ):
        path = write_raw_archive(tmp_path / name / CHECKPOINT_NAME, {"version": 3, **fields, name: bad})
        with pytest.raises(IlluminateError, match=f"malformed archive state \\({rule}") as err:
            illuminate(PlainRoomSource(), evaluations=2, batch_size=2, out=path.parent)
        assert "\n" not in str(err.value)
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / CHECKPOINT_NAME)  # opening it to read would block until a writer comes

    def hang(*_: object) -> None:
        raise TimeoutError("the run blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    try:
        with pytest.raises(IlluminateError, match="archive.pt is not a regular file"):
            illuminate(PlainRoomSource(), evaluations=2, out=tmp_path / "fifo")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_api_targets_and_out(tmp_path: Path) -> None:
    result = illuminate(PlainRoomSource(), evaluations=20, batch_size=10, seed=6)
    with pytest.raises(IlluminateError, match="target must be a dict .*'rooms=30'"):
        generate_dungeon(None, target="rooms=30", archive=result)  # type: ignore[arg-type]
    (tmp_path / "f").write_text("x")
    with pytest.raises(IlluminateError, match="out .*f: is a file"):
        generate_dungeon(None, target={"rooms": 30}, archive=result, out=tmp_path / "f")
    rooms = sorted(len(d.layout.rooms) for d in result.elites.values())[0]
    for value in (np.int64(rooms), np.float32(rooms), np.float64(rooms)):
        assert len(generate_dungeon(None, target={"rooms": value}, archive=result).layout.rooms) == rooms
    with pytest.raises(IlluminateError, match="seed 4294967296: must be an integer in 0 .. 4294967295"):
        illuminate(PlainRoomSource(), evaluations=2, seed=2**32)


def test_stale_temp_files_of_dead_runs_go_and_a_live_runs_stay(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "elites").mkdir(parents=True)
        stale = tmp_path / "elites" / f".cell_3.png.{dead.stdout.strip()}-abc.tmp"
        kept = tmp_path / "elites" / f".cell_4.png.{live.pid}-abc.tmp"
        stale.write_bytes(b"")
        kept.write_bytes(b"")
        illuminate(PlainRoomSource(), evaluations=2, batch_size=2, out=tmp_path)
        assert not stale.exists() and kept.exists()
    finally:
        live.kill()
        live.wait()


def test_dask_local_workers_are_capped_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.distributed

    from hmolqd.cli import args as cli_args
    from hmolqd.cli import illuminate_command

    started = []

    class Fake:
        def __init__(self, *args: object, n_workers: int = 0, **kwargs: object) -> None:
            started.append(n_workers)

        def __enter__(self) -> Fake:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(dask.distributed, "LocalCluster", Fake)
    monkeypatch.setattr(dask.distributed, "Client", Fake)
    with illuminate_command.dask_client("local", 1000):
        pass
    assert started[0] == cli_args.cores() < 1000


GRAPH = 'digraph {\n0 [label="s"]\n1 [label="e"]\n2 [label="b"]\n3 [label="t"]\n0 -> 1\n1 -> 2\n2 -> 3\n}\n'


def test_graphs_with_a_bom_are_read_and_one_room_is_refused(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bom = tmp_path / "bom.dot"
    bom.write_bytes(b"\xef\xbb\xbf" + GRAPH.encode())
    assert len(read_layout(bom).rooms) == 4
    one = tmp_path / "one.dot"
    one.write_text('digraph {\n0 [label="s,t"]\n}\n')
    with pytest.raises(LayoutError, match="1 room\\(s\\); a dungeon needs at least 4"):
        read_layout(one)
    refused(["dungeon", "--model", str(model), "--graph", str(one), "--out", str(tmp_path / "d")], capsys, "at least 4")


def test_data_dir_errors_are_one_line(tmp_path: Path) -> None:
    from hmolqd.data import DataNotFoundError, find_data_dir

    for folder in (tmp_path / "none", tmp_path):
        with pytest.raises(DataNotFoundError, match="fetch-data") as err:
            find_data_dir(folder)
        assert "\n" not in str(err.value)


def test_the_zip_holds_the_archive_summary_not_the_elites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    ckpt.mkdir()
    illuminate(PlainRoomSource(), evaluations=2, batch_size=2, out=out / "illuminate")
    with zipfile.ZipFile(zip_outputs(out, ckpt)) as zf:
        names = set(zf.namelist())
    want = {f"outputs/illuminate/{n}" for n in ("summary.json", "heatmap.png", "elites.png", CHECKPOINT_NAME)}
    assert want <= names and not any("elites/" in n for n in names)
    before = (out / ZIP_NAME).read_bytes()
    real = tempfile.mkstemp

    def full(*args, prefix: str = "", **kwargs):  # type: ignore[no-untyped-def]
        if prefix.startswith(f".{ZIP_NAME}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(CheckpointError, match="No space left on device .*intact") as err:
        zip_outputs(out, ckpt)
    assert "\n" not in str(err.value) and (out / ZIP_NAME).read_bytes() == before


@pytest.mark.real_data
def test_a_finished_training_rerun_writes_only_the_missing_zip(
    vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_lineage import config

    from hmolqd.training import outputs
    from hmolqd.training.loop import train

    cfg = config(vglc_dir, tmp_path)
    train(cfg, log=lambda _: None)
    (tmp_path / "out" / ZIP_NAME).unlink()  # what a full disk left
    final = (tmp_path / "out" / "model_final.pt").stat()

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("model_final.pt written again")

    monkeypatch.setattr(outputs, "export_final", no_export)
    said: list[str] = []
    train(cfg, log=said.append)
    assert (tmp_path / "out" / ZIP_NAME).is_file() and (tmp_path / "out" / "model_final.pt").stat() == final
    assert not any("model_final.pt" in line and "wrote" in line for line in said), said
    assert torch.load(tmp_path / "out" / "model_final.pt", weights_only=True)["format"] == "hmolqd-inference"
