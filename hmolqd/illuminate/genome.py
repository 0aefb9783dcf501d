"""Layouts as a searchable genome: a vector of knobs in the unit box, decoded deterministically into a layout.

A genome is `len(KNOBS)` floats in [0, 1] (what `ribs` emitters mutate, with those bounds). Decoding scales
each knob to its range (`KNOBS`), writes the sampler's numbers into a `Template` and calls
`hmolqd.dungeon.sampler.layout_from_template` with the genome's seed (the last knob), then applies the
graph mutations the knobs count (`add_rooms`, `add_loops`, `move_locks`, `detour`), each from a generator
seeded by the genome seed:

- **add a room**: a new dead-end room on a free slot beside an ordinary room (not start, boss or goal),
  joined by an open door; it holds enemies with the enemy share;
- **add a loop**: an open door between two ordinary rooms on neighbouring slots that are not linked;
- **move a lock and its key**: the small-key lock of one door moves to an open door of two ordinary rooms;
  the move is kept only when the graph alone stays beatable (`hmolqd.dungeon.play.play_layout`);
- **a key behind a detour** (`detour`, 0-8 rooms, applied last): a chain of up to that many new rooms off an
  ordinary room of a shortest way from start to goal, a small key in its last room, and a key lock on a door
  of that way past the chain's room which no other way goes around (not locked before, no stair, not the
  goal's), so the player walks into the dead end for the key and back out: its backtracking grows by about the
  chain's length (the descriptor the search had the most trouble filling); kept only when the graph alone
  stays beatable, like a moved lock.

None of them can make a beatable layout unbeatable (added doors are open and two-way, a moved lock and a
detour's lock are checked), and the sampler builds beatable layouts by construction (keys before their locks),
so every decoded layout is beatable on its graph; the player checks it again on the tiles once the rooms are
made.
The `water` knob is not a layout number: it is the share of ordinary rooms asked of the room model with
water (`plan_genome`).

When the sampler cannot fit a walk of the asked length on its grid (extreme knobs), decoding retries with
seed + 1, + 2, then with the critical path and the loops halved; it is deterministic all the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from hmolqd.dungeon.build import DEFAULT_CONFIG, DungeonConfig, Plan, plan
from hmolqd.dungeon.codes import DoorCode, RoomLabel
from hmolqd.dungeon.embed import SIDE_OFFSETS
from hmolqd.dungeon.layout import Layout, Link, Room
from hmolqd.dungeon.play import play_layout
from hmolqd.dungeon.sampler import DEFAULT_SAMPLER, SamplerConfig, Template, layout_from_template


@dataclass(frozen=True)
class Knob:
    name: str
    low: float
    high: float
    integer: bool = False

    def value(self, unit: float) -> float:
        v = self.low + min(max(float(unit), 0.0), 1.0) * (self.high - self.low)
        return float(round(v)) if self.integer else v

    def unit(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


# The sampler's template numbers (`hmolqd.dungeon.sampler.Template`), the room-model request and the
# mutation counts; ranges cover the 18 real graphs (REAL_TEMPLATES) and reach past them (linear dungeons,
# very short critical paths, many keys): the search is to find what the real statistics alone do not give.
KNOBS: tuple[Knob, ...] = (
    Knob("rooms", 6, 70, integer=True),
    Knob("cycle_rate", 0.0, 0.4),  # loops per room
    Knob("dead_share", 0.0, 0.5),  # branchiness: rooms with one link
    Knob("start_goal_ratio", 0.05, 0.95),  # critical-path share
    Knob("key_share", 0.0, 0.5),  # links key-locked
    Knob("item_share", 0.0, 0.2),  # links locked by a key item
    Knob("soft_share", 0.0, 0.5),
    Knob("bomb_share", 0.0, 0.3),
    Knob("stair_rate", 0.0, 0.08),  # stair links per room
    Knob("enemy_share", 0.0, 1.0),
    Knob("puzzle_share", 0.0, 0.8),
    Knob("item_room_share", 0.0, 0.35),
    Knob("miniboss_share", 0.0, 0.25),
    Knob("water_share", 0.0, 0.6),  # ordinary rooms asked of the model with water
    Knob("add_rooms", 0, 4, integer=True),
    Knob("add_loops", 0, 4, integer=True),
    Knob("move_locks", 0, 3, integer=True),
    Knob("detour", 0, 8, integer=True),  # rooms of a dead-end detour to a key the way to the goal needs
    Knob("seed", 0, 2**31 - 1, integer=True),
)
KNOB_NAMES: tuple[str, ...] = tuple(k.name for k in KNOBS)
# The knobs that are the template's own numbers (all its fields but the name and the room count).
_TEMPLATE_KNOBS: tuple[str, ...] = tuple(f.name for f in fields(Template) if f.name not in ("name", "rooms"))
GENOME_DIM = len(KNOBS)


def knob_values(genome: np.ndarray) -> dict[str, float]:
    g = np.asarray(genome, dtype=np.float64).reshape(-1)
    if g.shape[0] != GENOME_DIM:
        raise ValueError(f"genome: expected {GENOME_DIM} knobs ({', '.join(KNOB_NAMES)}), got {g.shape[0]}")
    if not np.isfinite(g).all():
        raise ValueError("genome: every knob must be a finite number")
    return {k.name: k.value(u) for k, u in zip(KNOBS, g)}


def decode(genome: np.ndarray, config: SamplerConfig = DEFAULT_SAMPLER) -> Layout:
    """Genome -> beatable layout (module docstring); the same genome gives the same layout."""
    v = knob_values(genome)
    seed = int(v["seed"])
    template = Template(name="genome", rooms=int(v["rooms"]), **{name: v[name] for name in _TEMPLATE_KNOBS})
    tries = [(template, seed + k) for k in range(3)]
    tries.append(
        (replace(template, start_goal_ratio=template.start_goal_ratio / 2, cycle_rate=template.cycle_rate / 2), seed)
    )
    layout = None
    for t, s in tries:
        try:
            layout = layout_from_template(t, s, config)
            break
        except RuntimeError:  # no walk of that length fits the grid: the next try
            continue
    if layout is None:
        raise RuntimeError(f"genome: no layout for knobs {v}")
    rng = random.Random(seed ^ 0x5EED)
    for _ in range(int(v["add_rooms"])):
        layout = add_room(layout, rng, v["enemy_share"])
    for _ in range(int(v["add_loops"])):
        layout = add_loop(layout, rng)
    for _ in range(int(v["move_locks"])):
        layout = move_lock(layout, rng)
    layout = add_detour(layout, rng, int(v["detour"]), v["enemy_share"])
    return replace(layout, name=f"genome_{seed}", source=f"genome (seed {seed})")


def _ordinary(layout: Layout) -> list[int]:
    return [r.id for r in layout.rooms if r.id not in (layout.start, layout.goal, layout.boss)]


def add_room(layout: Layout, rng: random.Random, enemy_share: float) -> Layout:
    """A new dead-end room beside an ordinary room (module docstring); the layout as is when none fits."""
    assert layout.slots is not None
    taken = set(layout.slots.values())
    hosts = [
        (r, (layout.slots[r][0] + dr, layout.slots[r][1] + dc))
        for r in _ordinary(layout)
        for dr, dc in SIDE_OFFSETS
        if (layout.slots[r][0] + dr, layout.slots[r][1] + dc) not in taken
    ]
    degree = {r.id: 0 for r in layout.rooms}
    for link in layout.links:
        degree[link.a] += 1
        degree[link.b] += 1
    hosts = [(r, s) for r, s in hosts if degree[r] < 4]
    if not hosts:
        return layout
    host, slot = rng.choice(hosts)
    new = max(r.id for r in layout.rooms) + 1
    labels = frozenset({RoomLabel.ENEMIES.value}) if rng.random() < enemy_share else frozenset()
    return replace(
        layout,
        rooms=layout.rooms + (Room(new, labels),),
        links=layout.links + (Link(host, new, "open", "open"),),
        slots={**layout.slots, new: slot},
    )


def add_loop(layout: Layout, rng: random.Random) -> Layout:
    """An open door between two unlinked ordinary neighbours (module docstring); the layout as is when none."""
    assert layout.slots is not None
    at = {s: r for r, s in layout.slots.items()}
    linked = {(link.a, link.b) for link in layout.links}
    ordinary = set(_ordinary(layout))
    pairs = sorted(
        (min(a, b), max(a, b))
        for a in ordinary
        for dr, dc in SIDE_OFFSETS
        if (b := at.get((layout.slots[a][0] + dr, layout.slots[a][1] + dc))) is not None
        and b in ordinary
        and (min(a, b), max(a, b)) not in linked
    )
    if not pairs:
        return layout
    a, b = rng.choice(sorted(set(pairs)))
    links = tuple(sorted(layout.links + (Link(a, b, "open", "open"),), key=lambda link: (link.a, link.b)))
    return replace(layout, links=links)


def move_lock(layout: Layout, rng: random.Random) -> Layout:
    """Move one small-key lock to an open door between ordinary rooms, kept only if still beatable."""
    ordinary = set(_ordinary(layout))
    locked = [k for k, link in enumerate(layout.links) if link.kind_ab == "key"]
    free = [
        k
        for k, link in enumerate(layout.links)
        if link.kind_ab == "open" and link.kind_ba == "open" and not link.stair and {link.a, link.b} <= ordinary
    ]
    if not locked or not free:
        return layout
    src, dst = rng.choice(locked), rng.choice(free)
    links = list(layout.links)
    s, d = links[src], links[dst]
    links[src] = replace(s, kind_ab="open", kind_ba="open", labels=s.labels - {DoorCode.KEY_LOCKED})
    links[dst] = replace(d, kind_ab="key", kind_ba="key", labels=d.labels | {DoorCode.KEY_LOCKED.value})
    moved = replace(layout, links=tuple(links))
    return moved if play_layout(moved).beaten else layout


def _way(layout: Layout, skip: int = -1) -> list[int] | None:
    """The rooms of a shortest way from the start to the goal over the links but link `skip` (locks ignored;
    neighbours in id order), or None when there is none."""
    adj: dict[int, list[int]] = {r.id: [] for r in layout.rooms}
    for k, link in enumerate(layout.links):
        if k != skip:
            adj[link.a].append(link.b)
            adj[link.b].append(link.a)
    back: dict[int, int | None] = {layout.start: None}
    queue = [layout.start]
    for u in queue:
        for v in sorted(adj[u]):
            if v not in back:
                back[v] = u
                queue.append(v)
    if layout.goal not in back:
        return None
    way = [layout.goal]
    while (before := back[way[-1]]) is not None:
        way.append(before)
    return way[::-1]


def _bridges(layout: Layout, way: list[int]) -> list[tuple[int, int]]:
    """(position on `way`, link index) of the doors of the way to the goal that it cannot go around and that may
    take a key lock: not locked, no stair, not the goal's."""
    index = {(link.a, link.b): k for k, link in enumerate(layout.links)}
    steps = [(i, index[(min(way[i], way[i + 1]), max(way[i], way[i + 1]))]) for i in range(len(way) - 1)]
    return [
        (i, k)
        for i, k in steps
        if not layout.links[k].stair
        and not layout.links[k].locked
        and layout.goal not in way[i : i + 2]
        and _way(layout, skip=k) is None
    ]


