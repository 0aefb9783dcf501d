"""Is a generated room playable? Pure tensor functions over `(N, 16, 11)` tile-index rooms.

The rule (the project's definition; 363 of the 459 real VGLC rooms, 79.1 %, pass it - the rest are
puzzle rooms, water rooms that need the ladder, and rooms without a door):

1. the outer two-tile band (rows 0-1 and 14-15, columns 0-1 and 9-10) holds only walls W and doors D;
2. the room has at least one door, i.e. a D tile on that band;
3. every band door tile and every stair S lies in one and the same 4-connected component of walkable
   tiles, walkable = F D S M O (floor, door, stair, monster, element + floor).

A door "group" is a 4-connected run of D tiles on the band; since D is walkable, all tiles of a group
share a walkable component, so rule 3 checked per tile is the same as rule 3 checked per group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hmolqd.data.tiles import (
    DOOR,
    ELEMENT_FLOOR,
    FLOOR,
    INTERIOR,
    MONSTER,
    NUM_TILES,
    ROOM_H,
    ROOM_W,
    STAIR,
    TILE_INDEX,
    TILES,
    WALL,
    has_stairs,
)

WALKABLE: tuple[int, ...] = (FLOOR, DOOR, STAIR, MONSTER, ELEMENT_FLOOR)


def band_mask() -> torch.Tensor:
    """`(16, 11)` bool: True on the outer two-tile band (rows 0-1, 14-15, columns 0-1, 9-10)."""
    mask = torch.ones(ROOM_H, ROOM_W, dtype=torch.bool)
    mask[INTERIOR] = False
    return mask


def check_rooms(rooms: torch.Tensor, name: str = "rooms") -> torch.Tensor:
    """Validate a batch of rooms and return it as a CPU int64 tensor `(N, 16, 11)`.

    Rooms are small, so every metric runs on the CPU whatever device the generator used.
    """
    if not isinstance(rooms, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of tile indices, got {type(rooms).__name__}")
    if rooms.dim() != 3 or tuple(rooms.shape[1:]) != (ROOM_H, ROOM_W):
        raise ValueError(f"{name}: expected shape (N, {ROOM_H}, {ROOM_W}) of tile indices, got {tuple(rooms.shape)}")
    if rooms.dtype.is_floating_point or rooms.dtype == torch.bool or rooms.is_complex():
        raise TypeError(f"{name}: tile indices must be an integer tensor, got dtype {rooms.dtype}")
    rooms = rooms.detach().to("cpu", torch.int64)
    if rooms.numel() and (int(rooms.min()) < 0 or int(rooms.max()) >= NUM_TILES):
        raise ValueError(
            f"{name}: tile indices must lie in [0, {NUM_TILES - 1}] ({TILES!r}), "
            f"got range [{int(rooms.min())}, {int(rooms.max())}]"
        )
    return rooms


def room_from_rows(rows: Sequence[str]) -> torch.Tensor:
    """16 strings of 11 VGLC characters (`TILES`) -> `(16, 11)` uint8 tile indices; for tests and notebooks."""
    if len(rows) != ROOM_H:
        raise ValueError(f"a room needs {ROOM_H} rows of text, got {len(rows)}")
    for i, row in enumerate(rows):
        if len(row) != ROOM_W:
            raise ValueError(f"room row {i} has {len(row)} characters, expected {ROOM_W}: {row!r}")
        bad = sorted(set(row) - set(TILES))
        if bad:
            raise ValueError(f"room row {i} holds unknown tile(s) {bad}; valid tiles are {TILES!r}: {row!r}")
    return torch.tensor([[TILE_INDEX[ch] for ch in row] for row in rows], dtype=torch.uint8)


def room_to_rows(room: torch.Tensor) -> list[str]:
    """`(16, 11)` tile indices -> 16 strings of VGLC characters (inverse of `room_from_rows`)."""
    return ["".join(TILES[int(t)] for t in row) for row in room]


def walkable_components(rooms: torch.Tensor) -> torch.Tensor:
    """Label the 4-connected components of walkable tiles: `(N, 16, 11)` -> `(N, 16, 11)` int64.

    0 marks a non-walkable tile; every walkable tile carries the largest flat index + 1 of its component,
    so two tiles are connected iff their labels are equal. Iterative max-propagation flood fill: each step
    lets every walkable tile take the largest label among itself and its 4 walkable neighbours, which
    converges after at most (longest shortest path inside a component) steps - all rooms at once.
    """
    rooms = check_rooms(rooms)
    n = rooms.shape[0]
    walk = torch.zeros_like(rooms, dtype=torch.bool)
    for tile in WALKABLE:
        walk |= rooms == tile
    ids = torch.arange(1, ROOM_H * ROOM_W + 1, dtype=torch.int64).view(1, ROOM_H, ROOM_W).expand(n, -1, -1)
    labels = torch.where(walk, ids, torch.zeros_like(ids))  # (N, 16, 11)
    while True:
        padded = torch.nn.functional.pad(labels, (1, 1, 1, 1))  # (N, 18, 13), zero border = not walkable
        best = torch.stack(
            [
                labels,
                padded[:, :-2, 1:-1],  # up neighbour
                padded[:, 2:, 1:-1],  # down
                padded[:, 1:-1, :-2],  # left
                padded[:, 1:-1, 2:],  # right
            ]
        ).amax(0)
        new = torch.where(walk, best, labels)
        if torch.equal(new, labels):
            return labels
        labels = new


def playable_mask(rooms: torch.Tensor, stairs_as_entry: bool = False) -> torch.Tensor:
    """`(N, 16, 11)` tile indices -> `(N,)` bool: the room passes the playability rule (module docstring).

    `stairs_as_entry`: a room without doors also passes rule 2 when it has a stair, as in a dungeon where a
    stair link is its only way in (the game's underground rooms); the dungeon checks use this.
    """
    rooms = check_rooms(rooms)
    band = band_mask()  # (16, 11)
    band_tiles = rooms[:, band]  # (N, 60)
    band_ok = ((band_tiles == WALL) | (band_tiles == DOOR)).all(1)
    doors = (rooms == DOOR) & band  # (N, 16, 11)
    has_door = doors.flatten(1).any(1)
    targets = (doors | (rooms == STAIR)).flatten(1)  # (N, 176): tiles that must share one component
    labels = walkable_components(rooms).flatten(1)  # (N, 176); door and stair tiles are walkable, label >= 1
    big = ROOM_H * ROOM_W + 1
    hi = torch.where(targets, labels, torch.zeros_like(labels)).amax(1)
    lo = torch.where(targets, labels, torch.full_like(labels, big)).amin(1)
    connected = hi == lo  # every target carries the same component label (a room without doors fails has_door)
    entry = (has_door | has_stairs(rooms)) if stairs_as_entry else has_door
    return band_ok & entry & connected
