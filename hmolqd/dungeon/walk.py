"""Tile-level walkability of a whole dungeon, and whether the doors of neighbouring rooms agree.

Inside a room the player walks 4-connected over walkable tiles (F D S M O, as in
`hmolqd.data.playability`). Between rooms there are two kinds of passage:

- **doors through the wall**: two rooms on neighbouring slots connect where a door tile of one faces a
  door tile of the other across the wall between them, in the same position along that wall (the same
  text column for a top/bottom pair, the same text row for a left/right pair). In the real maps a door is
  the inner band row (D at row 14 of the upper room, row 1 of the lower one) with the outer wall row
  between; a door whose neighbour has no door opposite, or has it elsewhere along the wall, leads nowhere;
- **stair links** (`Embedding.stair_links`): every stair tile S of one room connects to every stair tile of
  the other. A room without a stair tile cannot use its stair link.

The doors of a dungeon **agree** when every pair of neighbouring slots has a door on both facing sides if the
layout links the two rooms there (a door link of the embedding), and on neither side otherwise.

The player starts in the start room, in its largest walkable region that holds a door tile (or a stair
tile, or the largest region when the room has neither). The dungeon is **walkable** when that start
reaches at least one walkable tile of every room, the goal included. Locks are not walked here: that is
the mission check (`hmolqd.dungeon.mission`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import BAND_WIDTH, DOOR, ROOM_H, ROOM_W, SCREEN_SIDE, SIDES, STAIR, door_sides
from hmolqd.dungeon.embed import OPPOSITE, SIDE_OFFSETS, Embedding
from hmolqd.dungeon.layout import Layout

# The door region of each side (rows, cols of the 16x11 text grid), in SIDES order, and along which axis
# the position of a door is read: for top/bottom it is the column, for left/right the row.
_BAND: tuple[tuple[slice, slice], ...] = (
    (slice(0, BAND_WIDTH), slice(2, ROOM_W - 2)),  # top: rows 0-1, columns 2-8
    (slice(ROOM_H - BAND_WIDTH, ROOM_H), slice(2, ROOM_W - 2)),  # bottom: rows 14-15
    (slice(2, ROOM_H - 2), slice(0, BAND_WIDTH)),  # left: rows 2-13, columns 0-1
    (slice(2, ROOM_H - 2), slice(ROOM_W - BAND_WIDTH, ROOM_W)),  # right: columns 9-10
)
_ALONG_ROWS = (False, False, True, True)  # position along the wall is the row index (left/right)


@dataclass(frozen=True)
class WalkResult:
    walkable: bool  # the start reaches every room (and so the goal)
    goal_reached: bool
    reached: int  # rooms reached from the start
    rooms: int
    unreached: tuple[int, ...]  # room ids not reached
    # every pair of neighbouring slots has doors on both facing sides where linked, on neither elsewhere
    doors_agree: bool
    disagreements: tuple[str, ...]  # e.g. "room 3 has a south door, room 7 has no north door" (sides as on screen)
    misaligned: tuple[str, ...]  # facing doors that do not line up along the wall

    def to_json(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def door_positions(rooms: torch.Tensor) -> list[torch.Tensor]:
    """`(n, 16, 11)` rooms -> per side (SIDES order) `(n, L)` bool: a door tile at that position along the wall
    (L = 7 columns for top/bottom, 12 rows for left/right)."""
    out = []
    for (rows, cols), along_rows in zip(_BAND, _ALONG_ROWS):
        band = rooms[:, rows, cols] == DOOR  # (n, r, c)
        out.append(band.any(2) if along_rows else band.any(1))
    return out


class _Union:
    """Union-find over the walkable components of all rooms, each one (room index, component label)."""

    def __init__(self) -> None:
        self.parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(self, x: tuple[int, int]) -> tuple[int, int]:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def join(self, a: tuple[int, int], b: tuple[int, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


@dataclass(frozen=True)
class Passage:
    """One way between two walkable components of two rooms: a pair of facing door tiles or a stair pair.

    `i` / `j`: room indices (layout.rooms order); `label_i` / `label_j`: their `walkable_components` labels;
    `tile_i` / `tile_j`: (row, col) of the door or stair tile on each end; `link`: the index into
    `layout.links` of the link this passage serves, or None for facing doors the layout does not link.
    """

    i: int
    label_i: int
    tile_i: tuple[int, int]
    j: int
    label_j: int
    tile_j: tuple[int, int]
    link: int | None


@dataclass(frozen=True)
class Passages:
    passages: tuple[Passage, ...]
    disagreements: tuple[str, ...]
    misaligned: tuple[str, ...]


class _Tile(NamedTuple):
    """One door or stair tile at the end of a passage: room index (layout.rooms order), component label, (row, col)."""

    room: int
    label: int
    at: tuple[int, int]


class _Wall(NamedTuple):
    """The wall between two neighbouring rooms (layout.rooms indices): `i` has it on `side`, `j` on the opposite."""

    i: int
    j: int
    side: int

    @property
    def opposite(self) -> int:
        return OPPOSITE[self.side]


class _DoorEnd(NamedTuple):
    """One room's side of a wall: its id, the side (SIDES order) and whether its tiles put a door there."""

    room_id: int
    side: int
    has_door: bool

    @property
    def on_screen(self) -> str:
        return SCREEN_SIDE[SIDES[self.side]]


