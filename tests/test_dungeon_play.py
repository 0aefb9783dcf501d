"""hmolqd.dungeon.play: the whole-dungeon player (cells, keys, one-way doors, tiles, backtracking) and the real
dungeons."""

from __future__ import annotations

import torch

from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import DOOR, FLOOR, ROOM_H, ROOM_W, TILE_INDEX, WALL
from hmolqd.dungeon.build import DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.crossings import crossings
from hmolqd.dungeon.mission import check_mission
from hmolqd.dungeon.play import PlayResult, play, play_dungeon, play_layout, tile_graph, with_crossings
from hmolqd.dungeon.rules import LADDER, PUSH
from hmolqd.dungeon.sampler import sample_layout
from hmolqd.dungeon.source import PlainRoomSource
from hmolqd.dungeon.walk import Passage
from tests.test_dungeon_mission import make


def test_one_way_trap_is_not_beaten_though_keys_suffice() -> None:
    # The key lies behind a one-way door: taking it cuts the player off from the key door beside the start.
    layout = make({0: "s", 1: "k", 2: "t"}, [(0, 1, "open", "none"), (0, 2, "key", "key")])
    result = play_layout(layout)
    assert not result.beaten and "one-way" in result.stuck
    assert not check_mission(layout).beatable  # the mission check is a view of the same search


def test_backtracking_counts_reentries() -> None:
    layout = make({0: "s", 1: "k", 2: "t"}, [(0, 1, "open", "open"), (0, 2, "key", "key")])
    result = play_layout(layout)
    assert result.beaten and result.rooms_path == (0, 1, 0, 2)
    assert (
        result.backtracking == 1
        and result.rooms_backtracked == 1
        and result.rooms_on_path == 3
        and result.keys_used == 1
    )


def test_shortest_way_skips_side_rooms() -> None:
    layout = make(
        {0: "s", 1: "", 2: "", 3: "t"}, [(0, 1, "open", "open"), (0, 2, "open", "open"), (2, 3, "open", "open")]
    )
    assert play_layout(layout).rooms_path == (0, 2, 3)


def test_tile_play_of_a_built_dungeon_walks_adjacent_tiles() -> None:
    config = DungeonConfig()
    (dungeon,) = build_dungeons([plan(sample_layout(3), config, seed=3)], PlainRoomSource(), config, seed=3)
    result = play_dungeon(dungeon.layout, dungeon.embedding, dungeon.rooms)
    assert result.beaten, result.stuck
    assert result.tiles[0][0] == dungeon.layout.start and result.tiles[-1][0] == dungeon.layout.goal
    for (ra, r0, c0), (rb, r1, c1) in zip(result.tiles, result.tiles[1:]):
        if ra == rb:
            assert abs(r0 - r1) + abs(c0 - c1) == 1  # one tile step inside a room
    assert result.length == len(result.tiles) - 1
    assert dungeon.play.beaten and dungeon.play.rooms_path == result.rooms_path


def test_a_walled_boss_room_stops_the_tile_player() -> None:
    config = DungeonConfig(max_regenerations=0)
    (dungeon,) = build_dungeons([plan(sample_layout(5), config, seed=5)], PlainRoomSource(), config, seed=5)
    rooms = dungeon.rooms.clone()
    boss = [r.id for r in dungeon.layout.rooms].index(dungeon.layout.boss)
    rooms[boss, 2:14, 2:9] = WALL  # no walkable interior: the doors of the boss room (before the goal) no longer meet
    rooms[boss, 7, 5] = FLOOR
    result = play_dungeon(dungeon.layout, dungeon.embedding, rooms)
    assert not result.beaten and "not reached" in result.stuck
    assert play_layout(dungeon.layout).beaten  # the graph alone is still beatable
    assert rooms.shape[1:] == (ROOM_H, ROOM_W)


def _split_start_room(middle: str) -> torch.Tensor:
    """Rooms (2, 16, 11): room 0 with a north door (row 1) above and a south door (row 14) below, its interior rows
    2-7 and 9-13 floor with text row 8 given by `middle` (7 tiles); room 1 a plain room with a north door."""
    rooms = torch.full((2, ROOM_H, ROOM_W), WALL, dtype=torch.long)
    rooms[:, 2:14, 2:9] = FLOOR
    rooms[:, 1, 5] = DOOR
    rooms[0, 14, 5] = DOOR
    rooms[0, 8, 2:9] = torch.tensor([TILE_INDEX[ch] for ch in middle])
    return rooms


def _play_split(labels: str, middle: str) -> PlayResult:
    layout = make({0: labels, 1: "t"}, [(0, 1, "open", "open")])
    rooms = _split_start_room(middle)
    lab = walkable_components(rooms)
    passage = Passage(0, int(lab[0, 14, 5]), (14, 5), 1, int(lab[1, 1, 5]), (1, 5), 0)
    return play(with_crossings(tile_graph(layout, rooms, [passage], lab), rooms), 1000)


def test_the_ladder_crosses_one_water_tile_once_the_key_item_is_held() -> None:
    crossed = _play_split("s,I", "PPPPPPP")
    assert crossed.beaten, crossed.stuck
    assert any(abs(r0 - r1) == 2 for (a, r0, _), (b, r1, _) in zip(crossed.tiles, crossed.tiles[1:]) if a == b == 0)
    without = _play_split("s", "PPPPPPP")
    assert not without.beaten and "ladder" in without.stuck
    assert not _play_split("s,I", "BBBBBBB").beaten  # blocks are no water


def test_the_ladder_spans_one_tile_only() -> None:
    layout = make({0: "s,I", 1: "t"}, [(0, 1, "open", "open")])
    rooms = _split_start_room("PPPPPPP")
    rooms[0, 9, 2:9] = TILE_INDEX["P"]  # two rows of water
    lab = walkable_components(rooms)
    passage = Passage(0, int(lab[0, 14, 5]), (14, 5), 1, int(lab[1, 1, 5]), (1, 5), 0)
    assert not play(with_crossings(tile_graph(layout, rooms, [passage], lab), rooms), 1000).beaten


def test_a_puzzle_room_lets_the_player_push_a_block_onto_floor() -> None:
    # Row 7 has a block at column 5 with floor either side; row 8 is blocks but for column 5: pushing the block of
    # row 7 sideways lets the player step down through (8, 5) to the south half.
    def room_with_block(labels: str) -> PlayResult:
        layout = make({0: labels, 1: "t"}, [(0, 1, "open", "open")])
        rooms = _split_start_room("BBBFBBB")
        rooms[0, 7, 5] = TILE_INDEX["B"]
        lab = walkable_components(rooms)
        passage = Passage(0, int(lab[0, 14, 5]), (14, 5), 1, int(lab[1, 1, 5]), (1, 5), 0)
        return play(with_crossings(tile_graph(layout, rooms, [passage], lab), rooms), 1000)

    assert room_with_block("s,p").beaten
    plain = room_with_block("s")  # no puzzle room: its blocks stay put
    assert not plain.beaten and "only partly walkable" in plain.stuck


def test_crossings_are_found_once_per_pair_of_components() -> None:
    rooms = _split_start_room("PPPPPPP")
    lab = walkable_components(rooms)
    ladders = [x for x in crossings(rooms, lab, [frozenset(), frozenset()]) if x.kind == LADDER]
    assert len(ladders) == 2 and {x.room for x in ladders} == {0}  # one each way
    assert not [x for x in crossings(rooms, lab, [frozenset(), frozenset()]) if x.kind == PUSH]
