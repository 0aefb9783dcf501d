"""hmolqd.evaluation.report: conditions drawn from training, the three-column report, table, PNG grid and CLI entry."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from model_helpers import TINY_MODEL

import hmolqd.evaluation.report as ev
from hmolqd.cli import EVALUATE_FLAGS
from hmolqd.cli import main as cli_main
from hmolqd.config import Config, ConfigError, ModelConfig
from hmolqd.data.playability import playable_mask, room_from_rows
from hmolqd.data.tiles import door_sides, has_stairs
from hmolqd.models.room_model import RoomModel
from hmolqd.render import MARK_COLOR, grid_to_rgb
from hmolqd.render import _draw_figure as draw_figure  # the layout of a sheet, not only its pixels

TINY = {**TINY_MODEL, "model_kind": "continuous"}
FAST = dict(steps=3, guidance=2.0, eta=0.0)
METRICS = list(ev.TABLE_ROWS)


def room_rows(doors: tuple[bool, ...], stairs: bool = False, block: int | None = None) -> list[str]:
    """A corpus-like room: 2-tile wall band, floor inside, doors where VGLC puts them, one optional block."""
    grid = [["W"] * 11 for _ in range(16)]
    for r in range(2, 14):
        for c in range(2, 9):
            grid[r][c] = "F"
    top, bottom, left, right = doors
    for c in (4, 5, 6):
        grid[1][c] = "D" if top else "W"
        grid[14][c] = "D" if bottom else "W"
    for r in (7, 8):
        grid[r][1] = "D" if left else "W"
        grid[r][9] = "D" if right else "W"
    if stairs:
        grid[8][5] = "S"
    if block is not None:
        grid[2 + block // 7][2 + block % 7] = "B"
    return ["".join(row) for row in grid]


def toy_corpus(door_list: list[tuple[bool, ...]], stairs_list: list[bool]) -> SimpleNamespace:
    rooms = torch.stack(
        [room_from_rows(room_rows(d, s, block=i)) for i, (d, s) in enumerate(zip(door_list, stairs_list))]
    )
    return SimpleNamespace(rooms=rooms, doors=door_sides(rooms), stairs=has_stairs(rooms))


@pytest.fixture
def train() -> SimpleNamespace:
    """12 distinct rooms; doors skewed (top in 3/4, right in 1/4), one room without doors, 1/4 with stairs."""
    doors = [
        (True, False, False, False),
        (True, True, False, False),
        (True, False, True, True),
        (False, False, False, False),
    ] * 3
    stairs = [False, False, True] * 4
    return toy_corpus(doors, stairs)


@pytest.fixture
def tiny_generator() -> RoomModel:
    return RoomModel(ModelConfig(**TINY))


@pytest.fixture
def report(tiny_generator: RoomModel, train: SimpleNamespace) -> dict:
    return ev.evaluation_report(tiny_generator, train, n=24, seed=0, **FAST)


def test_draw_conditions_follows_training_distribution(train: SimpleNamespace) -> None:
    doors, stairs = ev.draw_conditions(train, 20000, seed=3)
    assert (
        doors.shape == (20000, 4)
        and doors.dtype == torch.bool
        and stairs.shape == (20000,)
        and stairs.dtype == torch.bool
    )
    assert torch.allclose(doors.double().mean(0), train.doors.double().mean(0), atol=0.02)
    assert abs(stairs.double().mean() - train.stairs.double().mean()) < 0.02
    # Joint law kept: every drawn (doors, stairs) row is the row of some training room.
    pairs = {tuple(d) + (s,) for d, s in zip(train.doors.tolist(), train.stairs.tolist())}
    assert {tuple(d) + (s,) for d, s in zip(doors.tolist(), stairs.tolist())} <= pairs
    again = ev.draw_conditions(train, 20000, seed=3)
    other = ev.draw_conditions(train, 20000, seed=4)
    assert torch.equal(again[0], doors) and torch.equal(again[1], stairs)
    assert not torch.equal(other[0], doors)


@pytest.mark.parametrize(
    "doors,stairs,n,message",
    [
        (torch.zeros(5, 3, dtype=torch.bool), torch.zeros(5, dtype=torch.bool), 4, "expected doors"),
        (torch.zeros(5, 4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool), 4, "expected doors"),
        (torch.zeros(0, 4, dtype=torch.bool), torch.zeros(0, dtype=torch.bool), 4, "no training rooms"),
        (torch.zeros(5, 4, dtype=torch.bool), torch.zeros(5, dtype=torch.bool), -1, "n must be"),
    ],
)
def test_draw_conditions_fails_early(doors: torch.Tensor, stairs: torch.Tensor, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev.draw_conditions(SimpleNamespace(doors=doors, stairs=stairs), n, seed=0)


def test_report_structure(report: dict, train: SimpleNamespace) -> None:
    assert set(report) == {"settings", "timing", "model", "training_set", "markov", "rooms"}
    assert report["settings"] == {
        **report["settings"],
        "n": 24,
        "seed": 0,
        "steps": 3,
        "guidance": 2.0,
        "eta": 0.0,
        "train_rooms": 12,
    }
    assert report["rooms"] == {"model": 24, "training_set": 12, "markov": 24}
    assert report["timing"]["generation_seconds"] > 0 and report["timing"]["rooms_per_second"] > 0
    for column, _ in ev.COLUMNS:
        assert set(METRICS) <= set(report[column]), column
        assert all(isinstance(report[column][k], float) for k in METRICS)
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN/inf anywhere
    # The training rooms are scored honestly against themselves: all copies, doors exact, zero KL.
    real = report["training_set"]
    assert real["novel"] == 0.0 and real["novel_playable"] == 0.0
    assert real["door_adherence"] == 1.0 and real["distinct"] == 1.0
    assert real["tile_kl_train_gen"] == pytest.approx(0.0, abs=1e-9) and real["pattern_kl_gen_train"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert real["playable"] == pytest.approx(float(playable_mask(train.rooms).double().mean()))
    assert real["playable"] == pytest.approx(9 / 12)  # the 3 rooms without doors fail rule 2
    # The Markov band is copied from a training room with exactly the requested doors.
    assert report["markov"]["door_adherence"] == 1.0


def test_report_deterministic_for_a_seed(tiny_generator: RoomModel, train: SimpleNamespace, report: dict) -> None:
    again = ev.evaluation_report(tiny_generator, train, n=24, seed=0, **FAST)
    other = ev.evaluation_report(tiny_generator, train, n=24, seed=1, **FAST)
    for column, _ in ev.COLUMNS:
        assert again[column] == report[column], column
    assert other["markov"] != report["markov"]  # another seed draws other conditions and Markov rooms


def test_report_rejects_too_few_rooms(tiny_generator: RoomModel, train: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="n must be >= 2"):
        ev.evaluation_report(tiny_generator, train, n=1, **FAST)


def test_format_report_table(report: dict) -> None:
    table = ev.format_report_table(report)
    lines = table.splitlines()
    assert lines[0] == "| metric | ours | training set | Markov |"
    assert len(lines) == 2 + 1 + len(ev.TABLE_ROWS)
    assert [line.split("|")[1].strip() for line in lines[3:]] == METRICS
    assert all(line.count("|") == 5 for line in lines)
    assert lines[2] == "| rooms | 24 | 12 | 24 |"
    row = lines[3 + METRICS.index("pattern_kl_gen_train")]
    cells = [c.strip() for c in row.split("|")[2:5]]
    assert cells == [f"{report[col]['pattern_kl_gen_train']:.3f}" for col in ("model", "training_set", "markov")]
    missing = {**report, "training_set": {k: v for k, v in report["training_set"].items() if k != "door_adherence"}}
    assert "| door_adherence |" in ev.format_report_table(missing) and "n/a" in ev.format_report_table(missing)
    with pytest.raises(ValueError, match="markov"):
        ev.format_report_table({k: v for k, v in report.items() if k != "markov"})
    # The held-out reference, where the report has it, is a fourth column.
    held = ev.format_report_table(
        {**report, "held_out": report["training_set"], "rooms": {**report["rooms"], "held_out": 12}}
    )
    assert held.splitlines()[0] == "| metric | ours | training set | Markov | held-out real |"
    assert held.splitlines()[2] == "| rooms | 24 | 12 | 24 | 12 |"


def _red_pixels(path: Path) -> int:
    rgb = (imread(path)[..., :3] * 255).round().astype(np.uint8)
    return int((rgb == np.array(MARK_COLOR, dtype=np.uint8)).all(-1).sum())


def test_save_sample_grid_marks_nonplayable(tmp_path: Path, train: SimpleNamespace) -> None:
    rooms = train.rooms[:4]  # rooms 0-2 playable, room 3 has no door
    assert playable_mask(rooms).tolist() == [True, True, True, False]
    # The legend's "not playable" entry is a red outline too: counted once, in every marked picture.
    legend = _red_pixels(ev.save_sample_grid(rooms[:3], tmp_path / "legend.png", ncols=2))
    marked = ev.save_sample_grid(rooms, tmp_path / "marked.png", ncols=2)
    plain = ev.save_sample_grid(rooms, tmp_path / "plain.png", ncols=2, marks_nonplayable=False)
    one_frame = _red_pixels(marked) - legend
    assert legend > 0 and one_frame > 0 and _red_pixels(plain) == 0
    # Two non-playable rooms draw twice the frame pixels of one.
    two = ev.save_sample_grid(torch.cat([rooms, rooms[3:]]), tmp_path / "two.png", ncols=2)
    assert _red_pixels(two) - legend == 2 * one_frame
    # limit keeps the first rooms only: the non-playable 4th room is left out.
    assert _red_pixels(ev.save_sample_grid(rooms, tmp_path / "limited.png", ncols=2, limit=3)) == legend
    with pytest.raises(ValueError, match="limit"):
        ev.save_sample_grid(rooms, tmp_path / "x.png", limit=0)


@pytest.mark.parametrize("n", [6, 24])
def test_sample_sheets_have_large_rooms_and_no_blank_band(tmp_path: Path, train: SimpleNamespace, n: int) -> None:
    """A room is drawn 128 px wide, and the legend sits where it leaves no blank band across the picture."""
    rooms = train.rooms[torch.arange(n) % 3]  # three playable rooms, repeated
    rgb = imread(ev.save_sample_grid(rooms, tmp_path / "sheet.png", ncols=6, title="sheet"))[..., :3]
    assert ev.SHEET_SCALE >= 8 and rgb.shape[1] > 6 * 16 * ev.SHEET_SCALE  # six rooms 16 tiles wide in a row
    blank = np.flatnonzero(rgb.min(-1).min(-1) < 0.99)  # rows of the picture with something drawn
    band = (np.diff(blank).max() - 1) / rgb.shape[0]  # the highest run of blank rows between two drawn ones
    assert band < 0.1 and blank[-1] >= 0.85 * rgb.shape[0], f"a blank band {band:.0%} of the picture high"
    # A sheet lower than the legend gets the legend below it, not beside it with blank space under the rooms.
    fig = draw_figure(grid_to_rgb(rooms, ncols=6, scale=ev.SHEET_SCALE), True, "sheet", mark_label="not playable")
    renderer = fig.canvas.get_renderer()
    image, legend = fig.axes[0].get_window_extent(renderer), fig.legends[0].get_window_extent(renderer)
    assert (legend.y1 <= image.y0) == (n == 6) and image.height > 0.3 * fig.bbox.height


@pytest.mark.parametrize("cond_stairs", [True, False])
def test_generation_metrics_scores_doors_against_the_requested_ones(
    monkeypatch: pytest.MonkeyPatch, train: SimpleNamespace, cond_stairs: bool
) -> None:
    """A stub generator that obeys the requested doors scores 1.0; one fixed room scores the matching share."""
    calls: list[dict] = []
    fixed = train.rooms[0]  # doors: top only

    def obeying(model, n, doors=None, stairs=None, **kw):  # type: ignore[no-untyped-def]
        calls.append({"doors": doors, "stairs": stairs, **kw})
        pick = [int((train.doors == d).all(1).nonzero()[0]) for d in doors]
        return train.rooms[pick]

    model = SimpleNamespace(cfg=ModelConfig(**TINY, cond_stairs=cond_stairs))
    monkeypatch.setattr(ev, "generate", obeying)
    out = ev.generation_metrics(model, train.rooms, train.doors, train.stairs, 200, seed=5, sampling=FAST)
    assert out["door_adherence"] == 1.0
    drawn_doors, drawn_stairs = ev.draw_conditions(train, 200, seed=5)
    assert torch.equal(calls[0]["doors"], drawn_doors)
    assert (calls[0]["stairs"] is None) != cond_stairs
    if cond_stairs:
        assert torch.equal(calls[0]["stairs"], drawn_stairs)
    assert {k: calls[0][k] for k in ("steps", "guidance", "eta", "seed")} == {**FAST, "seed": 5}

    monkeypatch.setattr(ev, "generate", lambda model, n, **kw: fixed.expand(n, -1, -1).clone())
    out = ev.generation_metrics(model, train.rooms, train.doors, train.stairs, 200, seed=5, sampling=FAST)
    expected = (drawn_doors == torch.tensor([True, False, False, False])).all(1).double().mean()
    assert 0 < float(expected) < 1 and out["door_adherence"] == pytest.approx(float(expected))


def test_generation_metrics_with_a_model(tiny_generator: RoomModel, train: SimpleNamespace) -> None:
    out = ev.generation_metrics(tiny_generator, train.rooms, train.doors, train.stairs, 16, seed=0, sampling=FAST)
    assert set(METRICS) <= set(out) and out["generation_seconds"] > 0
    json.dumps(out, allow_nan=False)
    single = ev.generation_metrics(tiny_generator, train.rooms, train.doors, train.stairs, 1, seed=0, sampling=FAST)
    assert single["diversity"] is None  # no pairs: NaN becomes JSON null


def write_dungeon(folder: Path, name: str, rooms: list[list[str]]) -> None:
    """One row of rooms side by side as `<folder>/<name>.txt`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join("".join(room[r] for room in rooms) for r in range(16)) + "\n")


