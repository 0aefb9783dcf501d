"""hmolqd.dungeon.embed: every real graph embeds, stair links where a link cannot be a door, clear errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hmolqd.data.tiles import SIDES
from hmolqd.dungeon.embed import (
    OPPOSITE,
    Embedding,
    EmbeddingError,
    embed,
    side_between,
)
from hmolqd.dungeon.layout import Layout, Link, Room, read_layout

REAL_GRAPHS = tuple(f"LoZ_{i}" for i in range(1, 10)) + tuple(f"LoZ2_{i}" for i in range(1, 10))


def make_layout(
    n: int,
    pairs: list[tuple[int, int]],
    stairs: frozenset[tuple[int, int]] = frozenset(),
    slots: dict[int, tuple[int, int]] | None = None,
) -> Layout:
    """Room 0 is the start, room n-1 the goal; every pair an open two-way link (`s` for `stairs`)."""
    links = tuple(
        Link(a, b, "open", "open", frozenset({"s"}) if (a, b) in stairs else frozenset(), (a, b) in stairs)
        for a, b in pairs
    )
    labels = {0: {"s"}, n - 1: {"t"}}
    rooms = tuple(Room(i, frozenset(labels.get(i, set()))) for i in range(n))
    return Layout(name="test", source="test.dot", rooms=rooms, links=links, start=0, goal=n - 1, slots=slots)


def assert_consistent(layout: Layout, emb: Embedding) -> None:
    """Unique slots; each door link joins neighbours and sets the facing sides; no door without a link."""
    assert len(set(emb.slots.values())) == len(layout.rooms)
    assert sorted(emb.door_links + emb.stair_links) == list(range(len(layout.links)))
    expected = {room.id: [False] * 4 for room in layout.rooms}
    for i in emb.door_links:
        link = layout.links[i]
        side = side_between(emb.slots[link.a], emb.slots[link.b])
        assert side is not None and not link.stair
        expected[link.a][side] = expected[link.b][OPPOSITE[side]] = True
    assert {k: tuple(v) for k, v in expected.items()} == emb.doors
    stair_rooms = {end for i in emb.stair_links for end in (layout.links[i].a, layout.links[i].b)}
    assert {room for room, has in emb.stairs.items() if has} == stair_rooms


@pytest.mark.parametrize("name", REAL_GRAPHS)
def test_every_real_graph_embeds(vglc_dir: Path, name: str) -> None:
    layout = read_layout(vglc_dir / "Graph Processed" / f"{name}.dot")
    emb = embed(layout, seed=0)
    assert_consistent(layout, emb)
    per_room: dict[int, int] = {}
    for i in emb.stair_links:
        for end in (layout.links[i].a, layout.links[i].b):
            per_room[end] = per_room.get(end, 0) + 1
    assert max(per_room.values(), default=0) <= 2
    # Links labelled s (stairs in the game) are always stair links; most of the rest become doors.
    assert {i for i, link in enumerate(layout.links) if link.stair} <= set(emb.stair_links)
    assert len(emb.door_links) >= 0.75 * len(layout.links)


def test_embedding_is_deterministic_for_a_seed(vglc_dir: Path) -> None:
    layout = read_layout(vglc_dir / "Graph Processed" / "LoZ_9.dot")
    assert embed(layout, seed=3) == embed(layout, seed=3)


def test_odd_cycle_gets_one_stair_link_and_both_rooms_stairs() -> None:
    # A triangle cannot lie on the grid (the grid has no odd cycles): one of its links becomes stairs.
    layout = make_layout(3, [(0, 1), (1, 2), (0, 2)])
    emb = embed(layout)
    assert_consistent(layout, emb)
    assert len(emb.stair_links) == 1 and len(emb.door_links) == 2
    link = layout.links[emb.stair_links[0]]
    assert emb.stairs[link.a] and emb.stairs[link.b]
    assert sum(emb.stairs.values()) == 2


def test_s_label_is_a_stair_link_even_between_neighbours() -> None:
    layout = make_layout(3, [(0, 1), (1, 2)], stairs=frozenset({(1, 2)}))
    emb = embed(layout)
    assert [layout.links[i] for i in emb.stair_links] == [layout.links[1]]
    assert emb.doors[2] == (False, False, False, False) and emb.stairs[2]


def test_five_neighbours_take_a_stair_link() -> None:
    layout = make_layout(6, [(0, k) for k in range(1, 6)])
    emb = embed(layout, max_stair_links=1)
    assert_consistent(layout, emb)
    assert sum(emb.doors[0]) == 4 and len(emb.stair_links) == 1


def test_too_many_neighbours_is_a_clear_error() -> None:
    layout = make_layout(8, [(0, k) for k in range(1, 8)])
    with pytest.raises(
        EmbeddingError,
        match=r"graph test\.dot: node 0 has 7 neighbours; a room has at most 4 door sides and 2 stair links",
    ):
        embed(layout, max_stair_links=2)


def test_too_many_s_links_is_a_clear_error() -> None:
    layout = make_layout(4, [(0, 1), (0, 2), (0, 3)], stairs=frozenset({(0, 2), (0, 3)}))
    with pytest.raises(
        EmbeddingError, match=r"node 0 has 2 links labelled 's' \(stairs\); a room has at most 1 stair links"
    ):
        embed(layout, max_stair_links=1)


def test_placement_that_needs_too_many_stairs_is_a_clear_error() -> None:
    # K5 minus nothing: 10 links on 5 rooms; no grid placement keeps every room at <= 1 stair link.
    pairs = [(a, b) for a in range(5) for b in range(a + 1, 5)]
    with pytest.raises(
        EmbeddingError, match=r"graph test\.dot: node \d+ needs \d+ stair links in this placement; a room has at most 1"
    ):
        embed(make_layout(5, pairs), max_stair_links=1, attempts=8)


def test_given_slots_are_kept_and_checked() -> None:
    slots = {0: (5, 5), 1: (5, 6), 2: (7, 6)}  # 1 and 2 are not neighbours: their link becomes stairs
    layout = make_layout(3, [(0, 1), (1, 2)], slots=slots)
    emb = embed(layout)
    assert emb.slots == {0: (0, 0), 1: (0, 1), 2: (2, 1)}  # shifted to start at 0
    assert emb.doors[0][SIDES.index("right")] and emb.doors[1][SIDES.index("left")]
    assert emb.stair_links == (1,)
    with pytest.raises(EmbeddingError, match=r"nodes 0 and 2 share slot \(0, 0\)"):
        embed(replace(layout, slots={0: (0, 0), 1: (0, 1), 2: (0, 0)}))
