"""Draw VGLC Zelda rooms, batches of rooms and whole dungeon maps as RGB images and PNG files.

Orientation
-----------
A VGLC room is stored as 16 text rows x 11 text columns, but the NES screen shows a room 16 tiles wide
and 11 tall, so the text is the screen turned on its side. The whole-dungeon text files
(`Processed/tloz*.txt`) are turned the same way. `to_screen` owns the turn and is the only place that
knows it: it is the **transpose** (swap rows and columns; no flip), which maps the text sides to the
screen sides as in `TEXT_TO_SCREEN_SIDE`:

    text top (rows 0-1)      -> screen west (left)
    text bottom (rows 14-15) -> screen east (right)
    text left (columns 0-1)  -> screen north (top)
    text right (columns 9-10)-> screen south (bottom)

Everything a person reads names the sides as on screen (north = top of the screen): `describe_doors`
for titles and captions, and `--doors`, which also accepts the text names (the two sets do not overlap).

Evidence (checked against the corpus, see tests/test_render.py::test_real_levels_read_in_game_orientation):

* Level 1 "The Eagle" (`tloz1_1.txt`, 6 x 6 slots): the only room with a door on the outer edge of the
  map is slot (row 2, col 5), door on its text *right* side; its text-top and text-bottom neighbours are
  dead ends. In the game the dungeon is entered from the south into a room with single side rooms west
  and east, so text right = screen south; this rules out a 90-degree counter-clockwise turn.
* That leaves the transpose or a 90-degree clockwise turn, which are mirror images; the mirror is
  decided by the Second Quest levels, whose maps are letters spelling Z-E-L-D-A. Transposed,
  `tloz1_2` reads "E" (full column on the west, three arms to the east), `tloz3_2` reads "L" (foot to
  the east) and `tloz5_2` reads "Z" (diagonal from north-east to south-west); the clockwise turn gives
  their mirror images.
* Level 1 again: guides say "from the beginning of Level One, go up five screens and left one" for the
  Bow; transposed, five rooms straight north of the entrance then one west is the stair room (slot
  row 1, col 0, the only `S` room). Zelda Wiki puts the Triforce room at "the tip of the right wing";
  transposed, the block-ringed Triforce room (slot row 5, col 1) is the east-most room of the map,
  just east of the boss room.

Colours
-------
`TILE_COLORS` gives one fixed RGB colour per tile character of `hmolqd.data.tiles.TILES`; `PALETTE` is
the same table as a `(NUM_TILES, 3)` uint8 array in index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.patches import Patch

from hmolqd.atomic import atomic_write
from hmolqd.data.tiles import NUM_TILES, ROOM_H, ROOM_W, SCREEN_SIDE, SCREEN_SIDES, SIDES, TILE_NAMES, TILES

# One colour per tile, chosen after the NES dungeon look where one exists; all distinct.
TILE_COLORS: dict[str, tuple[int, int, int]] = {
    "F": (222, 196, 140),  # floor: sand
    "B": (128, 84, 40),  # block: brown stone
    "M": (200, 30, 30),  # monster: red
    "P": (30, 90, 210),  # element (water/lava): blue
    "O": (130, 180, 240),  # element + floor: light blue
    "I": (20, 40, 120),  # element + block: navy
    "D": (60, 36, 20),  # door: dark opening in the wall
    "S": (240, 200, 40),  # stair: gold
    "W": (0, 100, 110),  # wall: dark teal, like the Level 1 walls
    "-": (0, 0, 0),  # void: black
}
if set(TILE_COLORS) != set(TILES):
    raise RuntimeError(f"TILE_COLORS must cover exactly TILES={TILES!r}, got keys {''.join(TILE_COLORS)!r}")
PALETTE: np.ndarray = np.array([TILE_COLORS[ch] for ch in TILES], dtype=np.uint8)  # (NUM_TILES, 3)
PALETTE.setflags(write=False)

EMPTY_SLOT_COLOR: tuple[int, int, int] = (0, 0, 0)  # dungeon slots without a room
GRID_PAD_COLOR: tuple[int, int, int] = (128, 128, 128)  # gaps between rooms in grid_to_rgb
MARK_COLOR: tuple[int, int, int] = (255, 0, 0)  # outline of marked rooms in grid_to_rgb


# Text side (tiles.SIDES names, used by every door vector) -> compass side on screen; see module docstring.
# The compass names are how a player names the sides (north = top of the screen) and what pictures and
# `--doors` use; they never collide with the text names, so both can be accepted where sides are read.
TEXT_TO_SCREEN_SIDE: dict[str, str] = dict(SCREEN_SIDE)
if set(TEXT_TO_SCREEN_SIDE) != set(SIDES):
    raise RuntimeError(f"TEXT_TO_SCREEN_SIDE must cover tiles.SIDES={SIDES}")
# SCREEN_SIDES (from tiles): the order door names are written in
SCREEN_TO_TEXT_SIDE: dict[str, str] = {screen: text for text, screen in TEXT_TO_SCREEN_SIDE.items()}


def describe_doors(doors: Sequence[bool] | np.ndarray | torch.Tensor) -> str:
    """One door vector `(4,)` in tiles.SIDES order -> its sides as seen on screen, e.g.
    'doors north, south; none east, west'."""
    flags = [bool(d) for d in (doors.tolist() if isinstance(doors, (torch.Tensor, np.ndarray)) else doors)]
    if len(flags) != len(SIDES):
        raise ValueError(f"doors must hold {len(SIDES)} flags in tiles.SIDES order {SIDES}, got {len(flags)}")
    on = {TEXT_TO_SCREEN_SIDE[side] for side, d in zip(SIDES, flags) if d}
    if len(on) == len(SIDES):
        return "doors on all four sides"
    if not on:
        return "no doors"
    off = [s for s in SCREEN_SIDES if s not in on]
    return f"doors {', '.join(s for s in SCREEN_SIDES if s in on)}; none {', '.join(off)}"


def to_screen(grid: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Turn tile grids from VGLC text orientation to the game's screen orientation.

    Acts on the last two axes (text rows, text cols) -> (screen rows, screen cols): a room `(..., 16, 11)`
    becomes `(..., 11, 16)`, a whole dungeon text `(R*16, C*11)` becomes `(C*11, R*16)`. The turn is the
    transpose (evidence in the module docstring), so slot (row r, col c) of a dungeon lands at screen
    slot (row c, col r) and every room inside keeps agreeing with `room_to_rgb`.
    """
    if isinstance(grid, torch.Tensor):
        return grid.transpose(-2, -1)
    grid = np.asarray(grid)
    if grid.ndim < 2:
        raise ValueError(f"to_screen needs at least 2 axes (rows, cols), got shape {grid.shape}")
    return np.swapaxes(grid, -2, -1)