def test_run_evaluate_args_end_to_end(tmp_path: Path, tiny_generator: RoomModel, capsys: pytest.CaptureFixture) -> None:
    from hmolqd.data import augment_mirror, load_corpus, split_corpus
    from hmolqd.training.outputs import export_final

    data = tmp_path / "vglc"
    door_sets = [
        (False, False, False, True),
        (False, False, True, True),
        (True, False, True, False),
        (False, True, False, False),
    ]
    write_dungeon(
        data / "Processed", "tloz1_1", [room_rows(d, stairs=i == 2, block=i) for i, d in enumerate(door_sets)]
    )
    write_dungeon(data / "Processed", "tloz4_1", [room_rows((True, True, True, True))])
    cfg = Config().with_overrides(val_dungeons=["tloz4_1"], sample_steps=2, **TINY)
    model = RoomModel.from_config(cfg)
    model.load_state_dict(tiny_generator.state_dict())
    with torch.no_grad():  # adaLN-Zero layers start at 0; give them weights so the denoiser matters
        for p in model.diffusion.denoiser.parameters():
            if not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
    model.reset_ema()
    model_path = export_final(model, tmp_path / "run")

    argv = [
        "evaluate",
        "--model",
        str(model_path),
        "--data",
        str(data),
        "--samples",
        "20",
        "--seed",
        "1",
        "--device",
        "cpu",
    ]
    assert cli_main(argv) == 0  # by default: the table and where the files went, no JSON on the screen
    captured = capsys.readouterr()
    json_path, png_path = tmp_path / "run" / ev.DEFAULT_JSON, tmp_path / "run" / ev.DEFAULT_PNG
    assert captured.out.startswith("| metric | ours | training set | Markov |") and captured.err == ""
    assert f"wrote {json_path} (the whole report, JSON)\n" in captured.out
    assert f"wrote {png_path} (generated rooms; a red outline marks one that is not playable)\n" in captured.out
    assert "{" not in captured.out
    report = json.loads(json_path.read_text())

    again = [*argv, "--json", str(tmp_path / "again.json"), "--png", str(tmp_path / "again.png"), "--print-json"]
    assert cli_main(again) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # exactly one JSON document on stdout: the report written to --json
    assert printed == json.loads((tmp_path / "again.json").read_text()) and printed["model"] == report["model"]
    assert (
        "| metric | ours | training set | Markov |" in captured.err
        and f"wrote {tmp_path / 'again.json'}" in captured.err
    )
    # The model column is the exported generator's, on the training split plus its two mirrors.
    train = augment_mirror(split_corpus(load_corpus(data), ["tloz4_1"])[0])
    guidance = model.config.run.sampling.guidance_scale  # the saved config's
    direct = ev.evaluation_report(model, train, n=20, seed=1, steps=2, guidance=guidance, eta=0.0)
    assert report["model"] == direct["model"] and report["markov"] == direct["markov"]
    # Steps come from the saved config; the reference set is the training split plus its two mirrors.
    assert report["settings"] == {
        **report["settings"],
        "n": 20,
        "seed": 1,
        "steps": 2,
        "guidance": guidance,
        "train_rooms": 12,
        "mirror_augment": True,
    }
    assert imread(png_path).shape[2] in (3, 4)
    assert report["training_set"]["door_adherence"] == 1.0 and report["markov"]["door_adherence"] == 1.0
    # the held-out dungeons, scored alike
    assert report["rooms"]["held_out"] >= 1 and report["held_out"]["novel"] >= 0.0

    with pytest.raises(FileNotFoundError, match="no such file"):
        ev.run_evaluate(tmp_path / "missing.pt", data, 4, 0, None, None)
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        # the library names its arguments; a caller gives its own names for them (the CLI: its flags)
        ev.run_evaluate(
            model_path, data, 4, 0, None, None, device="tpu", options=ev.EvaluateOptions(names=EVALUATE_FLAGS)
        )


