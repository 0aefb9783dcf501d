"""hmolqd.illuminate: layout genomes, the MAP-Elites archive (pyribs), its checkpoint, outputs and bad input."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from hmolqd.data.tiles import BLOCK
from hmolqd.dungeon.play import play_layout
from hmolqd.dungeon.source import PlainRoomSource
from hmolqd.illuminate.genome import GENOME_DIM, add_loop, add_room, decode, move_lock, random_genomes

pytest.importorskip("ribs")


from hmolqd.illuminate import IlluminateError, generate_dungeon, illuminate, load_illumination
from hmolqd.illuminate.checkpoint import CHECKPOINT_NAME, load_state, safe_globals

REPO = Path(__file__).resolve().parents[1]


class SlowPlain(PlainRoomSource):
    """Plain rooms that take a while per call, so that a run can be killed between two batches."""

    name = "slow plain rooms"

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        time.sleep(float(os.environ.get("SLOW_PLAIN_S", "0")))
        return super().rooms(doors, stairs, attributes, seed)


def start_slow_run(out: Path, seed: int) -> subprocess.Popen:
    """Another process illuminating 40 evaluations in batches of 10 with `SlowPlain` rooms (1 s per room call)
    into `out`: a run to kill, or to collide with, between two checkpoints."""
    code = (
        "from tests.test_illuminate import SlowPlain; from hmolqd.illuminate import illuminate; "
        f"illuminate(SlowPlain(), evaluations=40, batch_size=10, seed={seed}, out={str(out)!r}, outputs=False)"
    )
    env = {**os.environ, "SLOW_PLAIN_S": "1.0", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)


class SeededPlain(PlainRoomSource):
    """Plain rooms with a block where the seed is odd, so that the rooms of a dungeon depend on its seed."""

    name = "seeded plain rooms"

    def rooms(
        self, doors: torch.Tensor, stairs: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None, seed: int
    ) -> torch.Tensor:
        rooms = super().rooms(doors, stairs, attributes, seed)
        if seed % 2:  # a block off the doors' ways: other tiles, the same descriptors
            rooms[:, 3, 2] = BLOCK
        return rooms


def archive_arrays(result) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    data = result.archive.data()
    order = np.argsort(data["index"])
    return {k: np.asarray(data[k])[order] for k in ("index", "solution", "objective", "measures")}


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    x, y = archive_arrays(a), archive_arrays(b)
    return all(np.array_equal(x[k], y[k]) for k in x) and sorted(a.elites) == sorted(b.elites)


def test_decoded_genomes_are_deterministic_and_beatable_on_their_graph() -> None:
    genomes = random_genomes(60, seed=1)
    for g in genomes:
        layout = decode(g)
        assert layout.links == decode(g).links and layout.rooms == decode(g).rooms
        assert play_layout(layout).beaten, layout.source
    assert len({len(decode(g).rooms) for g in genomes}) > 10  # the rooms knob moves the room count


def test_mutations_keep_layouts_beatable() -> None:
    layout = decode(random_genomes(1, seed=2)[0])
    rng = random.Random(0)
    grown = add_room(layout, rng, 1.0)
    assert len(grown.rooms) == len(layout.rooms) + 1 and play_layout(grown).beaten
    looped = add_loop(grown, rng)
    assert len(looped.links) >= len(grown.links) and play_layout(looped).beaten
    for _ in range(5):
        looped = move_lock(looped, rng)
        assert play_layout(looped).beaten


def test_same_seed_same_archive_other_seed_other_archive() -> None:
    a = illuminate(PlainRoomSource(), evaluations=40, batch_size=20, seed=3)
    b = illuminate(PlainRoomSource(), evaluations=40, batch_size=20, seed=3)
    c = illuminate(PlainRoomSource(), evaluations=40, batch_size=20, seed=4)
    assert same(a, b) and not same(a, c)
    assert a.stats["evaluations"] == 40 and a.counts["dungeons"] == 40
    assert a.stats["beaten_elites"] == 1.0  # plain rooms: every dungeon is beaten on its tiles


def test_sigkilled_run_resumes_to_the_same_archive(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_slow_run(out, seed=5)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (out / CHECKPOINT_NAME).exists() and load_state(out / CHECKPOINT_NAME).evaluations >= 10:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = load_state(out / CHECKPOINT_NAME).evaluations
    assert 10 <= done < 40  # killed part-way (each batch of 10 sleeps 1 s: at least 3 s to kill it in)
    resumed = illuminate(SlowPlain(), evaluations=40, batch_size=10, seed=5, out=out, outputs=False)
    whole = illuminate(SlowPlain(), evaluations=40, batch_size=10, seed=5)
    assert resumed.stats["evaluations"] == 40 and same(resumed, whole)


def test_outputs_and_closest_elite(tmp_path: Path) -> None:
    result = illuminate(PlainRoomSource(), evaluations=30, batch_size=15, seed=6, out=tmp_path)
    for name in ("heatmap.png", "elites.png", "summary.json", CHECKPOINT_NAME):
        assert (tmp_path / name).is_file()
    cells = sorted(result.elites)
    for ext in ("txt", "dot", "png", "json"):
        assert (tmp_path / "elites" / f"cell_{cells[0]}.{ext}").is_file()
    elite = json.loads((tmp_path / "elites" / f"cell_{cells[0]}.json").read_text())["elite"]
    assert set(elite["descriptors"]) == {"rooms", "path_share", "backtracking"} and len(elite["genome"]) == GENOME_DIM
    rooms = [len(d.layout.rooms) for d in result.elites.values()]
    want = sorted(rooms)[len(rooms) // 2]
    got = generate_dungeon(None, target={"rooms": want}, archive=tmp_path)
    assert len(got.layout.rooms) == want and got.play.beaten
    assert load_illumination(tmp_path).stats == {**result.stats}

    # elites.png: each panel a different elite, start and goal framed, a legend of frames and tiles.
    from hmolqd.illuminate.outputs import elite_grid, pick_elites

    picked = pick_elites(result, 3)
    assert len({k for _, _, k in picked}) == len(picked) == min(9, len(result.elites))
    fig = elite_grid(result)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == ["start room", "goal room", "boss room"] and "floor" in labels
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(picked) and all(len(ax.patches) >= 2 for ax in panels)  # start and goal frames


def test_bad_input_is_one_line_error(tmp_path: Path) -> None:
    from illuminate_helpers import write_raw_archive  # here: the killed run's child imports this module alone

    with pytest.raises(IlluminateError, match="unknown descriptor 'nope'"):
        illuminate(PlainRoomSource(), evaluations=10, descriptors=("rooms", "nope"))
    for bad in (0, -3):
        with pytest.raises(IlluminateError, match="evaluations must be an int > 0"):
            illuminate(PlainRoomSource(), evaluations=bad)
    result = illuminate(PlainRoomSource(), evaluations=10, batch_size=10, seed=7, out=tmp_path, outputs=False)
    with pytest.raises(IlluminateError, match=r"target rooms=500 is outside the archive's range \[8, 72\]"):
        generate_dungeon(None, target={"rooms": 500}, archive=result)
    with pytest.raises(IlluminateError, match="unknown descriptor 'water'"):
        generate_dungeon(None, target={"water": 0.5}, archive=result)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a pickle at all")
    with pytest.raises(IlluminateError, match="not a valid archive checkpoint") as err:
        illuminate(PlainRoomSource(), evaluations=10, batch_size=10, seed=7, out=tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path / CHECKPOINT_NAME) in str(err.value)
    write_raw_archive(tmp_path / CHECKPOINT_NAME, {"version": 2})
    with pytest.raises(IlluminateError, match="not an archive checkpoint of version 3"):
        load_illumination(tmp_path)
    for key, bad, rule in (("chunks", 0, "chunks must be an int > 0"), ("client", object(), "client must be a dask")):
        with pytest.raises(IlluminateError, match=rule):
            illuminate(PlainRoomSource(), evaluations=10, **{key: bad})


class Hostile:
    """Pickles as a call of os.system: what a hostile checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_is_weights_only_and_never_runs_code(tmp_path: Path) -> None:
    from illuminate_helpers import write_raw_archive

    illuminate(PlainRoomSource(), evaluations=10, batch_size=10, seed=7, out=tmp_path / "run", outputs=False)
    path = tmp_path / "run" / CHECKPOINT_NAME
    assert path.name == "archive.pt"
    inner = torch.load(path, weights_only=True)["archive"].numpy().tobytes()  # plain data outside
    with pytest.raises(pickle.UnpicklingError):  # objects, not plain tensors: only the allowlist rebuilds them
        torch.load(io.BytesIO(inner), weights_only=True)
    with torch.serialization.safe_globals(safe_globals()):
        assert torch.load(io.BytesIO(inner), weights_only=True)["evaluations"] == 10
    marker = tmp_path / "ran"
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil2").mkdir()
    torch.save({"version": 2, "scheduler": Hostile(marker)}, tmp_path / "evil" / CHECKPOINT_NAME)  # outside
    write_raw_archive(tmp_path / "evil2" / CHECKPOINT_NAME, {"version": 3, "scheduler": Hostile(marker)})  # inside
    for folder in ("evil", "evil2"):
        with pytest.raises(IlluminateError, match=r"global (posix|os|nt)\.system") as err:
            illuminate(PlainRoomSource(), evaluations=10, out=tmp_path / folder)
        assert "\n" not in str(err.value) and not marker.exists()
    # An earlier hmolqd's pickle archive is refused by name, never unpickled, and left as it was.
    (tmp_path / "old").mkdir()
    legacy = tmp_path / "old" / "archive.pkl"
    legacy.write_bytes(pickle.dumps(Hostile(marker)))
    before = legacy.read_bytes()
    for call in (
        lambda: illuminate(PlainRoomSource(), evaluations=10, out=tmp_path / "old"),
        lambda: load_illumination(tmp_path / "old"),
        lambda: load_illumination(legacy),
    ):
        with pytest.raises(IlluminateError, match="archive.pkl: .*earlier hmolqd"):
            call()
    assert not marker.exists() and legacy.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["archive.pkl"]


