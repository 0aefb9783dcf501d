"""Sample dungeon layouts whose statistics follow the 18 real VGLC room graphs.

Each real graph is summarised as a `Template` (`hmolqd.dungeon.templates`: room count, loops, dead ends,
start-to-goal distance, shares of door kinds and room labels); `REAL_TEMPLATES` holds the 18 of them
(`tests/test_dungeon_layout.py` checks them against the corpus). `sample_layout` draws one template (seeded),
then builds a layout on the grid that follows it:

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
from dataclasses import dataclass
from typing import NamedTuple

from hmolqd.dungeon.codes import LOCK_CODES, DoorCode, RoomLabel
from hmolqd.dungeon.embed import SIDE_OFFSETS
from hmolqd.dungeon.layout import MAX_ROOMS, MIN_ROOMS, NO_PASSAGE, Layout, LayoutError, Link, Room, direction_kind
from hmolqd.dungeon.templates import REAL_TEMPLATES, STAT_NAMES, LayoutStats, Template, layout_stats, template_of

# The statistics live in `templates`; they are importable from here too, where they were defined before.
__all__ = [
    "DEFAULT_SAMPLER",
    "MIN_ROOMS",
    "REAL_TEMPLATES",
    "STAT_NAMES",
    "LayoutStats",
    "PathEnds",
    "SamplerConfig",
    "Template",
    "layout_from_template",
    "layout_stats",
    "sample_layout",
    "template_of",
]


@dataclass(frozen=True)
class SamplerConfig:
    boss_key: bool = True  # a boss-key door in front of the boss room and a boss key to find (module docstring)
    rooms_jitter: float = 0.2  # a template's room count is scaled by a uniform factor in [1 - j, 1 + j]
    attempts: int = 50  # restarts when a walk gets stuck on the grid


DEFAULT_SAMPLER = SamplerConfig()  # the default of every `config=` here (one frozen instance)


Slot = tuple[int, int]  # (row, col) on the dungeon grid
Pair = tuple[int, int]  # two rooms (indices in order of creation), the smaller first: one link


class PathEnds(NamedTuple):
    """The rooms the main path fixes: the start, the boss room (last before the goal) and the goal."""

    start: int
    boss: int
    goal: int


# Shares of a template for the labels of an ordinary room, drawn in this order.
_LABEL_SHARES: tuple[tuple[RoomLabel, str], ...] = (
    (RoomLabel.ENEMIES, "enemy_share"),
    (RoomLabel.PUZZLE, "puzzle_share"),
    (RoomLabel.ITEM, "item_room_share"),
    (RoomLabel.MINIBOSS, "miniboss_share"),
)


class _Grid:
    """Rooms on slots while a layout is being built: room k is the k-th added; `links` maps each linked pair
    to its door codes (filled in by `_lock_doors`; a stair link carries `DoorCode.STAIR` from the start)."""

    def __init__(self, rng: random.Random, max_extent: int) -> None:
        self.rng = rng
        self.max_extent = max_extent
        self.slots: list[Slot] = []
        self.taken: dict[Slot, int] = {}
        self.links: dict[Pair, set[str]] = {}

    def add(self, slot: Slot, parent: int | None) -> int:
        room = len(self.slots)
        self.slots.append(slot)
        self.taken[slot] = room
        if parent is not None:
            self.links[(parent, room)] = set()
        return room

    def _fits(self, slot: Slot) -> bool:
        """A room at `slot` keeps the rooms within `max_extent` rows and columns."""
        for axis in (0, 1):
            values = [s[axis] for s in self.slots]
            if max(max(values), slot[axis]) - min(min(values), slot[axis]) >= self.max_extent:
                return False
        return True

    def free_around(self, room: int) -> list[Slot]:
        r, c = self.slots[room]
        around = [(r + dr, c + dc) for dr, dc in SIDE_OFFSETS]
        return [slot for slot in around if slot not in self.taken and self._fits(slot)]

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

    def adjacent(self, a: int, b: int) -> bool:
        """Rooms `a` and `b` sit on neighbouring slots."""
        (ra, ca), (rb, cb) = self.slots[a], self.slots[b]
        return abs(ra - rb) + abs(ca - cb) == 1

    def hops(self, src: int, dst: int) -> int:
        """Links on the shortest way from `src` to `dst` (the room count when there is none)."""
        adj: dict[int, list[int]] = {}
        for a, b in self.links:
            adj.setdefault(a, []).append(b)
            adj.setdefault(b, []).append(a)
        dist, queue = {src: 0}, [src]
        for u in queue:
            for v in adj.get(u, ()):
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        return dist.get(dst, len(self.slots))


def sample_layout(seed: int, rooms: int | None = None, config: SamplerConfig = DEFAULT_SAMPLER) -> Layout:
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
    if rooms is None:
        jitter = rng.uniform(1 - config.rooms_jitter, 1 + config.rooms_jitter)
        rooms = max(MIN_ROOMS, round(template.rooms * jitter))
    return _build(rng, template, rooms, config, seed)


def layout_from_template(template: Template, seed: int, config: SamplerConfig = DEFAULT_SAMPLER) -> Layout:
    """A seeded layout that follows `template` itself (its room count exactly): the decoder of
    `hmolqd.illuminate.genome`, which writes the template's numbers as the knobs of a search."""
    if template.rooms < MIN_ROOMS:
        raise ValueError(f"layout_from_template: rooms must be >= {MIN_ROOMS}, got {template.rooms}")
    return _build(random.Random(seed), template, template.rooms, config, seed)


