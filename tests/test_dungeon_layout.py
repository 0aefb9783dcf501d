"""hmolqd.dungeon.layout (graphs -> layouts, door kinds, clear errors) and hmolqd.dungeon.sampler."""

from __future__ import annotations

import statistics
import tracemalloc
from pathlib import Path

import pytest

from hmolqd.data.vglc import VGLCFormatError
from hmolqd.dungeon.embed import embed
from hmolqd.dungeon.layout import MAX_ROOMS, LayoutError, direction_kind, read_layout
from hmolqd.dungeon.mission import check_mission
from hmolqd.dungeon.sampler import (
    REAL_TEMPLATES,
    STAT_NAMES,
    layout_stats,
    sample_layout,
    template_of,
)

REAL_GRAPHS = tuple(f"LoZ_{i}" for i in range(1, 10)) + tuple(f"LoZ2_{i}" for i in range(1, 10))

# start 0 -> 1 (key room) -> key door -> boss 2 -> goal 3; the goal door is one-way (2 -> 3 only).
SMALL = """digraph {
0 [label="s"]
1 [label="e,k"]
2 [label="b"]
3 [label="t"]
0 -> 1 [label=""]
1 -> 0 [label=""]
1 -> 2 [label="k"]
2 -> 1 [label="l"]
2 -> 3 [label=""]
}
"""


def write(tmp_path: Path, text: str, name: str = "mine.dot") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_door_kinds_follow_each_direction(tmp_path: Path) -> None:
    layout = read_layout(write(tmp_path, SMALL))
    links = {(link.a, link.b): link for link in layout.links}
    assert (links[(1, 2)].kind_ab, links[(1, 2)].kind_ba) == ("key", "soft")
    assert links[(1, 2)].locked and not links[(0, 1)].locked
    assert (links[(2, 3)].kind_ab, links[(2, 3)].kind_ba) == ("open", "none")
    assert links[(2, 3)].one_way
    assert (layout.start, layout.goal, layout.boss) == (0, 3, 2)


@pytest.mark.parametrize(
    ("codes", "kind"),
    [
        ({"k", "b"}, "key"),
        ({"K", "k"}, "boss"),
        ({"I"}, "item"),
        ({"S1"}, "switch"),
        ({"S"}, "switch"),
        ({"b"}, "bomb"),
        ({"l"}, "soft"),
        (set(), "open"),
        ({"s"}, "open"),
    ],
)
def test_direction_kind(codes: set[str], kind: str) -> None:
    assert direction_kind(frozenset(codes)) == kind


def test_any_file_name_and_stairs_label(tmp_path: Path) -> None:
    text = SMALL.replace('2 -> 3 [label=""]', '2 -> 3 [label="s"]\n3 -> 2 [label="s"]')
    layout = read_layout(write(tmp_path, text, "my dungeon.dot"))
    assert layout.name == "my dungeon"
    stair = next(link for link in layout.links if (link.a, link.b) == (2, 3))
    assert stair.stair and (stair.kind_ab, stair.kind_ba) == ("open", "open")


def test_self_loop_of_a_corpus_file_dropped_with_a_note(tmp_path: Path) -> None:
    text = SMALL.replace("}", '1 -> 1 [label=""]\n1 -> 1 [label=""]\n}')
    layout = read_layout(write(tmp_path, text, name="LoZ2_5.dot"))
    assert all(link.a != link.b for link in layout.links)
    assert layout.notes == ("self-loop on node 1 dropped (a room is not linked to itself)",)


def test_self_loop_in_a_graph_a_user_wrote_is_an_error(tmp_path: Path) -> None:
    text = SMALL.replace("}", '1 -> 1 [label=""]\n}')
    path, line = write(tmp_path, text), text.splitlines().index('1 -> 1 [label=""]') + 1
    with pytest.raises(VGLCFormatError, match=rf"mine.dot:{line}: edge 1 -> 1 joins a room to itself"):
        read_layout(path)


@pytest.mark.parametrize(
    "statement",
    ['0 [label="s", label="e"]', '0 [label="s", row=0, col=0, row=1]', '0 -> 1 [link="door", link="stair"]'],
)
def test_an_attribute_given_twice_is_an_error(tmp_path: Path, statement: str) -> None:
    path = write(tmp_path, SMALL.replace("}", statement + "\n}"))
    rule = r"mine.dot:\d+: attribute\(s\) \['(label|row|link)'\] given twice in one statement"
    with pytest.raises(LayoutError, match=rule):
        read_layout(path)


