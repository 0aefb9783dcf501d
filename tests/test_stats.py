"""Corpus statistics (hmolqd.data.stats) on a hand-made corpus and on the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmolqd.data import corpus_stats, format_stats, load_corpus, load_graphs


def room(top: bool = False, right: bool = False, left: bool = False, stairs: bool = False) -> list[str]:
    """16x11 walled room of floor; top door DDD on row 1, side doors D on rows 7-8 (as in the corpus)."""
    grid = [list("WWWWWWWWWWW") if r in (0, 1, 14, 15) else list("WWFFFFFFFWW") for r in range(16)]
    if top:
        grid[1][4:7] = "DDD"
    for r in (7, 8):
        grid[r][9] = "D" if right else grid[r][9]
        grid[r][1] = "D" if left else grid[r][1]
    if stairs:
        grid[8][5] = "S"
    return ["".join(row) for row in grid]


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    a = room(top=True, right=True, stairs=True)
    slots = {"tloz1_1": [a, a, room()], "tloz2_1": [room(left=True)]}  # one slot row each
    (tmp_path / "Processed").mkdir()
    for name, rooms in slots.items():
        text = "\n".join("".join(r[i] for r in rooms) for i in range(16))
        (tmp_path / "Processed" / f"{name}.txt").write_text(text + "\n")
    graphs = tmp_path / "Graph Processed"
    graphs.mkdir()
    (graphs / "LoZ_1.dot").write_text(
        'digraph {\n0 [label="s"]\n1 [label="e"]\n2 [label="t"]\n0 -> 1 [label=""]\n1 -> 0 [label=""]\n}\n'
    )
    (graphs / "LoZ_3.dot").write_text('digraph {\n0 [label="s"]\n}\n')
    return tmp_path


def test_small_corpus_stats(small_dir: Path) -> None:
    stats = corpus_stats(load_corpus(small_dir), load_graphs(small_dir))
    assert (stats["rooms"], stats["distinct"], stats["dungeons"]) == (4, 3, 2)
    assert stats["doors"] == {"north": 1, "east": 0, "south": 2, "west": 2}  # on screen: text left = north, top = west
    assert stats["mean_doors"] == pytest.approx(5 / 4) and stats["stairs"] == 2
    hist = stats["tile_histogram"]
    assert sum(hist.values()) == 4 * 16 * 11 and (hist["D"], hist["S"], hist["M"]) == (12, 2, 0)
    one, two = stats["per_dungeon"]["tloz1_1"], stats["per_dungeon"]["tloz2_1"]
    assert (one["rooms"], one["distinct"], one["stairs"], one["graph_nodes"]) == (3, 2, 2, 3)
    assert one["doors"] == {"north": 0, "east": 0, "south": 2, "west": 2} and one["mean_doors"] == pytest.approx(4 / 3)
    assert (two["rooms"], two["doors"]["north"], two["graph_nodes"]) == (1, 1, None)
    assert (stats["graphs"], stats["graph_nodes"], stats["graph_edges"], stats["graph_undirected_edges"]) == (
        2,
        4,
        2,
        1,
    )
    assert stats["graphs_without_rooms"] == ["tloz3_1"]
    json.dumps(stats)  # plain JSON types only


def test_format_small(small_dir: Path) -> None:
    text = format_stats(corpus_stats(load_corpus(small_dir), load_graphs(small_dir)))
    assert "rooms: 4  distinct: 3  dungeons: 2" in text
    assert "graphs without room files: tloz3_1" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("tloz", "all"))}
    assert text.count("north   east  south   west") == 1  # the header names the sides as on screen
    assert rows["tloz1_1"] == ["tloz1_1", "3", "2", "0", "0", "2", "2", "1.33", "2", "3"]
    assert rows["tloz2_1"][-1] == "-"  # no graph for this dungeon
    assert rows["all"] == ["all", "4", "3", "1", "0", "2", "2", "1.25", "2", "4"]
    assert not any(word in text for word in ("top", "bottom", "left", "right"))


def test_stats_without_graphs(small_dir: Path) -> None:
    stats = corpus_stats(load_corpus(small_dir))
    assert "graph_nodes" not in stats and stats["per_dungeon"]["tloz1_1"]["graph_nodes"] is None
    assert "graphs:" not in format_stats(stats)


@pytest.mark.real_data
def test_real_stats(vglc_dir: Path) -> None:
    stats = corpus_stats(load_corpus(vglc_dir), load_graphs(vglc_dir))
    assert (stats["rooms"], stats["distinct"], stats["dungeons"], stats["graphs"], stats["graph_nodes"]) == (
        459,
        267,
        18,
        18,
        531,
    )
    assert stats["doors"] == {"north": 218, "east": 168, "south": 237, "west": 167}
    assert stats["stairs"] == 39 and stats["tile_histogram"]["S"] == 39
    assert stats["tile_histogram"]["D"] == 1915 and sum(stats["tile_histogram"].values()) == 459 * 176
    assert stats["per_dungeon"]["tloz9_1"]["rooms"] == 57 and stats["graphs_without_rooms"] == []
    text = format_stats(stats)
    # doors north, east, south, west
    assert text.splitlines()[-1].split() == ["all", "459", "267", "218", "168", "237", "167", "1.72", "39", "531"]
