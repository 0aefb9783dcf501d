"""Sample dungeon layouts whose statistics follow the 18 real VGLC room graphs, and measure those statistics.

Each real graph is summarised as a `Template` (room count, loops, dead ends, start-to-goal distance,
shares of door kinds and room labels); `REAL_TEMPLATES` holds the 18 of them (`tests/test_dungeon_layout.py`
checks them against the corpus). `sample_layout` draws one template (seeded), then builds a layout on the
grid that follows it:

1. the main path: a self-avoiding walk from the start (one link, as in every real graph) to the goal,
   `start_goal_ratio * rooms` steps long; the room before the goal is the boss room (goal and boss are
   dead ends past the boss, as in 17 of the 18 real graphs);
2. side branches until the room count is reached, as many as the template's dead ends ask for, each a
   walk from a room of the path or of an earlier branch;
3. loops: links between neighbouring rooms (`cycle_rate * rooms` of them) and stair links (`s`) between
   rooms that are not neighbours (`stair_rate * rooms`);
4. labels (enemies, puzzles, items, mini-bosses) with the template's shares;
5. locks, placed so that the dungeon is beatable by construction: key-locked (`key_share` of the links),
   key-item-locked (`item_share`) and, with `boss_key`, a boss-key door in front of the boss room (an
   extension: the first game has no boss key). Walking from the start, each time a locked door is met its
   key (or key item, boss key) is put in a room already reached. Soft-locked and bombable doors follow
   the template's shares. Sampled doors are two-way.

Rooms carry their slots, so `hmolqd.dungeon.embed` keeps them: every link between neighbouring slots is a
door, the `s` links are stair links.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import astuple, dataclass, fields

from hmolqd.dungeon.embed import SIDE_OFFSETS, Embedding
from hmolqd.dungeon.layout import MAX_ROOMS, NO_PASSAGE, Layout, LayoutError, Link, Room, direction_kind

MIN_ROOMS = 4  # start, one room, boss, goal


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
        enemy_share=round(labels["e"] / n, 4),
        puzzle_share=round(labels["p"] / n, 4),
        item_room_share=round(labels["i"] / n, 4),
        miniboss_share=round(labels["m"] / n, 4),
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


@dataclass(frozen=True)
class SamplerConfig:
    boss_key: bool = True  # a boss-key door in front of the boss room and a boss key to find (module docstring)
    rooms_jitter: float = 0.2  # a template's room count is scaled by a uniform factor in [1 - j, 1 + j]
    attempts: int = 50  # restarts when a walk gets stuck on the grid


class _Grid:
    """Rooms on slots while a layout is being built."""

    def __init__(self, rng: random.Random, max_extent: int) -> None:
        self.rng = rng
        self.max_extent = max_extent
        self.slots: list[tuple[int, int]] = []
        self.taken: dict[tuple[int, int], int] = {}
        self.links: dict[tuple[int, int], set[str]] = {}

    def add(self, slot: tuple[int, int], parent: int | None) -> int:
        room = len(self.slots)
        self.slots.append(slot)
        self.taken[slot] = room
        if parent is not None:
            self.links[(parent, room)] = set()
        return room

    def free_around(self, room: int) -> list[tuple[int, int]]:
        r, c = self.slots[room]
        rows = [s[0] for s in self.slots]
        cols = [s[1] for s in self.slots]
        out = []
        for dr, dc in SIDE_OFFSETS:
            slot = (r + dr, c + dc)
            if slot in self.taken:
                continue
            if max(max(rows), slot[0]) - min(min(rows), slot[0]) >= self.max_extent:
                continue
            if max(max(cols), slot[1]) - min(min(cols), slot[1]) >= self.max_extent:
                continue
            out.append(slot)
        return out

    def walk(self, parent: int, steps: int) -> list[int]:
        """A self-avoiding walk of up to `steps` new rooms from `parent`; shorter where it gets stuck."""
        made = []
        for _ in range(steps):
            free = self.free_around(parent)
            if not free:
                break
            # Slots beside more rooms are likelier: the real maps are compact.
            weights = [1 + sum((r + dr, c + dc) in self.taken for dr, dc in SIDE_OFFSETS) for r, c in free]
            parent = self.add(self.rng.choices(free, weights)[0], parent)
            made.append(parent)
        return made

    def degree(self, room: int) -> int:
        return sum(1 for a, b in self.links if room in (a, b))


def sample_layout(seed: int, rooms: int | None = None, config: SamplerConfig = SamplerConfig()) -> Layout:
    """A seeded layout following a randomly drawn real template (module docstring); `rooms` fixes the count."""
    if rooms is not None and (
        isinstance(rooms, bool) or not isinstance(rooms, int) or not MIN_ROOMS <= rooms <= MAX_ROOMS
    ):
        raise ValueError(
            f"sample_layout: rooms must be an int in {MIN_ROOMS} .. {MAX_ROOMS} "
            f"(start, a room, boss, goal; hmolqd.dungeon.layout.MAX_ROOMS), got {rooms!r}"
        )
    rng = random.Random(seed)
    template = rng.choice(REAL_TEMPLATES)
    n = (
        rooms
        if rooms is not None
        else max(MIN_ROOMS, round(template.rooms * rng.uniform(1 - config.rooms_jitter, 1 + config.rooms_jitter)))
    )
    return _build(rng, template, n, config, seed)


def layout_from_template(template: Template, seed: int, config: SamplerConfig = SamplerConfig()) -> Layout:
    """A seeded layout that follows `template` itself (its room count exactly): the decoder of
    `hmolqd.illuminate.genome`, which writes the template's numbers as the knobs of a search."""
    if template.rooms < MIN_ROOMS:
        raise ValueError(f"layout_from_template: rooms must be >= {MIN_ROOMS}, got {template.rooms}")
    return _build(random.Random(seed), template, template.rooms, config, seed)


