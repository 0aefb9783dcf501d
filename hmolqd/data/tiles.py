"""The fixed 10-tile vocabulary of VGLC Zelda rooms (legend: Processed/README.txt)."""

from __future__ import annotations

import torch

# Index order is part of every saved model: never reorder, only append (and bump FORMAT_VERSION).
TILES: str = "FBMPOIDSW-"
TILE_NAMES: dict[str, str] = {
    "F": "floor",
    "B": "block",
    "M": "monster",
    "P": "element (lava, water)",
    "O": "element + floor",
    "I": "element + block",
    "D": "door",
    "S": "stair",
    "W": "wall",
    "-": "void",
}
TILE_INDEX: dict[str, int] = {ch: i for i, ch in enumerate(TILES)}
NUM_TILES: int = len(TILES)
ROOM_H: int = 16  # rows of one room in Processed/*.txt (the NES screen, rotated)
ROOM_W: int = 11  # columns of one room

FLOOR, BLOCK, MONSTER, ELEMENT, ELEMENT_FLOOR, ELEMENT_BLOCK, DOOR, STAIR, WALL, VOID = range(NUM_TILES)

# Door sides in the order used by every door vector `(B, 4)`: top, bottom, left, right of the
# 16x11 text grid (rows 0-1, rows 14-15, columns 0-1, columns 9-10).
SIDES: tuple[str, ...] = ("top", "bottom", "left", "right")


def door_sides(rooms: torch.Tensor) -> torch.Tensor:
    """Which sides hold a door tile: `(N, 16, 11)` tile indices -> `(N, 4)` bool (top, bottom, left, right).

    A side's door lies on its two-tile band away from the corners: rows 0-1 / 14-15 within columns 2-8,
    columns 0-1 / 9-10 within rows 2-13.
    """
    is_door = rooms == DOOR  # (N, 16, 11)
    top = is_door[:, 0:2, 2:9].flatten(1).any(1)
    bottom = is_door[:, 14:16, 2:9].flatten(1).any(1)
    left = is_door[:, 2:14, 0:2].flatten(1).any(1)
    right = is_door[:, 2:14, 9:11].flatten(1).any(1)
    return torch.stack([top, bottom, left, right], dim=1)  # (N, 4)


def has_stairs(rooms: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)` tile indices -> `(N,)` bool: the room holds a stair tile S."""
    return (rooms == STAIR).flatten(1).any(1)