def add_detour(layout: Layout, rng: random.Random, length: int, enemy_share: float) -> Layout:
    """A key behind a dead-end detour (module docstring): `length` new rooms in a chain off an ordinary room of
    the way to the goal, a small key in the last, a key lock on a door of the way past that room which the way
    cannot avoid; kept only if still beatable. The layout as is when `length` is 0 or nothing fits."""
    way = _way(layout) if length > 0 else None
    if way is None:
        return layout
    assert layout.slots is not None
    taken = set(layout.slots.values())

    def free(slot: tuple[int, int]) -> list[tuple[int, int]]:
        return [s for dr, dc in SIDE_OFFSETS if (s := (slot[0] + dr, slot[1] + dc)) not in taken]

    degree = {r.id: 0 for r in layout.rooms}
    for link in layout.links:
        degree[link.a] += 1
        degree[link.b] += 1
    ordinary = set(_ordinary(layout))
    hosts = [j for j, r in enumerate(way) if r in ordinary and degree[r] < 4 and free(layout.slots[r])]
    locks = [(i, k) for i, k in _bridges(layout, way) if hosts and hosts[0] <= i]
    if not locks:
        return layout
    i, k = rng.choice(locks)
    at = prev = way[rng.choice([j for j in hosts if j <= i])]
    rooms, links, slots = list(layout.rooms), list(layout.links), dict(layout.slots)
    for new in range(max(degree) + 1, max(degree) + 1 + length):
        around = free(slots[at])
        if not around:
            break
        slots[new] = rng.choice(around)
        taken.add(slots[new])
        rooms.append(Room(new, frozenset({RoomLabel.ENEMIES.value}) if rng.random() < enemy_share else frozenset()))
        links.append(Link(prev, new, "open", "open"))
        at = prev = new
    rooms[-1] = replace(rooms[-1], labels=rooms[-1].labels | {RoomLabel.KEY.value})
    door = links[k]
    links[k] = replace(door, kind_ab="key", kind_ba="key", labels=door.labels | {DoorCode.KEY_LOCKED.value})
    out = replace(layout, rooms=tuple(rooms), links=tuple(links), slots=slots)
    return out if play_layout(out).beaten else layout