def _build(rng: random.Random, template: Template, n: int, config: SamplerConfig, seed: int) -> Layout:
    max_extent = max(4, math.ceil(math.sqrt(2 * n)))
    for _ in range(config.attempts):
        grid = _grow(rng, template, n, max_extent)
        if grid is not None:
            return _finish(
                grid, rng, template, config, f"sampled (seed {seed}, template {template.name}, {n} rooms)", seed
            )
    raise LayoutError(
        f"sample_layout: no layout of {n} rooms within a {max_extent}x{max_extent} grid "
        f"after {config.attempts} tries (seed {seed})"
    )


def _grow(rng: random.Random, t: Template, n: int, max_extent: int) -> _Grid | None:
    """Steps 1-3 of the module docstring; None when a walk got stuck (the caller retries)."""
    grid = _Grid(rng, max_extent)
    start = grid.add((0, 0), None)
    path_len = min(n - 1, max(3, round(t.start_goal_ratio * n)))
    path = [start] + grid.walk(start, path_len)
    if len(path) != path_len + 1:
        return None
    boss, goal = path[-2], path[-1]
    special = {start, boss, goal}
    left = n - len(path)
    branches = min(left, max(1 if left else 0, round(t.dead_share * n) - 2))
    lengths = [1] * branches
    for _ in range(left - branches):
        lengths[rng.randrange(branches)] += 1
    for length in lengths:
        while length:
            hosts = [
                r for r in range(len(grid.slots)) if r not in special and grid.free_around(r) and grid.degree(r) < 4
            ]
            if not hosts:
                return None
            made = grid.walk(rng.choice(hosts), length)
            length -= len(made)
    pairs = [
        (a, b)
        for a in range(n)
        for b in range(a + 1, n)
        if a not in special
        and b not in special
        and (a, b) not in grid.links
        and abs(grid.slots[a][0] - grid.slots[b][0]) + abs(grid.slots[a][1] - grid.slots[b][1]) == 1
    ]
    rng.shuffle(pairs)
    goal_distance = _hops(grid, start, goal)
    loops = round(t.cycle_rate * n)
    for a, b in pairs:
        # A loop keeps dead ends dead and does not shorten the way to the goal (both measured after loops).
        if loops and 1 < grid.degree(a) < 4 and 1 < grid.degree(b) < 4:
            grid.links[(a, b)] = set()
            if _hops(grid, start, goal) < goal_distance:
                del grid.links[(a, b)]
            else:
                loops -= 1
    ordinary = [r for r in range(n) if r not in special]
    stairs_left, used = round(t.stair_rate * n), set()
    for _ in range(50 * stairs_left):
        if not stairs_left or len(ordinary) < 2:
            break
        a, b = sorted(rng.sample(ordinary, 2))
        far = abs(grid.slots[a][0] - grid.slots[b][0]) + abs(grid.slots[a][1] - grid.slots[b][1]) > 1
        if far and a not in used and b not in used:
            grid.links[(a, b)] = {"s"}
            if _hops(grid, start, goal) < goal_distance:
                del grid.links[(a, b)]
                continue
            used |= {a, b}
            stairs_left -= 1
    grid.special = (start, boss, goal)  # type: ignore[attr-defined]
    return grid