def _tile_indices(x: np.ndarray | torch.Tensor, name: str, ndim: int) -> np.ndarray:
    """Validate tile indices `(..., 16, 11)` with `ndim` axes -> int64 numpy array."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != ndim or arr.shape[-2:] != (ROOM_H, ROOM_W):
        want = "(16, 11)" if ndim == 2 else "(N, 16, 11)"
        raise ValueError(f"{name} must have shape {want} (text rows, text cols), got {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer tile indices into TILES={TILES!r}, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= NUM_TILES)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{', '.join(map(str, where))}] = {arr[where]}: tile indices must be in [0, {NUM_TILES}) "
            f"(TILES={TILES!r}); {int(bad.sum())} value(s) out of range"
        )
    return arr


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive int (pixels per tile), got {scale!r}")
    return int(scale)


def _colorize(screen: np.ndarray, scale: int) -> np.ndarray:
    """Screen-oriented tile indices `(H, W)` -> `(H*scale, W*scale, 3)` uint8."""
    rgb = PALETTE[screen]  # (H, W, 3)
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(rgb)


def room_to_rgb(room: np.ndarray | torch.Tensor, scale: int = 4) -> np.ndarray:
    """One room `(16, 11)` tile indices (text orientation) -> `(11*scale, 16*scale, 3)` uint8 as on screen."""
    scale = _check_scale(scale)
    return _colorize(to_screen(_tile_indices(room, "room", ndim=2)), scale)


def grid_to_rgb(
    rooms: np.ndarray | torch.Tensor,
    ncols: int = 8,
    pad: int = 2,
    marks: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
    scale: int = 4,
) -> np.ndarray:
    """A batch of rooms `(N, 16, 11)` -> one image of rooms in reading order, `ncols` per row.

    Each cell is a room as on screen (`11*scale` x `16*scale` px); cells are `pad` px apart on a grey
    background (also around the edge). `marks` `(N,)` bool outlines the marked rooms in `MARK_COLOR`
    (a frame `max(1, scale // 2)` px wide drawn over the room's border, e.g. non-playable rooms).
    Returns `(rows*(11*scale+pad)+pad, ncols'*(16*scale+pad)+pad, 3)` uint8 with
    `rows = ceil(N / ncols')`, `ncols' = min(ncols, N)`.
    """
    scale = _check_scale(scale)
    arr = _tile_indices(rooms, "rooms", ndim=3)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("rooms is empty: grid_to_rgb needs at least one room")
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be an int >= 0 (pixels), got {pad!r}")
    mark = np.zeros(n, dtype=bool)
    if marks is not None:
        mark = (marks.detach().cpu().numpy() if isinstance(marks, torch.Tensor) else np.asarray(marks)).astype(bool)
        if mark.shape != (n,):
            raise ValueError(f"marks must have shape ({n},) (one flag per room), got {mark.shape}")
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    cell_h, cell_w = ROOM_W * scale, ROOM_H * scale  # a room on screen is 11 tiles tall, 16 wide
    out = np.empty((nrows * (cell_h + pad) + pad, ncols * (cell_w + pad) + pad, 3), dtype=np.uint8)
    out[:] = GRID_PAD_COLOR
    rgb = _colorize(np.concatenate(list(to_screen(arr)), axis=0), scale)  # (N*cell_h, cell_w, 3)
    frame = max(1, scale // 2)
    for i in range(n):
        y = pad + (i // ncols) * (cell_h + pad)
        x = pad + (i % ncols) * (cell_w + pad)
        cell = out[y : y + cell_h, x : x + cell_w]
        cell[:] = rgb[i * cell_h : (i + 1) * cell_h]
        if mark[i]:
            cell[:frame] = cell[-frame:] = MARK_COLOR
            cell[:, :frame] = cell[:, -frame:] = MARK_COLOR
    return out


def dungeon_to_rgb(
    rooms: np.ndarray | torch.Tensor,
    rows: Sequence[int] | np.ndarray | torch.Tensor,
    cols: Sequence[int] | np.ndarray | torch.Tensor,
    scale: int = 4,
) -> np.ndarray:
    """Rooms `(N, 16, 11)` at their text slot positions `rows`, `cols` `(N,)` -> the dungeon map as on screen.

    Slot positions are those of the VGLC text file (`RoomMeta.slot_row`, `slot_col`); the map is
    assembled in text orientation and turned by `to_screen` as a whole, so it agrees with `room_to_rgb`
    room by room. Slots without a room are `EMPTY_SLOT_COLOR`. Returns
    `((max(cols)+1)*11*scale, (max(rows)+1)*16*scale, 3)` uint8.
    """
    scale = _check_scale(scale)
    arr = _tile_indices(rooms, "rooms", ndim=3)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("rooms is empty: dungeon_to_rgb needs at least one room")
    pos = []
    for name, v in (("rows", rows), ("cols", cols)):
        p = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if p.shape != (n,) or not np.issubdtype(p.dtype, np.integer) or (p < 0).any():
            raise ValueError(
                f"{name} must be {n} ints >= 0 (one text slot index per room), "
                f"got {p.dtype} {p.shape}: {p.tolist()[:8]}"
            )
        pos.append(p.astype(np.int64))
    r, c = pos
    seen: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(r.tolist(), c.tolist())):
        if key in seen:
            raise ValueError(f"rooms {seen[key]} and {i} share slot (row, col) = {key}; each slot holds one room")
        seen[key] = i
    text = np.full(((r.max() + 1) * ROOM_H, (c.max() + 1) * ROOM_W), -1, dtype=np.int64)  # -1 = empty slot
    for i in range(n):
        text[r[i] * ROOM_H : (r[i] + 1) * ROOM_H, c[i] * ROOM_W : (c[i] + 1) * ROOM_W] = arr[i]
    screen = to_screen(text)
    rgb = _colorize(np.where(screen < 0, 0, screen), scale)
    empty = (screen < 0).repeat(scale, axis=0).repeat(scale, axis=1)
    rgb[empty] = EMPTY_SLOT_COLOR
    return rgb


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ValueError(f"rgb must be a non-empty (H, W, 3) uint8 array, got {arr.dtype} {arr.shape}")
    return arr


_TITLE_SIZE = 11  # points
_TITLE_LINE_H = 0.24  # inches per title line at _TITLE_SIZE


def wrap_title(fig: Figure, title: str, width_in: float, fontsize: float = _TITLE_SIZE) -> list[str]:
    """`title` broken at spaces into lines that each fit `width_in` inches, measured with the figure's renderer."""
    renderer = fig.canvas.get_renderer()

    def fits(text: str) -> bool:
        probe = fig.text(0, 0, text, fontsize=fontsize)
        width = probe.get_window_extent(renderer).width / fig.dpi
        probe.remove()
        return width <= width_in

    lines: list[str] = []
    for word in title.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)  # a single word wider than the figure still gets its own line
    return lines