def plan_genome(genome: np.ndarray, config: DungeonConfig = DEFAULT_CONFIG, seed: int = 0) -> Plan:
    """The plan of a decoded genome, asking the room model for water in `water_share` of the ordinary rooms
    (those without stairs: no real room has both)."""
    layout = decode(genome)
    p = plan(layout, config, seed=seed)
    if not config.request_attributes:
        return p
    share = knob_values(genome)["water_share"]
    rng = random.Random(int(knob_values(genome)["seed"]) ^ 0xA7E4)
    ordinary = set(_ordinary(layout))
    water = (
        torch.tensor([r.id in ordinary and rng.random() < share for r in layout.rooms], dtype=torch.bool) & ~p.stairs
    )
    # every room asks its water value (the plan's own request leaves water open outside stair rooms)
    asked = {k: v for k, v in p.asked.items() if k != "water"}
    return replace(p, attributes={**p.attributes, "water": water}, asked=asked)


def random_genomes(count: int, seed: int) -> np.ndarray:
    """`(count, GENOME_DIM)` uniform genomes (the initial population of the search)."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, GENOME_DIM))


def template_genomes(count: int, seed: int) -> np.ndarray:
    """`(count, GENOME_DIM)` genomes of the 18 real templates in turn (`REAL_TEMPLATES`), room counts jittered
    as `sample_layout` does, no mutations, water share and seed drawn: where today's generator samples."""
    from hmolqd.dungeon.sampler import REAL_TEMPLATES

    rng = np.random.default_rng(seed)
    jitter = DEFAULT_SAMPLER.rooms_jitter
    out = rng.uniform(0.0, 1.0, size=(count, GENOME_DIM))  # water share and seed keep these draws
    for row, k in enumerate(rng.permutation(max(count, len(REAL_TEMPLATES)))[:count] % len(REAL_TEMPLATES)):
        t = REAL_TEMPLATES[int(k)]
        values = {name: getattr(t, name) for name in _TEMPLATE_KNOBS}
        values["rooms"] = t.rooms * rng.uniform(1 - jitter, 1 + jitter)
        values.update(add_rooms=0, add_loops=0, move_locks=0, detour=0)
        for j, knob in enumerate(KNOBS):
            if knob.name in values:
                out[row, j] = min(max(knob.unit(values[knob.name]), 0.0), 1.0)
    return out