def _hops(grid: _Grid, src: int, dst: int) -> int:
    """Links on the shortest way from `src` to `dst`."""
    adj: dict[int, list[int]] = {}
    for a, b in grid.links:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    dist, queue = {src: 0}, [src]
    for u in queue:
        for v in adj.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist.get(dst, len(grid.slots))


def _finish(grid: _Grid, rng: random.Random, t: Template, config: SamplerConfig, source: str, seed: int) -> Layout:
    """Steps 4-5: labels and locks, then the Layout."""
    start, boss, goal = grid.special  # type: ignore[attr-defined]
    n = len(grid.slots)
    labels: list[set[str]] = [set() for _ in range(n)]
    labels[start].add("s")
    labels[boss] |= {"b", "e"}
    labels[goal].add("t")
    for room in range(n):
        if room not in (start, boss, goal):
            for code, share in (
                ("e", t.enemy_share),
                ("p", t.puzzle_share),
                ("i", t.item_room_share),
                ("m", t.miniboss_share),
            ):
                if rng.random() < share:
                    labels[room].add(code)
    pairs = sorted(grid.links)
    codes = {pair: set(grid.links[pair]) for pair in pairs}
    boss_pair = next(p for p in pairs if boss in p and goal not in p)
    free = [p for p in pairs if "s" not in codes[p] and p != boss_pair and goal not in p]
    rng.shuffle(free)
    # The boss-key door counts among the locked doors, so it takes the place of one key-locked door.
    n_key = max(0, round(t.key_share * len(pairs)) - int(config.boss_key))
    n_item = round(t.item_share * len(pairs))
    for p in free[:n_key]:
        codes[p].add("k")
    for p in free[n_key : n_key + n_item]:
        codes[p].add("I")
    if config.boss_key:
        codes[boss_pair].add("K")
    rest = free[n_key + n_item :]
    for p in rest:
        roll = rng.random()
        if roll < t.soft_share:
            codes[p].add("l")
        elif roll < t.soft_share + t.bomb_share:
            codes[p].add("b")
    _place_keys(rng, n, start, (boss, goal), codes, labels)
    links = tuple(
        Link(a, b, direction_kind(frozenset(c)), direction_kind(frozenset(c)), frozenset(c), "s" in c)
        for (a, b), c in sorted(codes.items())
    )
    assert all(NO_PASSAGE not in (l.kind_ab, l.kind_ba) for l in links)
    return Layout(
        name=f"sampled_{seed}",
        source=source,
        rooms=tuple(Room(i, frozenset(labels[i])) for i in range(n)),
        links=links,
        start=start,
        goal=goal,
        boss=boss,
        slots=dict(enumerate(grid.slots)),
    )


def _place_keys(
    rng: random.Random,
    n: int,
    start: int,
    keep_free: tuple[int, ...],
    codes: dict[tuple[int, int], set[str]],
    labels: list[set[str]],
) -> None:
    """Walk from the start; each locked door met gets its key (k, I or K) in a room already reached (in place)."""
    locks = {p: c & {"k", "I", "K"} for p, c in codes.items() if c & {"k", "I", "K"}}
    opened: set[tuple[int, int]] = set()
    while True:
        region, queue = {start}, [start]
        while queue:
            u = queue.pop()
            for a, b in codes:
                if u in (a, b) and ((a, b) not in locks or (a, b) in opened):
                    v = b if u == a else a
                    if v not in region:
                        region.add(v)
                        queue.append(v)
        frontier = sorted(p for p in locks if p not in opened and (p[0] in region) != (p[1] in region))
        if not frontier:
            return
        door = rng.choice(frontier)
        need = next(iter(locks[door]))
        holders = [r for r in sorted(region) if r not in keep_free and r != start and not labels[r] & {"k", "I", "K"}]
        if need == "k" or not any(need in labels[r] for r in region):
            if not holders:  # no room left to hold the key: the door stays unlocked
                codes[door] -= {need}
                del locks[door]
                continue
            labels[rng.choice(holders)].add(need)
        opened.add(door)
