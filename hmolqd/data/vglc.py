"""Parse the VGLC Zelda room text files (`Processed/tloz<level>_<quest>.txt`) into a tensor corpus.

Each file is a grid of room slots; one room is `ROOM_H x ROOM_W` = 16 x 11 characters (the NES screen,
rotated). Slots made only of void `-` are empty and skipped. Rooms keep their slot position, door sides,
stairs and their neighbours on the dungeon grid so that callers can rebuild whole dungeons.

Files are read in sorted name order and rooms row-major within a file, so room indices are stable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hmolqd.data import tiles

ROOM_GLOB = "tloz*.txt"
PROCESSED = "Processed"
_NAME_RULE = re.compile(r"^tloz([1-9])_([12])$")
_VALID = frozenset(tiles.TILES)
# Byte -> tile index; 255 marks a byte that is not a tile character.
_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(tiles.TILES):
    _LUT[ord(_ch)] = _i


class VGLCFormatError(ValueError):
    """The VGLC input breaks a format rule; the message names the file (and line/column where one applies)."""


@dataclass(frozen=True)
class RoomMeta:
    """Where one room comes from and what it connects to.

    `doors` and `neighbors` follow `tiles.SIDES` order (top, bottom, left, right). A neighbour is the
    corpus index of the room in the adjacent slot (top = slot row - 1, bottom = row + 1, left = col - 1,
    right = col + 1), or -1 when that slot is empty or outside the grid; it says nothing about a door.
    `grid_shape` is the file's slot grid (rows, cols). `mirrored` is "" for a room as read, else the
    augmentation that made it ("rows", "cols" or "both"); see `hmolqd.data.dataset.mirror_corpus`.
    """

    dungeon: str  # file stem, e.g. "tloz1_2"
    level: int  # 1..9
    quest: int  # 1..2
    slot_row: int
    slot_col: int
    grid_shape: tuple[int, int]
    doors: tuple[bool, bool, bool, bool]
    stairs: bool
    neighbors: tuple[int, int, int, int]
    mirrored: str = ""


@dataclass(frozen=True, eq=False)
class Corpus:
    """Rooms `(N, 16, 11)` uint8 indices into `tiles.TILES`, with one `RoomMeta` per room."""

    rooms: torch.Tensor
    meta: tuple[RoomMeta, ...]

    def __post_init__(self) -> None:
        if (
            self.rooms.dtype != torch.uint8
            or self.rooms.dim() != 3
            or tuple(self.rooms.shape[1:]) != (tiles.ROOM_H, tiles.ROOM_W)
        ):
            raise ValueError(
                f"Corpus.rooms must be uint8 (N, {tiles.ROOM_H}, {tiles.ROOM_W}), "
                f"got {self.rooms.dtype} {tuple(self.rooms.shape)}"
            )
        if len(self.meta) != self.rooms.shape[0]:
            raise ValueError(f"Corpus has {self.rooms.shape[0]} rooms but {len(self.meta)} metadata entries")

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def doors(self) -> torch.Tensor:
        """`(N, 4)` bool, sides in `tiles.SIDES` order."""
        return torch.tensor([m.doors for m in self.meta], dtype=torch.bool).reshape(len(self), 4)

    @property
    def stairs(self) -> torch.Tensor:
        """`(N,)` bool."""
        return torch.tensor([m.stairs for m in self.meta], dtype=torch.bool).reshape(len(self))

    @property
    def dungeons(self) -> tuple[str, ...]:
        """Distinct dungeon names in order of first appearance."""
        return tuple(dict.fromkeys(m.dungeon for m in self.meta))

    def subset(self, indices: Sequence[int] | torch.Tensor) -> Corpus:
        """The rooms at `indices` (unique ints, or a `(N,)` bool mask), in that order.

        Neighbour indices are renumbered to the new positions; a neighbour left out becomes -1.
        """
        if isinstance(indices, torch.Tensor) and indices.dtype == torch.bool:
            if indices.shape != (len(self),):
                raise ValueError(f"bool mask must have shape ({len(self)},), got {tuple(indices.shape)}")
            indices = indices.nonzero().flatten()
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"subset indices {bad[:5]} out of range for a corpus of {len(self)} rooms")
        if len(set(idx)) != len(idx):
            raise ValueError("subset indices must be unique (a repeated room has no single neighbour index)")
        new_pos = {old: new for new, old in enumerate(idx)}
        meta = tuple(
            replace(self.meta[i], neighbors=tuple(new_pos.get(n, -1) if n >= 0 else -1 for n in self.meta[i].neighbors))
            for i in idx
        )
        rooms = self.rooms[torch.tensor(idx, dtype=torch.long)] if idx else self.rooms[:0]
        return Corpus(rooms=rooms.clone(), meta=meta)


def processed_dir(data_dir: str | Path) -> Path:
    """The folder holding `tloz*.txt`: `<data_dir>/Processed`, or `data_dir` itself when pointed there."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / PROCESSED, data_dir):
        if candidate.is_dir() and any(candidate.glob(ROOM_GLOB)):
            return candidate
    raise VGLCFormatError(
        f"{data_dir}: no {ROOM_GLOB} files in it or in its {PROCESSED}/ subfolder; "
        "expected the VGLC 'The Legend of Zelda' folder (the one containing Processed/)"
    )