@dataclass(frozen=True)
class TileView:
    """Rooms `(n, 16, 11)` long (layout.rooms order), their `walkable_components` labels and their passages."""

    rooms: torch.Tensor
    labels: torch.Tensor
    found: Passages


def tile_view(
    layout: Layout, embedding: Embedding, rooms: torch.Tensor, labels: torch.Tensor | None, found: Passages | None
) -> TileView:
    """`rooms` as long, with their labels and `tile_passages`: those given (already computed for a larger
    batch) or computed here. The one preparation that `walk_dungeon` and `hmolqd.dungeon.cells` share."""
    rooms = rooms.long()
    labels = walkable_components(rooms) if labels is None else labels  # (n, 16, 11), 0 = not walkable
    found = tile_passages(layout, embedding, rooms, labels) if found is None else found
    return TileView(rooms, labels, found)


def _door_tiles(rooms: list, labels: list, room: int, side: int, k: int) -> list[_Tile]:
    """The door tiles of room `room` at position `k` along `side` (`rooms`, `labels`: the `(n, 16, 11)` tensors as
    nested lists, read tile by tile)."""
    rows, cols = _BAND[side]
    out = []
    for r in range(rows.start, rows.stop):
        for c in range(cols.start, cols.stop):
            along = r - rows.start if _ALONG_ROWS[side] else c - cols.start
            if along == k and rooms[room][r][c] == DOOR:
                out.append(_Tile(room, labels[room][r][c], (r, c)))
    return out


def _walls(layout: Layout, embedding: Embedding) -> list[_Wall]:
    """Every wall between rooms on neighbouring slots, once: each room's bottom and right walls."""
    at_slot = {embedding.slots[room.id]: i for i, room in enumerate(layout.rooms)}
    walls = []
    for (r, c), i in at_slot.items():
        for side in (1, 3):  # bottom and right: each neighbouring pair once
            dr, dc = SIDE_OFFSETS[side]
            j = at_slot.get((r + dr, c + dc))
            if j is not None:
                walls.append(_Wall(i, j, side))
    return walls


def _disagreement(near: _DoorEnd, far: _DoorEnd, linked: bool) -> str | None:
    """Why the doors on the two sides of one wall do not agree with each other or with the layout; None if they do."""
    if near.has_door != far.has_door:
        has, lacks = (near, far) if near.has_door else (far, near)
        return f"room {has.room_id} has a {has.on_screen} door, room {lacks.room_id} has no {lacks.on_screen} door"
    if near.has_door == linked:
        return None
    if linked:
        return f"rooms {near.room_id} and {far.room_id} are linked but have no doors on the wall between them"
    return f"rooms {near.room_id} and {far.room_id} have doors on the wall between them but are not linked"


def _stair_tiles(rooms: torch.Tensor, labels: torch.Tensor, room: int) -> list[_Tile]:
    return [_Tile(room, int(labels[room, r, c]), (r, c)) for r, c in (rooms[room] == STAIR).nonzero().tolist()]