def test_dask_client_builds_the_same_archive_as_in_process(tmp_path: Path) -> None:
    from dask.distributed import Client  # hmolqd[dask], in the test extra

    kwargs = {"evaluations": 20, "batch_size": 10, "seed": 3, "chunks": 3}
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        on_dask = illuminate(SeededPlain(), out=tmp_path, outputs=False, client=client, **kwargs)
    here = illuminate(SeededPlain(), **kwargs)
    assert same(on_dask, here) and on_dask.stats == here.stats
    assert all(torch.equal(on_dask.elites[c].rooms, here.elites[c].rooms) for c in here.elites)
    one = illuminate(SeededPlain(), **{**kwargs, "chunks": 1})  # the rooms are drawn per chunk
    assert any(not torch.equal(one.elites[c].rooms, here.elites[c].rooms) for c in set(one.elites) & set(here.elites))


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    illuminate(PlainRoomSource(), evaluations=10, batch_size=10, seed=8, out=tmp_path, outputs=False)
    with pytest.raises(IlluminateError, match="other settings .*seed"):
        illuminate(PlainRoomSource(), evaluations=20, batch_size=10, seed=9, out=tmp_path, outputs=False)


def test_an_archive_of_genomes_with_other_knobs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hmolqd.illuminate.genome as genome

    illuminate(PlainRoomSource(), evaluations=10, batch_size=10, seed=8, out=tmp_path, outputs=False)
    monkeypatch.setattr(genome, "GENOME_DIM", GENOME_DIM + 1)  # as if the genome had gained a knob since
    with pytest.raises(IlluminateError, match=f"genomes have {GENOME_DIM} knobs, this hmolqd's have {GENOME_DIM + 1}"):
        illuminate(PlainRoomSource(), evaluations=20, batch_size=10, seed=8, out=tmp_path, outputs=False)