def read_text(path: Path) -> str:
    """Read a corpus file as UTF-8, turning OS and decoding failures into `VGLCFormatError`."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise VGLCFormatError(f"{path}: cannot read file: {err.strerror or err}") from err
    try:
        # A UTF-8 byte order mark (what some Windows editors write first) is not part of the text.
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise VGLCFormatError(
            f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); is it a binary file?"
        ) from err


def parse_grid(path: Path) -> tuple[list[str], int, int]:
    """Read and validate a room-grid file -> (lines, slot rows, slot cols). Errors name file:line."""
    # Split on "\n" only (str.splitlines also splits on form feeds etc., which would shift line numbers).
    lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
    while lines and lines[-1] == "":  # tolerate blank lines at end of file only
        lines.pop()
    if not lines:
        raise VGLCFormatError(f"{path}:1: empty file, expected {tiles.ROOM_H}*k lines of tile characters")
    width = len(lines[0])
    for number, line in enumerate(lines, start=1):
        if len(line) != width:
            raise VGLCFormatError(
                f"{path}:{number}: ragged line of length {len(line)}; line 1 has length {width} "
                "and every line must match"
            )
        unknown = set(line) - _VALID
        if unknown:
            column, ch = next((col, ch) for col, ch in enumerate(line, start=1) if ch in unknown)
            raise VGLCFormatError(
                f"{path}:{number}: unknown tile character {ch!r} at column {column} (valid: {tiles.TILES!r})"
            )
    if width == 0 or width % tiles.ROOM_W:
        raise VGLCFormatError(f"{path}:1: width {width} is not a positive multiple of the room width {tiles.ROOM_W}")
    if len(lines) % tiles.ROOM_H:
        raise VGLCFormatError(
            f"{path}:{len(lines)}: height {len(lines)} lines is not a multiple of the room height {tiles.ROOM_H}"
        )
    return lines, len(lines) // tiles.ROOM_H, width // tiles.ROOM_W


def dungeon_name_parts(path: Path) -> tuple[int, int]:
    """`tloz<level>_<quest>.txt` -> (level, quest)."""
    match = _NAME_RULE.match(path.stem)
    if match is None:
        raise VGLCFormatError(f"{path}: file name must be tloz<level>_<quest>.txt with level 1-9 and quest 1-2")
    return int(match.group(1)), int(match.group(2))


def parse_room_file(path: str | Path) -> tuple[torch.Tensor, list[tuple[int, int]], tuple[int, int]]:
    """One dungeon file -> (rooms `(n, 16, 11)` uint8, slot (row, col) per room, grid shape (rows, cols)).

    Rooms are in row-major slot order; all-void slots are skipped.
    """
    path = Path(path)
    lines, grid_rows, grid_cols = parse_grid(path)
    flat = np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8)
    grid = _LUT[flat].reshape(grid_rows, tiles.ROOM_H, grid_cols, tiles.ROOM_W)
    slots = grid.transpose(0, 2, 1, 3)  # (grid_rows, grid_cols, 16, 11)
    keep = ~(slots == tiles.VOID).reshape(grid_rows, grid_cols, -1).all(-1)  # (grid_rows, grid_cols)
    positions = [(int(r), int(c)) for r, c in zip(*np.nonzero(keep))]  # row-major
    rooms = torch.from_numpy(np.ascontiguousarray(slots[keep]))  # (n, 16, 11)
    return rooms, positions, (grid_rows, grid_cols)


def load_corpus(data_dir: str | Path) -> Corpus:
    """All rooms of `<data_dir>/Processed/tloz*.txt` (or of `data_dir` itself), files in sorted order."""
    files = sorted(processed_dir(data_dir).glob(ROOM_GLOB))
    all_rooms: list[torch.Tensor] = []
    meta: list[RoomMeta] = []
    for path in files:
        level, quest = dungeon_name_parts(path)
        rooms, positions, grid_shape = parse_room_file(path)
        if not positions:
            raise VGLCFormatError(f"{path}: every room slot is void; a dungeon needs at least one room")
        base = len(meta)
        index_at = {pos: base + k for k, pos in enumerate(positions)}
        doors = tiles.door_sides(rooms).tolist()  # (n, 4)
        stairs = tiles.has_stairs(rooms).tolist()  # (n,)
        for k, (r, c) in enumerate(positions):
            around = ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))  # tiles.SIDES order
            meta.append(
                RoomMeta(
                    dungeon=path.stem,
                    level=level,
                    quest=quest,
                    slot_row=r,
                    slot_col=c,
                    grid_shape=grid_shape,
                    doors=tuple(doors[k]),
                    stairs=bool(stairs[k]),
                    neighbors=tuple(index_at.get(p, -1) for p in around),
                )
            )
        all_rooms.append(rooms)
    return Corpus(rooms=torch.cat(all_rooms), meta=tuple(meta))