def _build(rng: random.Random, template: Template, n: int, config: SamplerConfig, seed: int) -> Layout:
    max_extent = max(4, math.ceil(math.sqrt(2 * n)))
    for _ in range(config.attempts):
        grid = _Grid(rng, max_extent)
        ends = _grow(grid, template, n)
        if ends is not None:
            source = f"sampled (seed {seed}, template {template.name}, {n} rooms)"
            return _finish(grid, ends, template, config, source, seed)
    raise LayoutError(
        f"sample_layout: no layout of {n} rooms within a {max_extent}x{max_extent} grid "
        f"after {config.attempts} tries (seed {seed})"
    )


def _grow(grid: _Grid, t: Template, n: int) -> PathEnds | None:
    """Steps 1-3 of the module docstring on an empty `grid`; None when a walk got stuck (the caller retries)."""
    ends = _main_path(grid, t, n)
    if ends is None or not _add_branches(grid, t, n, ends):
        return None
    goal_distance = grid.hops(ends.start, ends.goal)
    _add_loops(grid, round(t.cycle_rate * n), ends, goal_distance)
    _add_stairs(grid, round(t.stair_rate * n), ends, goal_distance)
    return ends


def _main_path(grid: _Grid, t: Template, n: int) -> PathEnds | None:
    """Step 1: the start, then a walk to the goal; None when the walk got stuck before its length."""
    start = grid.add((0, 0), None)
    path_len = min(n - 1, max(3, round(t.start_goal_ratio * n)))
    path = [start] + grid.walk(start, path_len)
    if len(path) != path_len + 1:
        return None
    return PathEnds(start, boss=path[-2], goal=path[-1])


def _add_branches(grid: _Grid, t: Template, n: int, ends: PathEnds) -> bool:
    """Step 2: side branches (as many as the template's dead ends ask for) up to `n` rooms; False when stuck."""
    left = n - len(grid.slots)
    branches = min(left, max(1 if left else 0, round(t.dead_share * n) - 2))
    lengths = [1] * branches
    for _ in range(left - branches):
        lengths[grid.rng.randrange(branches)] += 1
    for length in lengths:
        while length:
            hosts = [r for r in range(len(grid.slots)) if r not in ends and grid.free_around(r) and grid.degree(r) < 4]
            if not hosts:
                return False
            length -= len(grid.walk(grid.rng.choice(hosts), length))
    return True


def _add_loops(grid: _Grid, loops: int, ends: PathEnds, goal_distance: int) -> None:
    """Step 3a: up to `loops` links between neighbouring ordinary rooms. A loop keeps dead ends dead and does
    not shorten the way to the goal (both measured after loops)."""
    n = len(grid.slots)
    pairs = [
        (a, b)
        for a in range(n)
        for b in range(a + 1, n)
        if a not in ends and b not in ends and (a, b) not in grid.links and grid.adjacent(a, b)
    ]
    grid.rng.shuffle(pairs)
    for a, b in pairs:
        if loops and 1 < grid.degree(a) < 4 and 1 < grid.degree(b) < 4:
            grid.links[(a, b)] = set()
            if grid.hops(ends.start, ends.goal) < goal_distance:
                del grid.links[(a, b)]
            else:
                loops -= 1


def _add_stairs(grid: _Grid, stairs: int, ends: PathEnds, goal_distance: int) -> None:
    """Step 3b: up to `stairs` stair links, each between two ordinary rooms that are not neighbours and have
    no stair link yet, that do not shorten the way to the goal; 50 draws per stair link at most."""
    ordinary = [r for r in range(len(grid.slots)) if r not in ends]
    used: set[int] = set()
    for _ in range(50 * stairs):
        if not stairs or len(ordinary) < 2:
            break
        a, b = sorted(grid.rng.sample(ordinary, 2))
        if grid.adjacent(a, b) or a in used or b in used:
            continue
        grid.links[(a, b)] = {DoorCode.STAIR.value}
        if grid.hops(ends.start, ends.goal) < goal_distance:
            del grid.links[(a, b)]
            continue
        used |= {a, b}
        stairs -= 1


