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
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def join(self, a: int, b: int) -> None:
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


def _door_tiles(rooms: list, labels: list, room_i: int, side: int, k: int) -> list[tuple[int, int, int]]:
    """(label, row, col) of the door tiles of room `room_i` at position `k` along `side` (`rooms`, `labels`:
    the `(n, 16, 11)` tensors as nested lists, read tile by tile)."""
    rows, cols = _BAND[side]
    out = []
    for r in range(rows.start, rows.stop):
        for c in range(cols.start, cols.stop):
            along = r - rows.start if _ALONG_ROWS[side] else c - cols.start
            if along == k and rooms[room_i][r][c] == DOOR:
                out.append((labels[room_i][r][c], r, c))
    return out


def tile_passages(layout: Layout, embedding: Embedding, rooms: torch.Tensor, labels: torch.Tensor) -> Passages:
    """Every passage between rooms (module docstring: facing door tiles, stair links), with the door
    disagreements and misalignments. `rooms`, `labels`: `(n, 16, 11)` in `layout.rooms` order. The one
    definition of where two rooms connect at tile level: `walk_dungeon` and `hmolqd.dungeon.play` use it."""
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    at_slot = {embedding.slots[room.id]: i for i, room in enumerate(layout.rooms)}
    link_of = {frozenset((layout.links[k].a, layout.links[k].b)): k for k in embedding.door_links}
    positions = door_positions(rooms)
    sides = door_sides(rooms)  # (n, 4)
    out: list[Passage] = []
    disagreements, misaligned = [], []
    room_list, label_list = rooms.tolist(), labels.tolist()
    for (r, c), i in at_slot.items():
        for side in (1, 3):  # bottom and right: each neighbouring pair once
            dr, dc = SIDE_OFFSETS[side]
            j = at_slot.get((r + dr, c + dc))
            if j is None:
                continue
            opp = OPPOSITE[side]
            a_id, b_id = layout.rooms[i].id, layout.rooms[j].id
            got_a, got_b, linked = bool(sides[i, side]), bool(sides[j, opp]), embedding.doors[a_id][side]
            if got_a != got_b:
                has, lacks, s_has, s_lacks = (a_id, b_id, side, opp) if got_a else (b_id, a_id, opp, side)
                on, off = SCREEN_SIDE[SIDES[s_has]], SCREEN_SIDE[SIDES[s_lacks]]  # as on screen
                disagreements.append(f"room {has} has a {on} door, room {lacks} has no {off} door")
            elif got_a != linked:
                disagreements.append(
                    f"rooms {a_id} and {b_id} are linked but have no doors on the wall between them"
                    if linked
                    else f"rooms {a_id} and {b_id} have doors on the wall between them but are not linked"
                )
            shared = positions[side][i] & positions[opp][j]  # (L,)
            if sides[i, side] and sides[j, opp] and not shared.any():
                a_side, b_side = SCREEN_SIDE[SIDES[side]], SCREEN_SIDE[SIDES[opp]]
                misaligned.append(f"room {a_id} {a_side} door and room {b_id} {b_side} door do not line up")
            link = link_of.get(frozenset((a_id, b_id))) if linked else None
            for k in shared.nonzero().flatten().tolist():
                for la, ra, ca in _door_tiles(room_list, label_list, i, side, k):
                    for lb, rb, cb in _door_tiles(room_list, label_list, j, opp, k):
                        out.append(Passage(i, la, (ra, ca), j, lb, (rb, cb), link))
    for link_index in embedding.stair_links:
        link = layout.links[link_index]
        ends = []
        for room_id in (link.a, link.b):
            i = index[room_id]
            ends.append([(i, int(labels[i, r, c]), (r, c)) for r, c in (rooms[i] == STAIR).nonzero().tolist()])
        for i, la, ta in ends[0]:
            for j, lb, tb in ends[1]:
                out.append(Passage(i, la, ta, j, lb, tb, link_index))
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
    rooms = rooms.long()
    labels = walkable_components(rooms) if labels is None else labels  # (n, 16, 11), 0 = not walkable
    size = ROOM_H * ROOM_W + 1
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    found = tile_passages(layout, embedding, rooms, labels) if found is None else found
    union = _Union()
    for p in found.passages:
        union.join(p.i * size + p.label_i, p.j * size + p.label_j)
    start = index[layout.start]
    root = union.find(start * size + start_label(rooms[start], labels[start]))
    reached_rooms = set()
    for i in range(n):
        if any(union.find(i * size + int(x)) == root for x in labels[i].unique().tolist() if x):
            reached_rooms.add(i)
    unreached = tuple(layout.rooms[i].id for i in range(n) if i not in reached_rooms)
    return WalkResult(
        walkable=not unreached,
        goal_reached=index[layout.goal] in reached_rooms,
        reached=len(reached_rooms),
        rooms=n,
        unreached=unreached,
        doors_agree=not found.disagreements,
        disagreements=found.disagreements,
        misaligned=found.misaligned,
    )


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
