"""hmolqd.dungeon.walk on hand-built dungeons: doors must line up through the wall, stairs must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hmolqd.data.playability import playable_mask
from hmolqd.data.tiles import BLOCK, DOOR, FLOOR, SIDES, STAIR, WALL, door_sides
from hmolqd.data.vglc import load_corpus
from hmolqd.dungeon.build import Plan, plan
from hmolqd.dungeon.layout import Layout, Link, Room
from hmolqd.dungeon.source import plain_rooms
from hmolqd.dungeon.walk import door_positions, walk_dungeon

RIGHT, LEFT, BOTTOM = SIDES.index("right"), SIDES.index("left"), SIDES.index("bottom")


def hand_plan(slots: dict[int, tuple[int, int]], pairs: list[tuple[int, int]]) -> Plan:
    """Rooms 0..n-1 at `slots`, open links `pairs`; 0 is the start, n-1 the goal."""
    n = len(slots)
    links = tuple(Link(a, b, "open", "open") for a, b in pairs)
    rooms = tuple(Room(i, frozenset({"s"} if i == 0 else {"t"} if i == n - 1 else set())) for i in range(n))
    return plan(Layout("hand", "hand-built", rooms, links, start=0, goal=n - 1, slots=slots))


def walk(p: Plan, rooms: torch.Tensor):  # type: ignore[no-untyped-def]
    return walk_dungeon(p.layout, p.embedding, rooms)


@pytest.fixture
def row_of_three() -> tuple[Plan, torch.Tensor]:
    """Three rooms side by side on one text row (slots (0,0), (0,1), (0,2)), plain rooms with their doors."""
    p = hand_plan({0: (0, 0), 1: (0, 1), 2: (0, 2)}, [(0, 1), (1, 2)])
    return p, plain_rooms(p.doors, p.stairs)


def test_matching_doors_are_walkable(row_of_three: tuple[Plan, torch.Tensor]) -> None:
    p, rooms = row_of_three
    result = walk(p, rooms)
    assert result.walkable and result.goal_reached and result.doors_agree
    assert (result.reached, result.unreached, result.misaligned) == (3, (), ())


def test_matching_doors_but_a_room_cut_in_two_fails(row_of_three: tuple[Plan, torch.Tensor]) -> None:
    p, rooms = row_of_three
    rooms = rooms.clone()
    rooms[1, 2:14, 5] = BLOCK  # a wall of blocks down the middle room: its left and right doors are apart
    assert bool(door_sides(rooms).eq(p.doors).all())  # every door is where it was asked
    result = walk(p, rooms)
    assert result.doors_agree and not result.walkable and not result.goal_reached
    assert result.unreached == (2,)


def test_playable_rooms_whose_doors_do_not_line_up_fail(row_of_three: tuple[Plan, torch.Tensor]) -> None:
    p, rooms = row_of_three
    rooms = rooms.clone()
    rooms[1, 7:9, 1] = WALL  # move room 1's left door from rows 7-8 to rows 3-4 of its left band
    rooms[1, 3:5, 1] = DOOR
    assert bool(playable_mask(rooms).all())  # every room passes the per-room rule
    assert bool(door_sides(rooms).eq(p.doors).all())  # and has exactly the doors asked
    result = walk(p, rooms)
    assert not result.walkable and result.unreached == (1, 2)
    assert result.doors_agree  # both facing sides have a door ...
    assert result.misaligned == ("room 0 south door and room 1 north door do not line up",)  # ... in different places


def test_a_door_without_a_door_opposite_fails() -> None:
    # L shape: 0 at (0,0), 1 at (0,1), 2 at (1,1). Room 1 loses its left door but keeps its bottom one.
    p = hand_plan({0: (0, 0), 1: (0, 1), 2: (1, 1)}, [(0, 1), (1, 2)])
    rooms = plain_rooms(p.doors, p.stairs)
    rooms[1, 7:9, 1] = WALL
    assert bool(playable_mask(rooms).all())
    result = walk(p, rooms)
    assert not result.doors_agree and not result.walkable
    assert result.disagreements == ("room 0 has a south door, room 1 has no north door",)
    assert result.reached == 1


def test_stair_link_connects_only_with_stair_tiles() -> None:
    p = hand_plan({0: (0, 0), 1: (0, 1), 2: (0, 3)}, [(0, 1), (1, 2)])  # 1 and 2 are two slots apart
    assert [p.layout.links[i] for i in p.embedding.stair_links] == [p.layout.links[1]]
    rooms = plain_rooms(p.doors, p.stairs)
    assert bool(p.stairs[1]) and bool(p.stairs[2]) and not bool(p.doors[2].any())
    assert walk(p, rooms).walkable
    rooms[2][rooms[2] == STAIR] = FLOOR  # the far end of the stairs has no stair tile
    result = walk(p, rooms)
    assert not result.walkable and result.unreached == (2,)


def test_doors_must_agree_with_the_links() -> None:
    # 0 at (0,0), 1 at (0,1), 2 at (1,1) and 3 at (1,0): a square; links 0-1, 1-2, 2-3 (no link 3-0).
    p = hand_plan({0: (0, 0), 1: (0, 1), 2: (1, 1), 3: (1, 0)}, [(0, 1), (1, 2), (2, 3)])
    rooms = plain_rooms(p.doors, p.stairs)
    assert walk(p, rooms).doors_agree
    extra = rooms.clone()
    extra[0, 14, 4:7] = DOOR  # facing doors between 0 and 3, which are not linked
    extra[3, 1, 4:7] = DOOR
    result = walk(p, extra)
    assert result.walkable  # walkability follows the tiles: the extra doors connect
    assert result.disagreements == ("rooms 0 and 3 have doors on the wall between them but are not linked",)
    missing = rooms.clone()
    missing[1, 14, 4:7] = WALL  # the linked rooms 1 and 2 both lose the doors between them
    missing[2, 1, 4:7] = WALL
    result = walk(p, missing)
    assert not result.walkable and result.disagreements == (
        "rooms 1 and 2 are linked but have no doors on the wall between them",
    )


def test_rooms_without_any_door_do_not_agree(row_of_three: tuple[Plan, torch.Tensor]) -> None:
    p, rooms = row_of_three
    rooms = rooms.clone()
    rooms[rooms == DOOR] = WALL  # facing sides agree (no door on either) but the layout asks for doors
    result = walk(p, rooms)
    assert not result.doors_agree and len(result.disagreements) == 2


def test_real_maps_doors_line_up(vglc_dir: Path) -> None:
    """In all 18 real maps, every pair of facing doors shares a position along the wall (the rule walk uses)."""
    corpus = load_corpus(vglc_dir)
    positions = door_positions(corpus.rooms.long())
    sides = corpus.doors
    pairs = 0
    for i, meta in enumerate(corpus.meta):
        for side in (BOTTOM, RIGHT):
            j = meta.neighbors[side]
            opp = LEFT if side == RIGHT else SIDES.index("top")
            if j >= 0 and sides[i, side] and sides[j, opp]:
                pairs += 1
                assert bool((positions[side][i] & positions[opp][j]).any()), (
                    meta.dungeon,
                    meta.slot_row,
                    meta.slot_col,
                    SIDES[side],
                )
    assert pairs > 300
