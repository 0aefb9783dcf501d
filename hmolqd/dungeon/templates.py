"""The statistics of a layout: the `Template` the sampler follows, measured on the 18 real VGLC room graphs,
and the `LayoutStats` the bench compares between sampled and real layouts (`hmolqd.dungeon.sampler`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple, dataclass, fields

from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.embed import Embedding
from hmolqd.dungeon.layout import Layout


@dataclass(frozen=True)
class Template:
    """The statistics of one real graph that the sampler follows (shares are of links or of rooms)."""

    name: str
    rooms: int
    cycle_rate: float  # (links - rooms + 1) / rooms
    dead_share: float  # rooms with one link
    start_goal_ratio: float  # start-to-goal hops / rooms
    key_share: float  # links key-locked
    item_share: float  # links locked by a key item or a switch
    soft_share: float
    bomb_share: float
    stair_rate: float  # links labelled s / rooms
    enemy_share: float  # rooms labelled e
    puzzle_share: float  # p
    item_room_share: float  # i
    miniboss_share: float  # m


def template_of(layout: Layout) -> Template:
    """Measure a layout as a Template."""
    n, links = len(layout.rooms), layout.links
    e = max(len(links), 1)
    degree = Counter(end for link in links for end in (link.a, link.b))
    labels = Counter(code for room in layout.rooms for code in room.labels)

    def share(*kinds: str) -> float:
        return round(sum(1 for link in links if {link.kind_ab, link.kind_ba} & set(kinds)) / e, 4)

    return Template(
        name=layout.name,
        rooms=n,
        cycle_rate=round((len(links) - n + 1) / n, 4),
        dead_share=round(sum(1 for room in layout.rooms if degree[room.id] == 1) / n, 4),
        start_goal_ratio=round(layout.distances(layout.start)[layout.goal] / n, 4),
        key_share=share("key"),
        item_share=share("item", "switch"),
        soft_share=share("soft"),
        bomb_share=share("bomb"),
        stair_rate=round(sum(link.stair for link in links) / n, 4),
        enemy_share=round(labels[RoomLabel.ENEMIES] / n, 4),
        puzzle_share=round(labels[RoomLabel.PUZZLE] / n, 4),
        item_room_share=round(labels[RoomLabel.ITEM] / n, 4),
        miniboss_share=round(labels[RoomLabel.MINIBOSS] / n, 4),
    )


# template_of(read_layout(f)) for the 18 files of `Graph Processed/`, sorted by file name.
REAL_TEMPLATES: tuple[Template, ...] = tuple(
    Template(*row)
    for row in (
        ("LoZ2_1", 16, 0.0625, 0.3125, 0.4375, 0.125, 0.0, 0.25, 0.1875, 0.0, 0.6875, 0.375, 0.25, 0.0625),
        ("LoZ2_2", 23, 0.1739, 0.1739, 0.4348, 0.1538, 0.0, 0.2308, 0.1154, 0.0435, 0.6957, 0.1304, 0.2174, 0.0435),
        ("LoZ2_3", 12, 0.0, 0.25, 0.5, 0.2727, 0.0, 0.2727, 0.0, 0.0, 0.5833, 0.25, 0.25, 0.0),
        ("LoZ2_4", 35, 0.2286, 0.1143, 0.2286, 0.0714, 0.0238, 0.2143, 0.0952, 0.0, 0.5429, 0.2857, 0.1429, 0.1143),
        ("LoZ2_5", 19, 0.0, 0.2105, 0.6842, 0.1111, 0.0, 0.3333, 0.0, 0.0, 0.6842, 0.3684, 0.0526, 0.1053),
        ("LoZ2_6", 30, 0.1333, 0.1667, 0.4333, 0.0909, 0.303, 0.1515, 0.1515, 0.0, 0.7333, 0.6, 0.1333, 0.0667),
        ("LoZ2_7", 31, 0.129, 0.1613, 0.3871, 0.0588, 0.0, 0.4706, 0.0, 0.0, 0.5806, 0.7742, 0.1613, 0.0968),
        ("LoZ2_8", 37, 0.1351, 0.1892, 0.2973, 0.0732, 0.0488, 0.3415, 0.0976, 0.027, 0.5946, 0.5946, 0.1351, 0.1622),
        ("LoZ2_9", 66, 0.3788, 0.0606, 0.1515, 0.0, 0.0111, 0.2, 0.1, 0.0758, 0.5909, 0.697, 0.0909, 0.0),
        ("LoZ_1", 19, 0.1053, 0.3158, 0.4211, 0.3, 0.0, 0.2, 0.15, 0.0, 0.6316, 0.1053, 0.1053, 0.0),
        ("LoZ_2", 19, 0.3158, 0.1579, 0.5263, 0.125, 0.0, 0.2083, 0.2083, 0.0, 0.6842, 0.1053, 0.2105, 0.0526),
        ("LoZ_3", 20, 0.15, 0.2, 0.4, 0.1818, 0.0, 0.2727, 0.0455, 0.05, 0.65, 0.1, 0.3, 0.0),
        ("LoZ_4", 27, 0.1481, 0.1852, 0.4815, 0.2, 0.1333, 0.1667, 0.1333, 0.037, 0.5556, 0.3704, 0.1111, 0.037),
        ("LoZ_5", 25, 0.12, 0.24, 0.44, 0.2222, 0.0, 0.2593, 0.1852, 0.04, 0.56, 0.28, 0.08, 0.04),
        ("LoZ_6", 27, 0.1111, 0.1852, 0.5556, 0.1724, 0.0, 0.4483, 0.1034, 0.0, 0.6667, 0.2963, 0.1111, 0.037),
        ("LoZ_7", 35, 0.1143, 0.2571, 0.4857, 0.1316, 0.0, 0.2632, 0.2632, 0.0, 0.5143, 0.4286, 0.3143, 0.2286),
        ("LoZ_8", 28, 0.0714, 0.3214, 0.3214, 0.1034, 0.0, 0.3793, 0.2069, 0.0, 0.5, 0.3214, 0.2143, 0.1786),
        ("LoZ_9", 62, 0.1774, 0.129, 0.2581, 0.2222, 0.0, 0.2222, 0.2639, 0.0323, 0.7258, 0.3387, 0.0645, 0.0645),
    )
)


@dataclass(frozen=True)
class LayoutStats:
    """The statistics the bench compares between sampled and real layouts."""

    rooms: int
    grid_rows: int
    grid_cols: int
    mean_degree: float  # links per room (x2 / rooms)
    branch_share: float  # rooms with 3 or more links
    dead_end_share: float  # rooms with one link
    start_goal: int  # hops from start to goal, locks ignored
    locked_share: float  # links that need a key, boss key, key item or switch

    def row(self) -> tuple[float, ...]:
        return tuple(float(v) for v in astuple(self))


STAT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(LayoutStats))


def layout_stats(layout: Layout, embedding: Embedding) -> LayoutStats:
    n, links = len(layout.rooms), layout.links
    degree = Counter(end for link in links for end in (link.a, link.b))
    rows, cols = embedding.shape
    return LayoutStats(
        rooms=n,
        grid_rows=rows,
        grid_cols=cols,
        mean_degree=2 * len(links) / n,
        branch_share=sum(1 for room in layout.rooms if degree[room.id] >= 3) / n,
        dead_end_share=sum(1 for room in layout.rooms if degree[room.id] == 1) / n,
        start_goal=layout.distances(layout.start)[layout.goal],
        locked_share=sum(1 for link in links if link.locked) / max(len(links), 1),
    )
