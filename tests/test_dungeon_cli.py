"""`python -m hmolqd dungeon`, `hmolqd.generate_dungeon` and the dungeon section of `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_helpers import TINY_CLI_MODEL

import hmolqd
from hmolqd.cli import main as cli_main
from hmolqd.config import Config
from hmolqd.data.vglc import parse_room_file
from hmolqd.dungeon.layout import read_layout
from hmolqd.dungeon.source import PlainRoomSource, plain_rooms
from hmolqd.models.room_model import RoomModel
from hmolqd.training.outputs import export_final

TINY = TINY_CLI_MODEL
GRAPH = """digraph {
0 [label="s"]
1 [label="e,k"]
2 [label="e"]
3 [label="b"]
4 [label="t"]
0 -> 1 [label=""]
1 -> 0 [label=""]
1 -> 2 [label=""]
2 -> 1 [label=""]
2 -> 3 [label="k"]
3 -> 2 [label="k"]
3 -> 4 [label=""]
4 -> 3 [label=""]
}
"""


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained model exported like training does (its rooms fail their checks: that is reported)."""
    cfg = Config().with_overrides(**TINY)
    torch.manual_seed(0)  # the same weights whichever test asks first (the autouse seed comes after this fixture)
    return export_final(RoomModel.from_config(cfg), tmp_path_factory.mktemp("run"))


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dungeon_command_with_a_sampled_layout(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmolqd.checkpointing.export

    # Plain rooms (doors and floor) always pass their checks: a dungeon the command calls good.
    monkeypatch.setattr(hmolqd.checkpointing.export, "load_model", lambda path: PlainRoomSource())
    code, out, err = run(
        ["dungeon", "--model", str(model_path), "--rooms", "8", "--seed", "3", "--out", str(tmp_path / "a")], capsys
    )
    assert code == 0 and err == ""
    assert out.startswith("dungeon sampled_3 (sampled (seed 3, template ")
    for line in (
        "rooms from plain rooms: all 8 pass their checks (playable, doors and stairs as asked); 0 of 8 rooms were "
        "made again\n",
        "walkable: yes (8 of 8 rooms reached from the start on the tiles; 8 of 8 before any room was made again); "
        "doors of neighbours agree: yes\n",
        "locks on the room graph: can be opened in an order that reaches the goal (no small keys, no doors need a "
        "small key; every way to the goal passes the boss room: yes)\n",
        "played on the tiles: beaten (",
    ):
        assert line in out
    summary = json.loads((tmp_path / "a" / "dungeon.json").read_text())
    assert summary["rooms"] == 8 and summary["regeneration"]["rooms_failing"] == 0
    rooms, positions, _ = parse_room_file(tmp_path / "a" / "dungeon.txt")
    assert rooms.shape[0] == 8 and len(positions) == 8
    # The same seed gives the same dungeon.
    assert (
        run(
            ["dungeon", "--model", str(model_path), "--rooms", "8", "--seed", "3", "--out", str(tmp_path / "b")], capsys
        )[0]
        == 0
    )
    assert (tmp_path / "a" / "dungeon.txt").read_text() == (tmp_path / "b" / "dungeon.txt").read_text()


def test_a_dungeon_that_cannot_be_walked_exits_1_and_says_why(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An untrained model's rooms have no doors: the summary says so line by line, and the command fails."""
    argv = ["dungeon", "--model", str(model_path), "--rooms", "8", "--seed", "3", "--max-regenerations", "2"]
    code, out, err = run([*argv, "--out", str(tmp_path / "a")], capsys)
    assert code == 1
    assert (
        "rooms from model (discrete, 2 sampling steps, guidance 2.0): 8 of 8 still fail a check (8 not playable, "
        "8 other doors than asked); 8 of 8 rooms were made again\n" in out
    )
    assert "walkable: no (0 of 8 rooms reached from the start on the tiles; " in out
    assert "played on the tiles: NOT beaten; stuck: goal 3 not reached" in out
    assert err.count("\n") == 1 and err.startswith(
        "dungeon: not walkable: 0 of 8 rooms can be reached from the start (not: 0, 1, 2, 3, 4, 5, 6, 7); rooms "
    )
    assert err.endswith(
        "8 rooms still fail a check (8 not playable, 8 other doors than asked). This is "
        "after 2 rounds of making "
        "failing rooms again; try another --seed, a higher --max-regenerations, or a model trained longer\n"
    )
    assert (tmp_path / "a" / "dungeon.png").is_file()  # written all the same: it shows what went wrong


def test_dungeon_command_with_a_graph(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = tmp_path / "my_level.dot"
    graph.write_text(GRAPH)
    code, out, err = run(
        ["dungeon", "--model", str(model_path), "--graph", str(graph), "--max-regenerations", "0"], capsys
    )
    assert out.startswith(f"dungeon my_level ({graph}): 5 rooms on a ")
    assert ", 1 locked door\n" in out and "(1 small key, 1 door needs a small key, 1 of them opened on the way;" in out
    assert code == 1 and "This is after 0 rounds of making failing rooms again" in err  # the untrained model's rooms
    folder = model_path.with_name("dungeon")  # default: beside the model
    layout = read_layout(folder / "dungeon.dot")
    assert [(link.a, link.b, link.kind_ab) for link in layout.links] == [
        (0, 1, "open"),
        (1, 2, "open"),
        (2, 3, "key"),
        (3, 4, "open"),
    ]
    assert json.loads((folder / "dungeon.json").read_text())["regeneration"]["extra_generations"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--rooms", "8", "--graph", "g.dot"],
            "error: give --graph FILE.dot or --rooms N (a sampled layout), not both",
        ),
        (["--rooms", "3"], "error: --rooms 3: a dungeon needs at least 4 rooms"),
        (["--max-regenerations", "-1"], "error: --max-regenerations -1: must be >= 0"),
        (["--graph", "missing.dot"], "error: missing.dot: cannot read file"),
        (
            ["--graph", "STAR"],
            "error: graph {star}: node 0 has 7 neighbours; a room has at most 4 door sides and 2 stair links",
        ),
        (["--graph", "NOSTART"], "error: graph {nostart}: expected exactly one start room"),
    ],
)
def test_dungeon_command_errors(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    star = tmp_path / "star.dot"
    star.write_text(
        "digraph {\n"
        + '0 [label="s"]\n'
        + "".join(f'{k} [label="{"t" if k == 7 else ""}"]\n0 -> {k} [label=""]\n' for k in range(1, 8))
        + "}\n"
    )
    nostart = tmp_path / "nostart.dot"
    nostart.write_text(GRAPH.replace('0 [label="s"]', '0 [label=""]'))
    args = [{"STAR": str(star), "NOSTART": str(nostart)}.get(a, a) for a in args]
    code, out, err = run(["dungeon", "--model", str(model_path), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith(message.format(star=star, nostart=nostart)), err


def test_missing_model_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(["dungeon", "--model", str(tmp_path / "none.pt")], capsys)
    assert code == 2 and err.startswith("error: --model ") and "no such file" in err


def test_package_api(model_path: Path, tmp_path: Path) -> None:
    assert "generate_dungeon" in hmolqd.__all__
    dungeon = hmolqd.generate_dungeon(PlainRoomSource(), rooms=9, seed=2, out=tmp_path, stem="d")
    assert dungeon.walk.walkable and dungeon.mission.beatable and (tmp_path / "d.png").is_file()
    from_path = hmolqd.generate_dungeon(str(model_path), rooms=6, seed=0)  # a model_final.pt path works too
    assert tuple(from_path.rooms.shape) == (6, 16, 11)
    with pytest.raises(ValueError, match="not both"):
        hmolqd.generate_dungeon(PlainRoomSource(), "g.dot", rooms=6)


def test_evaluate_has_a_dungeon_section(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "vglc"
    (data / "Graph Processed").mkdir(parents=True)
    (data / "Graph Processed" / "LoZ_1.dot").write_text(GRAPH)
    (data / "Processed").mkdir()
    doors = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)
    rooms = plain_rooms(doors, torch.zeros(4, dtype=torch.bool))
    chars = "FBMPOIDSW-"
    lines = ["".join("".join(chars[t] for t in room[r].tolist()) for room in rooms) for r in range(16)]
    for name in ("tloz1_1", "tloz4_1", "tloz8_2"):
        (data / "Processed" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    base = [
        "evaluate",
        "--model",
        str(model_path),
        "--data",
        str(data),
        "--samples",
        "4",
        "--device",
        "cpu",
        "--json",
        str(tmp_path / "r.json"),
        "--png",
        str(tmp_path / "r.png"),
        "--print-json",
    ]
    code, out, err = run(base, capsys)
    assert code == 0
    report = json.loads(out)
    assert report["sections"] == ["dungeon"]
    section = report["dungeon"]
    assert (section["dungeons"], section["rooms"], section["graphs"]) == (1, 5, ["LoZ_1"])
    assert section["mission_beatable"] == 1.0 and 0.0 <= section["walkable"] <= 1.0
    assert "| dungeon | value |" in err and "| walkable_before |" in err
    code, out, _ = run([*base, "--no-dungeons"], capsys)
    assert code == 0 and "dungeon" not in json.loads(out)
