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
    doors_agree: bool  # every pair of neighbouring slots has doors on both facing sides where linked, on neither elsewhere
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


def walk_dungeon(layout: Layout, embedding: Embedding, rooms: torch.Tensor, labels: torch.Tensor | None = None) -> WalkResult:
    """Walk `rooms` `(n, 16, 11)` (in `layout.rooms` order, at `embedding.slots`) from the start (module docstring).

    `labels` `(n, 16, 11)`: the rooms' `walkable_components`, when already computed for a larger batch.
    """
    n = len(layout.rooms)
    if rooms.dim() != 3 or tuple(rooms.shape) != (n, ROOM_H, ROOM_W):
        raise ValueError(f"walk_dungeon {layout.name}: expected rooms ({n}, {ROOM_H}, {ROOM_W}), got {tuple(rooms.shape)}")
    rooms = rooms.long()
    labels = walkable_components(rooms) if labels is None else labels  # (n, 16, 11), 0 = not walkable
    size = ROOM_H * ROOM_W + 1
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    at_slot = {embedding.slots[room.id]: i for i, room in enumerate(layout.rooms)}
    positions = door_positions(rooms)
    sides = door_sides(rooms)  # (n, 4)
    union = _Union()
    disagreements, misaligned = [], []
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
                    f"rooms {a_id} and {b_id} are linked but have no doors on the wall between them" if linked
                    else f"rooms {a_id} and {b_id} have doors on the wall between them but are not linked"
                )
            shared = positions[side][i] & positions[opp][j]  # (L,)
            if sides[i, side] and sides[j, opp] and not shared.any():
                a_side, b_side = SCREEN_SIDE[SIDES[side]], SCREEN_SIDE[SIDES[opp]]
                misaligned.append(f"room {a_id} {a_side} door and room {b_id} {b_side} door do not line up")
            for k in shared.nonzero().flatten().tolist():
                ends = []
                for room_i, s in ((i, side), (j, opp)):
                    rows, cols = _BAND[s]
                    strip = rooms[room_i, rows, cols]
                    lab = labels[room_i, rows, cols]
                    cell = (strip[k] == DOOR, lab[k]) if _ALONG_ROWS[s] else (strip[:, k] == DOOR, lab[:, k])
                    ends += [room_i * size + int(x) for x in cell[1][cell[0]].tolist()]
                for end in ends[1:]:
                    union.join(ends[0], end)
    for link_index in embedding.stair_links:
        link = layout.links[link_index]
        ends = []
        for room_id in (link.a, link.b):
            i = index[room_id]
            ends.append([i * size + int(x) for x in labels[i][rooms[i] == STAIR].tolist()])
        for a in ends[0]:
            for b in ends[1]:
                union.join(a, b)
    start = index[layout.start]
    root = union.find(start * size + _start_label(rooms[start], labels[start]))
    reached_rooms = set()
    for i in range(n):
        if any(union.find(i * size + int(x)) == root for x in labels[i].unique().tolist() if x):
            reached_rooms.add(i)
    unreached = tuple(layout.rooms[i].id for i in range(n) if i not in reached_rooms)
    return WalkResult(
        walkable=not unreached, goal_reached=index[layout.goal] in reached_rooms, reached=len(reached_rooms), rooms=n,
        unreached=unreached, doors_agree=not disagreements, disagreements=tuple(disagreements), misaligned=tuple(misaligned),
    )


def _start_label(room: torch.Tensor, labels: torch.Tensor) -> int:
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