def test_baseline_fills_the_same_kind_of_archive() -> None:
    result = illuminate(PlainRoomSource(), evaluations=20, batch_size=10, seed=0, mode="baseline")
    assert result.stats["cells"] == 16 * 10 * 10 and 0 < result.stats["elites"] <= 20


def test_cli_illuminate_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from model_helpers import TINY_CLI_MODEL

    from hmolqd.cli import main
    from hmolqd.config import Config
    from hmolqd.models.room_model import RoomModel
    from hmolqd.training.outputs import export_final

    model = export_final(RoomModel.from_config(Config().with_overrides(**TINY_CLI_MODEL)), tmp_path / "run")
    assert main(["illuminate", "--model", str(model), "--evaluations", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: evaluations must be an int > 0, got 0"
    assert main(["illuminate", "--model", str(model), "--evaluations", "4", "--descriptors", "rooms", "bogus"]) == 2
    assert "unknown descriptor 'bogus'" in capsys.readouterr().err
    assert main(["illuminate", "--model", str(model), "--chunks", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: chunks must be an int > 0, got 0"
    assert main(["illuminate", "--model", str(model), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --workers 0: must be >= 1 (processes; 1 runs everything in this process)"
    assert main(["illuminate", "--model", str(model), "--workers", "100000"]) == 2
    assert "--workers 100000: must be <= " in capsys.readouterr().err
    assert not (tmp_path / "run" / "illuminate").exists()  # nothing written for bad input
    out = tmp_path / "ill"
    assert (
        main(
            [
                "illuminate",
                "--model",
                str(model),
                "--evaluations",
                "4",
                "--batch-size",
                "2",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "elites in 1600 cells" in capsys.readouterr().out and (out / "heatmap.png").is_file()


def test_illuminate_bench_plumbing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """bench/illuminate_bench.py's archive part with the model-free proxy: its files and tables, not its numbers."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import illuminate_bench

    files = []
    for mode in ("map-elites", "baseline"):
        files.append(tmp_path / f"{mode}.json")
        argv = ["--model", "plain", "--part", "archive", "--mode", mode, "--seeds", "0", "--evaluations", "10"]
        assert (
            illuminate_bench.main([*argv, "--batch-size", "10", "--runs", str(tmp_path), "--out", str(files[-1])]) == 0
        )
    run = json.loads(files[0].read_text())["runs"][0]
    assert run["evaluations"] == 10 and run["dungeons"] == 10 and 0 < run["coverage"] <= 10 / 1600
    capsys.readouterr()
    assert illuminate_bench.main(["--merge", *map(str, files)]) == 0
    assert "Coverage of MAP-Elites / today's generator" in capsys.readouterr().out