def _finish(grid: _Grid, ends: PathEnds, t: Template, config: SamplerConfig, source: str, seed: int) -> Layout:
    """Steps 4-5: labels and locks, then the Layout."""
    n = len(grid.slots)
    labels = _label_rooms(grid.rng, t, n, ends)
    codes = _lock_doors(grid, ends, t, config)
    _place_keys(grid.rng, ends, codes, labels)
    links = tuple(
        Link(
            a,
            b,
            direction_kind(frozenset(c)),
            direction_kind(frozenset(c)),
            frozenset(c),
            DoorCode.STAIR in c,
        )
        for (a, b), c in sorted(codes.items())
    )
    assert all(NO_PASSAGE not in (link.kind_ab, link.kind_ba) for link in links)
    return Layout(
        name=f"sampled_{seed}",
        source=source,
        rooms=tuple(Room(i, frozenset(labels[i])) for i in range(n)),
        links=links,
        start=ends.start,
        goal=ends.goal,
        boss=ends.boss,
        slots=dict(enumerate(grid.slots)),
    )


def _label_rooms(rng: random.Random, t: Template, n: int, ends: PathEnds) -> list[set[str]]:
    """Step 4: the start, boss and goal labels; each ordinary room draws each label with the template's share.
    Labels (and door codes) are kept as the plain strings of the graph files (`.value`), as `Room` holds them."""
    labels: list[set[str]] = [set() for _ in range(n)]
    labels[ends.start].add(RoomLabel.START.value)
    labels[ends.boss] |= {RoomLabel.BOSS.value, RoomLabel.ENEMIES.value}
    labels[ends.goal].add(RoomLabel.GOAL.value)
    for room in range(n):
        if room in ends:
            continue
        for label, share in _LABEL_SHARES:
            if rng.random() < getattr(t, share):
                labels[room].add(label.value)
    return labels


def _lock_doors(grid: _Grid, ends: PathEnds, t: Template, config: SamplerConfig) -> dict[Pair, set[str]]:
    """Step 5 before the keys: each link's door codes (key, key item and boss-key locks, soft and bombable)."""
    pairs = sorted(grid.links)
    codes = {pair: set(grid.links[pair]) for pair in pairs}
    boss_pair = next(p for p in pairs if ends.boss in p and ends.goal not in p)
    free = [p for p in pairs if DoorCode.STAIR not in codes[p] and p != boss_pair and ends.goal not in p]
    grid.rng.shuffle(free)
    # The boss-key door counts among the locked doors, so it takes the place of one key-locked door.
    n_key = max(0, round(t.key_share * len(pairs)) - int(config.boss_key))
    n_item = round(t.item_share * len(pairs))
    for p in free[:n_key]:
        codes[p].add(DoorCode.KEY_LOCKED.value)
    for p in free[n_key : n_key + n_item]:
        codes[p].add(DoorCode.ITEM_LOCKED.value)
    if config.boss_key:
        codes[boss_pair].add(DoorCode.BOSS_LOCKED.value)
    for p in free[n_key + n_item :]:
        roll = grid.rng.random()
        if roll < t.soft_share:
            codes[p].add(DoorCode.SOFT_LOCKED.value)
        elif roll < t.soft_share + t.bomb_share:
            codes[p].add(DoorCode.BOMBABLE.value)
    return codes


def _region(start: int, codes: dict[Pair, set[str]], closed: set[Pair]) -> set[int]:
    """Rooms reached from `start` over the links of `codes` except those in `closed`."""
    region, queue = {start}, [start]
    while queue:
        u = queue.pop()
        for a, b in codes:
            if u in (a, b) and (a, b) not in closed:
                v = b if u == a else a
                if v not in region:
                    region.add(v)
                    queue.append(v)
    return region


def _place_keys(rng: random.Random, ends: PathEnds, codes: dict[Pair, set[str]], labels: list[set[str]]) -> None:
    """Walk from the start; each locked door met gets its key (small key, key item or boss key: the room label of
    the door's letter) in a room already reached, not the start, boss or goal room. Updates `codes` and `labels`
    in place; a door whose key finds no room stays unlocked."""
    locks = {p: c & LOCK_CODES for p, c in codes.items() if c & LOCK_CODES}
    opened: set[Pair] = set()
    while True:
        region = _region(ends.start, codes, set(locks) - opened)
        frontier = sorted(p for p in locks if p not in opened and (p[0] in region) != (p[1] in region))
        if not frontier:
            return
        door = rng.choice(frontier)
        need = next(iter(locks[door]))
        holders = [r for r in sorted(region) if r not in ends and not labels[r] & LOCK_CODES]
        if need == DoorCode.KEY_LOCKED or not any(need in labels[r] for r in region):
            if not holders:  # no room left to hold the key: the door stays unlocked
                codes[door] -= {need}
                del locks[door]
                continue
            labels[rng.choice(holders)].add(need)
        opened.add(door)