def test_a_2000_room_path_graph_is_refused_at_once(tmp_path: Path) -> None:
    n = 2000
    labels = {0: "s", n - 2: "b", n - 1: "t"}
    lines = [f'{i} [label="{labels.get(i, "e")}"]' for i in range(n)]
    lines += [f"{i} -> {i + 1}\n{i + 1} -> {i}" for i in range(n - 1)]
    path = write(tmp_path, "digraph {\n" + "\n".join(lines) + "\n}\n")
    tracemalloc.start()
    with pytest.raises(LayoutError, match=f"2000 rooms; a dungeon has at most {MAX_ROOMS}"):
        read_layout(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, peak  # parsed in memory linear in the file (this one is 60 KB), nothing planned


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('0 [label="s"]', '0 [label=""]'), "exactly one start room"),
        (('1 [label="e,k"]', '1 [label="s"]'), "exactly one start room"),
        (('3 [label="t"]', '3 [label=""]'), "no goal room"),
        (("}", '4 [label="e"]\n}'), "node(s) [4] cannot be reached from the start node 0"),
    ],
)
def test_layout_errors_name_the_file_and_node(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, SMALL.replace(*edit))
    with pytest.raises(LayoutError) as err:
        read_layout(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_parse_errors_name_the_real_file(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.replace('0 -> 1 [label=""]', "0 => 1"), "custom.dot")
    with pytest.raises(VGLCFormatError, match=r"custom\.dot:6: cannot parse DOT statement") as err:
        read_layout(path)
    assert "LoZ_1" not in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('0 [label="s"]', '0 [label="s", row=0, col=0]'), r"node\(s\) \[1, 2, 3\] lack row= and col="),
        (('0 [label="s"]', '0 [label="s", row=x, col=0]'), "needs both row= and col= as integers"),
        (('0 [label="s"]', '0 [label="s", colour=red]'), "unknown attribute"),
        (('1 -> 2 [label="k"]', '1 -> 2 [label="k", link="tunnel"]'), 'may only carry link="door" or link="stair"'),
    ],
)
def test_slot_attribute_errors(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        read_layout(write(tmp_path, SMALL.replace(*edit)))


def test_real_graphs_read_and_templates_match(vglc_dir: Path) -> None:
    files = sorted((vglc_dir / "Graph Processed").glob("*.dot"))
    assert [f.stem for f in files] == sorted(REAL_GRAPHS)
    layouts = [read_layout(f) for f in files]
    # The shipped templates are exactly the statistics of the corpus graphs.
    assert tuple(template_of(layout) for layout in layouts) == REAL_TEMPLATES
    assert all(
        layout.room(layout.start).labels >= {"s"} and "t" in layout.room(layout.goal).labels for layout in layouts
    )


def test_sampler_is_seeded() -> None:
    a, b, c = sample_layout(5), sample_layout(5), sample_layout(6)
    assert a == b and a.slots == b.slots
    assert (a.links, a.slots) != (c.links, c.slots)


@pytest.mark.parametrize("seed", range(12))
def test_sampled_layout_is_connected_embedded_and_beatable(seed: int) -> None:
    layout = sample_layout(seed)
    assert len(layout.distances(layout.start)) == len(layout.rooms)  # connected
    degree = {room.id: 0 for room in layout.rooms}
    for link in layout.links:
        degree[link.a] += 1
        degree[link.b] += 1
    assert degree[layout.start] == 1 and degree[layout.goal] == 1  # start and goal are dead ends, as in the corpus
    assert layout.boss in {link.a for link in layout.links if layout.goal == link.b} | {
        link.b for link in layout.links if layout.goal == link.a
    }
    emb = embed(layout)
    assert emb.slots == layout.slots or len(set(emb.slots.values())) == len(layout.rooms)
    # Every link that is not an `s` link joins neighbouring slots: sampled layouts place doors, not stairs.
    assert {layout.links[i] for i in emb.stair_links} == {link for link in layout.links if link.stair}
    result = check_mission(layout)
    assert result.beatable and result.boss_before_goal, result.stuck


def test_rooms_argument() -> None:
    assert len(sample_layout(0, rooms=12).rooms) == 12
    for bad in (3, MAX_ROOMS + 1):
        with pytest.raises(ValueError, match=f"rooms must be an int in 4 .. {MAX_ROOMS}"):
            sample_layout(0, rooms=bad)
    assert len(sample_layout(0, rooms=MAX_ROOMS).rooms) == MAX_ROOMS  # the limit itself can be drawn


def test_sampled_statistics_follow_the_real_graphs(vglc_dir: Path) -> None:
    real = [
        layout_stats(layout, embed(layout)).row()
        for layout in map(read_layout, sorted((vglc_dir / "Graph Processed").glob("*.dot")))
    ]
    sampled = []
    for seed in range(60):
        layout = sample_layout(seed)
        sampled.append(layout_stats(layout, embed(layout)).row())
    for k, name in enumerate(STAT_NAMES):
        r = [row[k] for row in real]
        s = statistics.mean(row[k] for row in sampled)
        # In the real range, and within one real standard deviation of the real mean.
        assert min(r) <= s <= max(r), (name, s, min(r), max(r))
        assert abs(s - statistics.mean(r)) <= statistics.pstdev(r), (name, s, statistics.mean(r), statistics.pstdev(r))