_LEGEND_COL_W = 1.9  # inches per column of a legend laid out below an image


def _draw_figure(
    rgb: np.ndarray, legend: bool, title: str | None, dpi: int = 100, mark_label: str | None = None
) -> Figure:
    """A pyplot-free Figure showing `rgb` at one image pixel per screen pixel, plus legend/title.

    The title is wrapped to the figure's width (never cut off); `mark_label` adds a legend entry for the
    `MARK_COLOR` outline that `grid_to_rgb` draws around marked rooms. The legend stands beside the image, or,
    where it is taller than a wide image, in columns below it, so that no blank band is left under the image.
    """
    h_in, w_in = rgb.shape[0] / dpi, rgb.shape[1] / dpi
    margin = 0.1
    entries = NUM_TILES + (mark_label is not None)
    below = legend and 0.22 * entries + 0.3 > h_in and w_in >= 2 * _LEGEND_COL_W
    columns = min(entries, int(w_in // _LEGEND_COL_W)) if below else 1
    legend_w = 2.3 if legend and not below else 0.0
    legend_h = 0.22 * -(-entries // columns) + (0.1 if below else 0.3) if legend else 0.0
    fig_w = w_in + legend_w + 2 * margin
    fig = Figure(dpi=dpi)
    FigureCanvasAgg(fig)
    lines = wrap_title(fig, title, fig_w - 2 * margin) if title else []
    title_h = _TITLE_LINE_H * len(lines) + 0.11 if lines else 0.0
    fig_h = (h_in + legend_h if below else max(h_in, legend_h)) + title_h + 2 * margin
    fig.set_size_inches(fig_w, fig_h)
    # Axes placed in inches so the image is drawn at exactly its pixel size (no resampling blur).
    ax = fig.add_axes((margin / fig_w, (fig_h - margin - title_h - h_in) / fig_h, w_in / fig_w, h_in / fig_h))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    if lines:
        fig.text(
            0.5, 1 - (margin + title_h / 2) / fig_h, "\n".join(lines), ha="center", va="center", fontsize=_TITLE_SIZE
        )
    if legend:
        handles = [
            Patch(facecolor=np.array(TILE_COLORS[ch]) / 255, edgecolor="black", label=f"{ch}  {TILE_NAMES[ch]}")
            for ch in TILES
        ]
        if mark_label is not None:
            handles.append(
                Patch(facecolor="white", edgecolor=np.array(MARK_COLOR) / 255, linewidth=2, label=mark_label)
            )
        if below:
            legend_beside(fig, handles, left_in=margin, top_in=margin + title_h + h_in + 0.05, columns=columns)
        else:
            legend_beside(fig, handles, left_in=margin + w_in + 0.1, top_in=margin + title_h)
    return fig


def legend_beside(fig: Figure, handles: Sequence[Any], left_in: float, top_in: float, columns: int = 1) -> None:
    """The legend of a figure drawn beside (or below) its image: `handles` in `columns` columns, the top-left corner
    `left_in` inches from the figure's left edge and `top_in` from its top (the figure's size already set)."""
    fig_w, fig_h = fig.get_size_inches()
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(left_in / fig_w, 1 - top_in / fig_h),
        fontsize=8,
        frameon=False,
        ncol=columns,
    )


def save_png(
    rgb: np.ndarray, path: str | Path, legend: bool = False, title: str | None = None, mark_label: str | None = None
) -> Path:
    """Write `rgb` `(H, W, 3)` uint8 as a PNG at `path`, atomically (temp file in the same folder + os.replace).

    Without legend and title the PNG is exactly the image's pixels; with them, the image is drawn at
    its pixel size with the title above (wrapped to the width) and a legend of every tile's colour and
    name to the right, plus `mark_label` for the red outline of marked rooms when given.
    Parent folders are created. Returns the path written.
    """
    arr = _check_rgb(rgb)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: save_png writes PNG files; the name must end in .png")

    def write(handle: BinaryIO) -> None:
        if legend or title:
            _draw_figure(arr, legend, title, mark_label=mark_label).savefig(handle, format="png")
        else:
            imsave(handle, arr, format="png")

    atomic_write(path, write)  # a failed write leaves the previous file and no temp file
    return path
