"""hmolqd.dungeon.export: VGLC text round trip, .dot with slots, PNG map on screen, JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hmolqd.data.tiles import ROOM_H, ROOM_W, WALL
from hmolqd.data.vglc import load_corpus, parse_room_file
from hmolqd.dungeon.api import generate_dungeon, generate_dungeons
from hmolqd.dungeon.build import Dungeon, DungeonConfig
from hmolqd.dungeon.embed import embed
from hmolqd.dungeon.export import draw_map, dungeon_text, write_dungeon
from hmolqd.dungeon.layout import read_layout
from hmolqd.dungeon.source import PlainRoomSource


@pytest.fixture(scope="module")
def dungeon() -> Dungeon:
    return generate_dungeon(PlainRoomSource(), rooms=14, seed=7)


def test_vglc_text_round_trip(dungeon: Dungeon, tmp_path: Path) -> None:
    paths = write_dungeon(dungeon, tmp_path)
    rooms, positions, shape = parse_room_file(paths["txt"])
    order = sorted(range(len(dungeon.layout.rooms)), key=lambda k: dungeon.embedding.slots[dungeon.layout.rooms[k].id])
    assert shape == dungeon.embedding.shape
    assert positions == [dungeon.embedding.slots[dungeon.layout.rooms[k].id] for k in order]  # row-major
    assert torch.equal(rooms, dungeon.rooms[order])
    lines = paths["txt"].read_text().splitlines()
    assert len(lines) == shape[0] * ROOM_H and {len(line) for line in lines} == {shape[1] * ROOM_W}
    # The corpus loader reads it like a real dungeon file: door sides and stairs as planned.
    folder = tmp_path / "corpus" / "Processed"
    folder.mkdir(parents=True)
    (folder / "tloz1_1.txt").write_text(paths["txt"].read_text())
    corpus = load_corpus(tmp_path / "corpus")
    assert torch.equal(corpus.doors, dungeon.plan.doors[order]) and torch.equal(
        corpus.stairs, dungeon.plan.stairs[order]
    )


def test_empty_slots_are_void(dungeon: Dungeon) -> None:
    text = dungeon_text(dungeon.rooms, dungeon.layout, dungeon.embedding).splitlines()
    rows, cols = dungeon.embedding.shape
    taken = set(dungeon.embedding.slots.values())
    empty = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in taken]
    assert empty  # a sampled layout never fills its whole box
    for r, c in empty:
        assert all(line[c * ROOM_W : (c + 1) * ROOM_W] == "-" * ROOM_W for line in text[r * ROOM_H : (r + 1) * ROOM_H])


def test_dot_round_trip_keeps_slots_kinds_and_stairs(dungeon: Dungeon, tmp_path: Path) -> None:
    path = write_dungeon(dungeon, tmp_path)["dot"]
    layout = read_layout(path)
    assert layout.slots == dungeon.embedding.slots
    assert [room.labels for room in layout.rooms] == [room.labels for room in dungeon.layout.rooms]
    assert [(link.a, link.b, link.kind_ab, link.kind_ba, link.stair) for link in layout.links] == [
        (link.a, link.b, link.kind_ab, link.kind_ba, link.stair) for link in dungeon.layout.links
    ]
    again = embed(layout)
    assert (again.door_links, again.stair_links, again.doors) == (
        dungeon.embedding.door_links,
        dungeon.embedding.stair_links,
        dungeon.embedding.doors,
    )


def test_real_graph_dot_round_trip_with_stair_links(vglc_dir: Path, tmp_path: Path) -> None:
    (d,) = generate_dungeons(
        PlainRoomSource(), [vglc_dir / "Graph Processed" / "LoZ2_4.dot"], config=DungeonConfig(max_regenerations=0)
    )
    assert d.embedding.stair_links  # LoZ2_4 has odd cycles: the embedding adds stair links
    layout = read_layout(write_dungeon(d, tmp_path)["dot"])
    assert embed(layout).stair_links == d.embedding.stair_links
    assert [(link.kind_ab, link.kind_ba) for link in layout.links] == [
        (link.kind_ab, link.kind_ba) for link in d.layout.links
    ]


def test_map_is_in_screen_orientation(dungeon: Dungeon) -> None:
    scale = 2
    fig = draw_map(dungeon, scale=scale)
    image = fig.axes[0].images[0].get_array()
    rows, cols = dungeon.embedding.shape
    # Text slot rows run left to right on screen, text columns top to bottom (hmolqd.render.to_screen).
    assert image.shape[:2] == (cols * ROOM_W * scale, rows * ROOM_H * scale)
    start = dungeon.embedding.slots[dungeon.layout.start]
    frame = fig.axes[0].patches[0]  # the start frame is drawn first
    assert (frame.get_x() + 0.5, frame.get_y() + 0.5) == (start[0] * ROOM_H * scale, start[1] * ROOM_W * scale)


def test_files_and_json_summary(dungeon: Dungeon, tmp_path: Path) -> None:
    paths = write_dungeon(dungeon, tmp_path / "out", stem="d")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["d.dot", "d.json", "d.png", "d.txt"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(paths["json"].read_text())
    assert summary["rooms"] == len(dungeon.layout.rooms) == 14
    assert summary["walk"]["walkable"] is True and summary["mission"]["beatable"] is True
    assert summary["regeneration"] == {
        "rooms_regenerated": 0,
        "share_regenerated": 0.0,
        "extra_generations": 0,
        "rooms_failing": 0,
        "failing": {},
    }


class Doorless:
    """Rooms of wall only: every room fails its checks."""

    name = "doorless"
    attributes: frozenset[str] = frozenset()

    def rooms(self, doors: torch.Tensor, stairs: torch.Tensor, attributes: object, seed: int) -> torch.Tensor:
        return torch.full((doors.shape[0], ROOM_H, ROOM_W), WALL, dtype=torch.uint8)


def test_failing_rooms_are_crossed_on_the_map() -> None:
    d = generate_dungeon(Doorless(), rooms=10, seed=1, config=DungeonConfig(max_regenerations=1))
    assert len(d.failures) == 10 and not d.walk.walkable
    crosses = [line for line in draw_map(d).axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 10


def test_a_narrow_maps_title_is_wrapped_inside_the_picture() -> None:
    """A sampled layout can be one or two rooms wide: its title (from map_title) wraps instead of being cut off."""
    from hmolqd.dungeon.export import map_title

    d = generate_dungeon(Doorless(), rooms=10, seed=1, config=DungeonConfig(max_regenerations=1))
    title = map_title(d, "dungeon")
    fig = draw_map(d, scale=2, title=title)
    renderer = fig.canvas.get_renderer()
    (text,) = fig.texts
    box = text.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, (box, fig.bbox)
    assert box.y0 >= fig.axes[0].get_window_extent(renderer).y1  # above the map, not over it
    assert text.get_text().replace("\n", " ") == title and "\n" in text.get_text()
