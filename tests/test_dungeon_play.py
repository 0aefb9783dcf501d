"""hmolqd.dungeon.play: the whole-dungeon player (cells, keys, one-way doors, tiles, backtracking) and the real
dungeons."""

from __future__ import annotations

import pytest
import torch

from hmolqd.data.tiles import FLOOR, ROOM_H, ROOM_W, WALL
from hmolqd.dungeon.build import DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.mission import check_mission
from hmolqd.dungeon.play import play_dungeon, play_layout
from hmolqd.dungeon.sampler import sample_layout
from hmolqd.dungeon.source import PlainRoomSource
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


@pytest.mark.real_data
def test_real_dungeons_are_played_and_every_failure_says_why(vglc_dir) -> None:  # type: ignore[no-untyped-def]
    from hmolqd.dungeon.real import play_real_dungeons

    plays = play_real_dungeons(vglc_dir)
    assert len(plays) == 18
    by_name = {p.name: p for p in plays}
    assert by_name["LoZ_1"].result.beaten and by_name["LoZ_1"].result.rooms_on_path >= 5
    for p in plays:
        assert p.result.beaten == (p.result.stuck == ""), p.name
        assert len(p.alignment.slots) <= p.alignment.map_rooms
    assert torch.tensor([p.result.beaten for p in plays]).sum() >= 9  # measured: 9 of 18 (README)
