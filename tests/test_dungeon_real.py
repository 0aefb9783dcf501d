"""The 18 real dungeons (VGLC text maps + graphs) played by the whole-dungeon player: each is beaten or carries
the fact of its data that stops it (`hmolqd.dungeon.real_causes`). Needs the real corpus (skips without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmolqd.data.graph import dungeon_of, graph_dir
from hmolqd.data.vglc import parse_room_file, processed_dir
from hmolqd.dungeon.layout import read_layout

BEATEN = 11  # measured: python bench/illuminate_bench.py --part real --real-seeds 0 (README)


@pytest.fixture(scope="module")
def plays(vglc_dir: Path) -> list:  # type: ignore[type-arg]
    from hmolqd.dungeon.real import play_real_dungeons

    return play_real_dungeons(vglc_dir)


@pytest.mark.real_data
def test_every_real_dungeon_is_beaten_or_says_which_fact_stops_it(plays: list) -> None:  # type: ignore[type-arg]
    assert len(plays) == 18
    for p in plays:
        assert p.result.beaten == (p.result.stuck == ""), p.name
        assert p.result.beaten == (p.cause == ""), p.name
        assert len(p.alignment.slots) <= p.alignment.map_rooms
        if not p.result.beaten:  # a cause from the checks, naming rooms or links, not "not explained"
            assert not p.cause.startswith("not explained"), (p.name, p.cause)
            assert any(ch.isdigit() for ch in p.cause), (p.name, p.cause)
    assert sum(p.result.beaten for p in plays) == BEATEN
    by_name = {p.name: p for p in plays}
    assert by_name["LoZ_1"].result.beaten and by_name["LoZ_1"].result.rooms_on_path >= 5


@pytest.mark.real_data
def test_each_map_has_one_entrance_and_each_start_node_one_link(vglc_dir: Path) -> None:
    from hmolqd.dungeon.real import entrances, outside_start

    for graph in sorted(graph_dir(vglc_dir).glob("*.dot")):
        rooms, slots, _ = parse_room_file(processed_dir(vglc_dir) / f"{dungeon_of(graph)}.txt")
        (entrance,) = entrances(rooms, slots)
        assert entrance[1] == max(c for _, c in slots), graph.name  # on the screen's south edge
        assert outside_start(read_layout(graph)) is not None, graph.name


@pytest.mark.real_data
def test_the_entrance_room_is_the_start_nodes_neighbour(plays: list, vglc_dir: Path) -> None:  # type: ignore[type-arg]
    from hmolqd.dungeon.real import entrances, outside_start

    for p, graph in zip(plays, sorted(graph_dir(vglc_dir).glob("*.dot"))):
        rooms, slots, _ = parse_room_file(processed_dir(vglc_dir) / f"{dungeon_of(graph)}.txt")
        layout = read_layout(graph)
        assert layout.start not in p.alignment.slots  # the start node is the overworld
        assert p.alignment.slots[outside_start(layout)] == entrances(rooms, slots)[0], p.name