@pytest.mark.real_data
def test_real_corpus_training_and_markov_columns(vglc_dir: Path, tiny_generator: RoomModel) -> None:
    from hmolqd.data import load_corpus, split_corpus

    train, _ = split_corpus(load_corpus(vglc_dir), Config().data.val_dungeons)
    report = ev.evaluation_report(tiny_generator, train, n=300, seed=0, steps=2)
    real, markov = report["training_set"], report["markov"]
    assert report["rooms"]["training_set"] == len(train) == 404
    # Real rooms: about 79 % playable and repeated a lot.
    assert real["playable"] == pytest.approx(321 / 404)  # pinned: 321 playable training rooms
    assert real["distinct"] == pytest.approx(244 / 404)  # pinned: 244 distinct training rooms
    assert real["novel"] == 0.0 and real["door_adherence"] == 1.0
    assert real["pattern_kl_train_gen"] == pytest.approx(0.0, abs=1e-9)
    # Markov: real doors, new interiors that often break playability, mostly novel, patterns off-training.
    assert markov["door_adherence"] == 1.0
    assert markov["novel"] > 0.8 and markov["distinct"] > 0.8
    assert 0.4 < markov["playable"] < 0.95
    assert 0 < markov["pattern_kl_train_gen"] < 5 and 0 < markov["pattern_kl_gen_train"] < 10
