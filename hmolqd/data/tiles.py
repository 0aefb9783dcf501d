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
# The same sides as a player sees them on screen (the text grid is the screen rotated: text left = north);
# every message a user reads names sides this way, in SCREEN_SIDES order (see hmolqd.render).
SCREEN_SIDE: dict[str, str] = {"top": "west", "bottom": "east", "left": "north", "right": "south"}
SCREEN_SIDES: tuple[str, ...] = ("north", "east", "south", "west")


def screen_sides(flags: list[bool] | tuple[bool, ...]) -> str:
    """Door flags `(4,)` in SIDES order -> the sides with a door as on screen, e.g. 'north,west' ('none' if none)."""
    on = {SCREEN_SIDE[side] for side, flag in zip(SIDES, [bool(f) for f in flags]) if flag}
    return ",".join(side for side in SCREEN_SIDES if side in on) or "none"


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


BAND_WIDTH: int = 2  # the wall band is two tiles thick on every side
# The tiles inside the band (rows 2-13, columns 2-8): index a room batch with `rooms[(slice(None), *INTERIOR)]`.
INTERIOR: tuple[slice, slice] = (slice(BAND_WIDTH, ROOM_H - BAND_WIDTH), slice(BAND_WIDTH, ROOM_W - BAND_WIDTH))

# Door tiles of each side (rows, cols of the text grid, SIDES order) where every real room has them: the
# inner band row or column, centred (top: row 1, columns 4-6; left: rows 7-8, column 1; ...). The outer
# band is wall, so a room's band is fixed by its door set.
DOOR_TILES: tuple[tuple[slice | int, slice | int], ...] = (
    (1, slice(4, 7)),
    (ROOM_H - 2, slice(4, 7)),
    (slice(7, 9), 1),
    (slice(7, 9), ROOM_W - 2),
)


def mirror_axes(rooms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, 16, 11)` -> two `(N,)` bool: the interior (rows 2-13, columns 2-8) equals its mirror across the
    rows (top <-> bottom of the text grid) / across the columns. A room is symmetric when either holds."""
    inner = rooms[(slice(None), *INTERIOR)]  # (N, 12, 7)
    return (inner == inner.flip(1)).flatten(1).all(1), (inner == inner.flip(2)).flatten(1).all(1)


def pattern_codes(rooms: torch.Tensor, size: int) -> torch.Tensor:
    """All size x size windows of every room `(N, 16, 11)` as base-NUM_TILES integers: `(N * windows,)` int64,
    room by room (150 windows per room for size 2). One pattern's code is the same wherever it is computed."""
    windows = rooms.long().unfold(1, size, 1).unfold(2, size, 1)  # (N, 16-size+1, 11-size+1, size, size)
    digits = windows.reshape(-1, size * size)
    powers = NUM_TILES ** torch.arange(size * size, dtype=torch.int64, device=rooms.device)
    return (digits * powers).sum(1)


def nearest_distance(rows: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """`(N, T)`, `(M, T)` tile indices -> `(N,)` int64: the positions in which each row differs from its closest
    reference row (a Hamming distance; T = 176 for whole rooms, 84 for interiors). Chunks of `chunk` rows bound
    the memory."""
    if reference.shape[0] == 0:
        raise ValueError("reference: need at least one room to measure the distance to")
    ref_hot = torch.nn.functional.one_hot(reference.long(), NUM_TILES).flatten(1).float()  # (M, T * NUM_TILES)
    out = []
    for start in range(0, rows.shape[0], chunk):
        hot = torch.nn.functional.one_hot(rows[start : start + chunk].long(), NUM_TILES).flatten(1).float()
        equal = hot @ ref_hot.T  # (chunk, M) equal-tile counts, exact in fp32
        out.append(rows.shape[1] - equal.amax(1).round().long())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