def tile_passages(layout: Layout, embedding: Embedding, rooms: torch.Tensor, labels: torch.Tensor) -> Passages:
    """Every passage between rooms (module docstring: facing door tiles, stair links), with the door
    disagreements and misalignments. `rooms`, `labels`: `(n, 16, 11)` in `layout.rooms` order. The one
    definition of where two rooms connect at tile level: `walk_dungeon` and `hmolqd.dungeon.play` use it."""
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    link_of = {frozenset((layout.links[k].a, layout.links[k].b)): k for k in embedding.door_links}
    positions = door_positions(rooms)
    sides = door_sides(rooms)  # (n, 4)
    out: list[Passage] = []
    disagreements, misaligned = [], []
    room_list, label_list = rooms.tolist(), labels.tolist()
    for wall in _walls(layout, embedding):
        near = _DoorEnd(layout.rooms[wall.i].id, wall.side, bool(sides[wall.i, wall.side]))
        far = _DoorEnd(layout.rooms[wall.j].id, wall.opposite, bool(sides[wall.j, wall.opposite]))
        linked = embedding.doors[near.room_id][wall.side]
        problem = _disagreement(near, far, linked)
        if problem is not None:
            disagreements.append(problem)
        shared = positions[wall.side][wall.i] & positions[wall.opposite][wall.j]  # (L,)
        if near.has_door and far.has_door and not shared.any():
            misaligned.append(
                f"room {near.room_id} {near.on_screen} door and room {far.room_id} {far.on_screen} door do not line up"
            )
        link = link_of.get(frozenset((near.room_id, far.room_id))) if linked else None
        for k in shared.nonzero().flatten().tolist():
            here = _door_tiles(room_list, label_list, wall.i, wall.side, k)
            there = _door_tiles(room_list, label_list, wall.j, wall.opposite, k)
            out += [Passage(a.room, a.label, a.at, b.room, b.label, b.at, link) for a in here for b in there]
    for link_index in embedding.stair_links:
        link = layout.links[link_index]
        ends_a, ends_b = (_stair_tiles(rooms, labels, index[room_id]) for room_id in (link.a, link.b))
        out += [Passage(a.room, a.label, a.at, b.room, b.label, b.at, link_index) for a in ends_a for b in ends_b]
    return Passages(tuple(out), tuple(disagreements), tuple(misaligned))


def walk_dungeon(
    layout: Layout,
    embedding: Embedding,
    rooms: torch.Tensor,
    labels: torch.Tensor | None = None,
    found: Passages | None = None,
) -> WalkResult:
    """Walk `rooms` `(n, 16, 11)` (in `layout.rooms` order, at `embedding.slots`) from the start (module docstring).

    `labels` `(n, 16, 11)`: the rooms' `walkable_components`, when already computed for a larger batch;
    `found`: their `tile_passages`, when already computed (with those labels).
    """
    n = len(layout.rooms)
    if rooms.dim() != 3 or tuple(rooms.shape) != (n, ROOM_H, ROOM_W):
        raise ValueError(
            f"walk_dungeon {layout.name}: expected rooms ({n}, {ROOM_H}, {ROOM_W}), got {tuple(rooms.shape)}"
        )
    view = tile_view(layout, embedding, rooms, labels, found)
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    union = _Union()
    for p in view.found.passages:
        union.join((p.i, p.label_i), (p.j, p.label_j))
    start = index[layout.start]
    root = union.find((start, start_label(view.rooms[start], view.labels[start])))
    reached_rooms = {i for i in range(n) if _reaches(union, root, i, view.labels[i])}
    unreached = tuple(layout.rooms[i].id for i in range(n) if i not in reached_rooms)
    return WalkResult(
        walkable=not unreached,
        goal_reached=index[layout.goal] in reached_rooms,
        reached=len(reached_rooms),
        rooms=n,
        unreached=unreached,
        doors_agree=not view.found.disagreements,
        disagreements=view.found.disagreements,
        misaligned=view.found.misaligned,
    )


def _reaches(union: _Union, root: tuple[int, int], room: int, labels: torch.Tensor) -> bool:
    """Is some walkable component of room `room` (its `(16, 11)` labels) joined to the start's component `root`?"""
    return any(union.find((room, int(x))) == root for x in labels.unique().tolist() if x)


def start_label(room: torch.Tensor, labels: torch.Tensor) -> int:
    """Component label where the player starts in the start room (module docstring); 0 if nothing is walkable."""
    walkable = labels[labels > 0]
    if walkable.numel() == 0:
        return 0
    for tile in (DOOR, STAIR):
        held = labels[(room == tile) & (labels > 0)]
        if held.numel():
            values, counts = torch.unique(labels[torch.isin(labels, held)], return_counts=True)
            return int(values[counts.argmax()])
    values, counts = torch.unique(walkable, return_counts=True)
    return int(values[counts.argmax()])
