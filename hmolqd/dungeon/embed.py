"""Put a layout on the slot grid: every room a slot, every link a door between neighbouring slots or a stair link.

Slots are (row, col) of the VGLC text map (`hmolqd.data.vglc.RoomMeta`): the room above a slot is row - 1
(its text *top* side), below row + 1 (*bottom*), left col - 1, right col + 1, in `tiles.SIDES` order.

A link whose rooms end up on neighbouring slots becomes a door on the facing sides of both rooms; any
other link becomes a stair link (both rooms get stairs), as the game does for its underground passages.
Links labelled `s` are always stair links. A room has at most 4 door sides and `max_stair_links` stair
links. Rooms that happen to be neighbours without a link get no door between them (a wall).

The search is a seeded greedy placement with restarts: rooms are placed one at a time next to their
already-placed neighbours, choosing the free slot that turns the most links into doors and keeps free
slots around rooms that still wait for neighbours; the attempt with the fewest stair links (then the
smallest grid) wins. A layout that already carries slots (sampled, or read from a .dot with slot
attributes) is checked and used as it is.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from hmolqd.data.tiles import SIDES
from hmolqd.dungeon.layout import Layout, LayoutError

# Slot offset of the neighbour on each side, in tiles.SIDES order (top, bottom, left, right).
SIDE_OFFSETS: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
OPPOSITE: tuple[int, ...] = (1, 0, 3, 2)  # index of the facing side
if len(SIDE_OFFSETS) != len(SIDES):
    raise RuntimeError("SIDE_OFFSETS must follow tiles.SIDES")


class EmbeddingError(LayoutError):
    """A layout cannot be put on the grid; the message names the graph and the room."""


@dataclass(frozen=True)
class Embedding:
    """`slots`: room id -> (row, col), rows and cols from 0. `door_links` / `stair_links`: indices into
    `Layout.links`. `doors`: room id -> door flags in SIDES order; `stairs`: room id -> has a stair link."""

    slots: dict[int, tuple[int, int]]
    door_links: tuple[int, ...]
    stair_links: tuple[int, ...]
    doors: dict[int, tuple[bool, bool, bool, bool]]
    stairs: dict[int, bool]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the smallest grid holding every slot."""
        return (max(r for r, _ in self.slots.values()) + 1, max(c for _, c in self.slots.values()) + 1)


def side_between(a: tuple[int, int], b: tuple[int, int]) -> int | None:
    """Index in SIDES of the side of slot `a` that faces slot `b`, or None when they are not neighbours."""
    delta = (b[0] - a[0], b[1] - a[1])
    return SIDE_OFFSETS.index(delta) if delta in SIDE_OFFSETS else None


def finish_embedding(layout: Layout, slots: dict[int, tuple[int, int]], max_stair_links: int) -> Embedding:
    """Classify links for fixed slots (normalised to start at 0) and check the limits; errors name the room."""
    min_r = min(r for r, _ in slots.values())
    min_c = min(c for _, c in slots.values())
    slots = {room: (r - min_r, c - min_c) for room, (r, c) in slots.items()}
    taken: dict[tuple[int, int], int] = {}
    for room in layout.rooms:
        if room.id not in slots:
            raise EmbeddingError(f"graph {layout.source}: node {room.id} has no slot")
        slot = slots[room.id]
        if slot in taken:
            raise EmbeddingError(
                f"graph {layout.source}: nodes {taken[slot]} and {room.id} share slot {slot}; a slot holds one room"
            )
        taken[slot] = room.id
    doors = {room.id: [False] * len(SIDES) for room in layout.rooms}
    stair_count = {room.id: 0 for room in layout.rooms}
    door_links, stair_links = [], []
    for index, link in enumerate(layout.links):
        side = None if link.stair else side_between(slots[link.a], slots[link.b])
        if side is None:
            stair_links.append(index)
            stair_count[link.a] += 1
            stair_count[link.b] += 1
        else:
            door_links.append(index)
            doors[link.a][side] = True
            doors[link.b][OPPOSITE[side]] = True
    worst = max(stair_count, key=lambda room: (stair_count[room], -room))
    if stair_count[worst] > max_stair_links:
        raise EmbeddingError(
            f"graph {layout.source}: node {worst} needs {stair_count[worst]} stair links in this placement; "
            f"a room has at most {max_stair_links} (DungeonConfig.max_stair_links)"
        )
    return Embedding(
        slots=slots,
        door_links=tuple(door_links),
        stair_links=tuple(stair_links),
        doors={room: tuple(flags) for room, flags in doors.items()},  # type: ignore[misc]
        stairs={room: count > 0 for room, count in stair_count.items()},
    )


