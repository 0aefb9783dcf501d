"""Ways between two walkable components of one room that the player opens with what the game gives him
(the rules in `hmolqd.dungeon.rules`: `LADDER`, `PUSH`); the tile geometry of those rules, for
`hmolqd.dungeon.play`.

- **ladder**: one element tile P (water, lava) between two walkable tiles in a straight line (up-down or
  left-right) is crossed with the ladder, NES Zelda's key item for one-tile water gaps;
- **push**: in a puzzle room (graph label `p`) a block B is pushed one tile onto floor F by a player standing
  on its other side; he then stands where the block was and walks on to its other walkable neighbours.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from hmolqd.data.tiles import BLOCK, ELEMENT, FLOOR, INTERIOR
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.rules import LADDER, PUSH

_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class Crossing(NamedTuple):
    """From tile `tile_a` (component `label_a`) of room index `room` to `tile_b` (component `label_b`)."""

    room: int
    kind: str  # LADDER or PUSH
    label_a: int
    tile_a: tuple[int, int]
    label_b: int
    tile_b: tuple[int, int]


def _inside(r: int, c: int) -> bool:
    rows, cols = INTERIOR
    return rows.start <= r < rows.stop and cols.start <= c < cols.stop


def room_crossings(room: list[list[int]], labels: list[list[int]], puzzle: bool, index: int) -> list[Crossing]:
    """The ladder and push crossings of one room (`room`, `labels`: its `(16, 11)` tiles and component labels as
    nested lists), one per (kind, component pair), both directions; `puzzle`: the room is labelled `p`."""
    out: dict[tuple[str, int, int], Crossing] = {}

    def add(kind: str, a: tuple[int, int], b: tuple[int, int]) -> None:
        la, lb = labels[a[0]][a[1]], labels[b[0]][b[1]]
        if la and lb and la != lb:
            for key, x, y in (((kind, la, lb), a, b), ((kind, lb, la), b, a)):
                if key not in out:
                    out[key] = Crossing(index, kind, labels[x[0]][x[1]], x, labels[y[0]][y[1]], y)

    rows, cols = INTERIOR
    for r in range(rows.start, rows.stop):
        for c in range(cols.start, cols.stop):
            if room[r][c] == ELEMENT:
                for dr, dc in ((1, 0), (0, 1)):
                    add(LADDER, (r - dr, c - dc), (r + dr, c + dc))
            if room[r][c] == BLOCK and puzzle:
                for dr, dc in _STEPS:
                    stand, onto = (r - dr, c - dc), (r + dr, c + dc)
                    if not (_inside(*onto) and room[onto[0]][onto[1]] == FLOOR and labels[stand[0]][stand[1]]):
                        continue
                    for er, ec in _STEPS:
                        step = (r + er, c + ec)
                        if step not in (stand, onto) and _inside(*step):
                            add(PUSH, stand, step)
    return list(out.values())


def crossings(rooms: torch.Tensor, labels: torch.Tensor, room_labels: list[frozenset[str]]) -> list[Crossing]:
    """Every crossing of rooms `(n, 16, 11)` with component labels `(n, 16, 11)`; `room_labels[i]`: room i's graph
    labels (a puzzle room pushes blocks)."""
    room_list, label_list = rooms.long().tolist(), labels.tolist()
    out: list[Crossing] = []
    for i, codes in enumerate(room_labels):
        out += room_crossings(room_list[i], label_list[i], RoomLabel.PUZZLE in codes, i)
    return out