def check_degrees(layout: Layout, max_stair_links: int) -> None:
    """Rooms with more links than 4 door sides + `max_stair_links` stair links cannot be embedded."""
    degree = {room.id: 0 for room in layout.rooms}
    forced = {room.id: 0 for room in layout.rooms}
    for link in layout.links:
        for end in (link.a, link.b):
            degree[end] += 1
            forced[end] += link.stair
    for room in layout.rooms:
        if degree[room.id] > len(SIDES) + max_stair_links:
            raise EmbeddingError(
                f"graph {layout.source}: node {room.id} has {degree[room.id]} neighbours; a room has at most "
                f"{len(SIDES)} door sides and {max_stair_links} stair links (DungeonConfig.max_stair_links)"
            )
        if forced[room.id] > max_stair_links:
            raise EmbeddingError(
                f"graph {layout.source}: node {room.id} has {forced[room.id]} links labelled 's' (stairs); "
                f"a room has at most {max_stair_links} stair links (DungeonConfig.max_stair_links)"
            )


def _attempt(layout: Layout, rng: random.Random) -> dict[int, tuple[int, int]]:
    """One greedy placement (module docstring) -> slots, not yet checked against the limits."""
    adj: dict[int, set[int]] = {room.id: set() for room in layout.rooms}
    stair_adj: dict[int, set[int]] = {room.id: set() for room in layout.rooms}
    for link in layout.links:
        (stair_adj if link.stair else adj)[link.a].add(link.b)
        (stair_adj if link.stair else adj)[link.b].add(link.a)
    slots = {layout.start: (0, 0)}
    taken = {(0, 0): layout.start}
    tiebreak = {room.id: rng.random() for room in layout.rooms}

    def free_around(slot: tuple[int, int]) -> list[tuple[int, int]]:
        return [(slot[0] + dr, slot[1] + dc) for dr, dc in SIDE_OFFSETS if (slot[0] + dr, slot[1] + dc) not in taken]

    def waiting(room: int) -> int:  # neighbours of a placed room that still need a slot beside it
        return sum(1 for v in adj[room] if v not in slots)

    while len(slots) < len(layout.rooms):
        frontier = [v for v in adj if v not in slots and adj[v] & slots.keys()]
        if not frontier:  # the rest hangs on stair links only
            frontier = [v for v in stair_adj if v not in slots and (stair_adj[v] | adj[v]) & slots.keys()]
        v = max(frontier, key=lambda room: (len(adj[room] & slots.keys()), tiebreak[room]))
        placed_nbrs = [u for u in adj[v] if u in slots]
        candidates = {slot for u in placed_nbrs for slot in free_around(slots[u])}
        if not candidates:  # no free slot beside any placed neighbour: a stair link, placed nearby
            anchor = slots[next(iter(placed_nbrs))] if placed_nbrs else slots[next(iter(stair_adj[v] & slots.keys()))]
            candidates = {_nearest_free(anchor, taken)}

        def score(slot: tuple[int, int], v: int = v) -> tuple[float, float]:
            """How good `slot` is for room `v` (bound here: `max` calls this within the loop's step)."""
            around = [taken.get((slot[0] + dr, slot[1] + dc)) for dr, dc in SIDE_OFFSETS]
            doors_made = sum(1 for u in around if u is not None and u in adj[v])
            # Filling the last free slot of a room that still waits for neighbours forces a stair link there.
            blocks = sum(
                1 for u in around if u is not None and u not in adj[v] and waiting(u) >= len(free_around(slots[u]))
            )
            room_left = len(free_around(slot)) - (len(adj[v]) - doors_made)
            spread = abs(slot[0]) + abs(slot[1])
            return (3.0 * doors_made - 2.0 * blocks + 0.5 * min(room_left, 0) - 0.05 * spread, rng.random())

        slot = max(sorted(candidates), key=score)
        slots[v] = slot
        taken[slot] = v
    return slots


def _nearest_free(anchor: tuple[int, int], taken: dict[tuple[int, int], int]) -> tuple[int, int]:
    """The free slot closest to `anchor` (breadth first over the grid)."""
    seen, queue = {anchor}, deque([anchor])
    while queue:
        slot = queue.popleft()
        if slot not in taken:
            return slot
        for dr, dc in SIDE_OFFSETS:
            nxt = (slot[0] + dr, slot[1] + dc)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    raise AssertionError("an infinite grid always has a free slot")


def embed(layout: Layout, seed: int = 0, attempts: int = 64, max_stair_links: int = 2) -> Embedding:
    """Embed `layout` on the grid (module docstring); deterministic for a seed. Raises `EmbeddingError`."""
    check_degrees(layout, max_stair_links)
    if layout.slots is not None:
        return finish_embedding(layout, dict(layout.slots), max_stair_links)
    if attempts < 1:
        raise ValueError(f"embed: attempts must be >= 1 (DungeonConfig.embed_attempts), got {attempts}")
    rng = random.Random(seed)
    best: tuple[tuple[int, int], Embedding] | None = None
    last_error: EmbeddingError | None = None
    for _ in range(attempts):
        try:
            found = finish_embedding(layout, _attempt(layout, rng), max_stair_links)
        except EmbeddingError as err:
            last_error = err
            continue
        rows, cols = found.shape
        key = (len(found.stair_links), rows * cols)
        if best is None or key < best[0]:
            best = (key, found)
    if best is None:
        assert last_error is not None
        raise EmbeddingError(f"{last_error} (best of {attempts} placements, DungeonConfig.embed_attempts)")
    return best[1]
