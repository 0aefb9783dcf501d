"""Rendering of rooms, room grids and dungeon maps: orientation, colours, layout, PNG output, validation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from hmolqd import render
from hmolqd.data import tiles
from hmolqd.render import (
    GRID_PAD_COLOR,
    MARK_COLOR,
    PALETTE,
    TEXT_TO_SCREEN_SIDE,
    TILE_COLORS,
    describe_doors,
    dungeon_to_rgb,
    grid_to_rgb,
    room_to_rgb,
    save_png,
    to_screen,
)

H, W = tiles.ROOM_H, tiles.ROOM_W  # 16 text rows, 11 text cols


def walled_room() -> np.ndarray:
    """A `(16, 11)` room: 2-tile wall border around floor, as in the corpus."""
    room = np.full((H, W), tiles.WALL, dtype=np.uint8)
    room[2:-2, 2:-2] = tiles.FLOOR
    return room


# Door bands in text coordinates (rows, cols) as written by VGLC, and where they must land on screen.
TEXT_DOOR = {
    "top": (slice(0, 2), slice(4, 7)),
    "bottom": (slice(14, 16), slice(4, 7)),
    "left": (slice(7, 9), slice(0, 2)),
    "right": (slice(7, 9), slice(9, 11)),
}
SCREEN_DOOR = {  # screen rows x cols of the 11 x 16 screen room
    "west": (slice(4, 7), slice(0, 2)),
    "east": (slice(4, 7), slice(14, 16)),
    "north": (slice(0, 2), slice(7, 9)),
    "south": (slice(9, 11), slice(7, 9)),
}


def filled(tile: int, n: int = 1) -> np.ndarray:
    return np.full((n, H, W), tile, dtype=np.uint8)


def read_vglc(path: Path) -> tuple[np.ndarray, list[int], list[int]]:
    """Tiny parser of one `Processed/tloz*.txt`: (rooms `(n, 16, 11)`, slot rows, slot cols), void slots skipped."""
    lines = path.read_text().splitlines()
    grid = np.array([[tiles.TILE_INDEX[ch] for ch in line] for line in lines], dtype=np.uint8)
    rooms, rows, cols = [], [], []
    for r in range(grid.shape[0] // H):
        for c in range(grid.shape[1] // W):
            room = grid[r * H : (r + 1) * H, c * W : (c + 1) * W]
            if (room != tiles.VOID).any():
                rooms.append(room)
                rows.append(r)
                cols.append(c)
    return np.stack(rooms), rows, cols


def occupancy(rgb: np.ndarray) -> list[str]:
    """Screen slots holding a room in a scale-1 dungeon map (a room always has a non-black wall)."""
    nr, nc = rgb.shape[0] // W, rgb.shape[1] // H
    return [
        "".join("#" if rgb[i * W : (i + 1) * W, j * H : (j + 1) * H].any() else "." for j in range(nc))
        for i in range(nr)
    ]


# --- orientation -------------------------------------------------------------------------------------


def test_to_screen_is_the_transpose_for_numpy_and_torch() -> None:
    text = np.arange(H * W).reshape(H, W)
    screen = to_screen(text)
    assert screen.shape == (W, H)  # 11 tall, 16 wide as on the NES screen
    assert screen[3, 12] == text[12, 3]
    batch = torch.arange(2 * H * W).reshape(2, H, W)
    assert tuple(to_screen(batch).shape) == (2, W, H)
    assert torch.equal(to_screen(batch)[1], batch[1].T)


@pytest.mark.parametrize("text_side", tiles.SIDES)
def test_door_on_a_text_side_lands_on_the_documented_screen_side(text_side: str) -> None:
    room = walled_room()
    room[TEXT_DOOR[text_side]] = tiles.DOOR
    # The door band uses tiles.door_sides' own rule, so the corpus door vector and the picture agree.
    expected_vector = [side == text_side for side in tiles.SIDES]
    assert tiles.door_sides(torch.from_numpy(room)[None]).tolist() == [expected_vector]

    rgb = room_to_rgb(room, scale=1)
    assert rgb.shape == (W, H, 3)
    is_door = (rgb == TILE_COLORS["D"]).all(-1)  # (11, 16)
    want = np.zeros((W, H), dtype=bool)
    want[SCREEN_DOOR[TEXT_TO_SCREEN_SIDE[text_side]]] = True
    assert np.array_equal(is_door, want)


def test_text_to_screen_sides_pin() -> None:
    assert TEXT_TO_SCREEN_SIDE == {"top": "west", "bottom": "east", "left": "north", "right": "south"}


@pytest.mark.parametrize(
    ("doors", "text"),
    [
        ((True, True, False, False), "doors east, west; none north, south"),  # text top/bottom
        ((False, False, True, True), "doors north, south; none east, west"),  # text left/right
        ((False, False, True, False), "doors north; none east, south, west"),
        ((True, True, True, True), "doors on all four sides"),
        ((False, False, False, False), "no doors"),
    ],
)
def test_describe_doors_names_sides_as_on_screen(doors: tuple[bool, ...], text: str) -> None:
    assert describe_doors(doors) == text
    assert describe_doors(torch.tensor(doors)) == text
    # The names agree with the picture: each named door is drawn on that side of the screen room.
    room = walled_room()
    for side, d in zip(tiles.SIDES, doors):
        if d:
            room[TEXT_DOOR[side]] = tiles.DOOR
    is_door = (room_to_rgb(room, scale=1) == TILE_COLORS["D"]).all(-1)
    drawn = {side for side, where in SCREEN_DOOR.items() if is_door[where].all()}
    assert drawn == {TEXT_TO_SCREEN_SIDE[s] for s, d in zip(tiles.SIDES, doors) if d}


# --- colours -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("index, ch", list(enumerate(tiles.TILES)))
def test_each_tile_is_drawn_in_its_table_colour(index: int, ch: str) -> None:
    rgb = room_to_rgb(filled(index)[0], scale=2)
    assert rgb.dtype == np.uint8 and rgb.shape == (2 * W, 2 * H, 3)
    assert (rgb == np.array(TILE_COLORS[ch], dtype=np.uint8)).all()
    assert tuple(PALETTE[index]) == TILE_COLORS[ch]


def test_palette_is_distinct_fixed_and_read_only() -> None:
    assert PALETTE.shape == (tiles.NUM_TILES, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE.tolist()}) == tiles.NUM_TILES
    assert TILE_COLORS["-"] == (0, 0, 0)
    assert TILE_COLORS["W"] == (0, 100, 110)
    r, g, b = TILE_COLORS["M"]
    assert r > 2 * max(g, b)  # monster reads red
    pr, pg, pb = TILE_COLORS["P"]
    assert pb > 2 * max(pr, pg)  # water/lava reads blue
    with pytest.raises(ValueError):
        PALETTE[0, 0] = 1


def test_scale_repeats_each_tile_as_a_square_block() -> None:
    room = walled_room()
    room[5, 3] = tiles.STAIR  # text (5, 3) -> screen (3, 5)
    rgb = room_to_rgb(room, scale=3)
    assert rgb.shape == (3 * W, 3 * H, 3)
    stair = (rgb == TILE_COLORS["S"]).all(-1)
    assert np.array_equal(np.argwhere(stair).min(0), [9, 15]) and np.array_equal(np.argwhere(stair).max(0), [11, 17])


def test_torch_and_numpy_inputs_render_the_same() -> None:
    rooms = torch.randint(0, tiles.NUM_TILES, (3, H, W), dtype=torch.uint8)
    assert np.array_equal(room_to_rgb(rooms[0]), room_to_rgb(rooms[0].numpy()))
    assert np.array_equal(grid_to_rgb(rooms), grid_to_rgb(rooms.numpy().astype(np.int64)))


# --- grid --------------------------------------------------------------------------------------------


def test_grid_places_rooms_in_reading_order_with_padding() -> None:
    rooms = np.concatenate([filled(t) for t in (tiles.FLOOR, tiles.BLOCK, tiles.MONSTER, tiles.ELEMENT, tiles.STAIR)])
    pad = 2
    rgb = grid_to_rgb(rooms, ncols=3, pad=pad, scale=1)
    assert rgb.shape == (2 * (W + pad) + pad, 3 * (H + pad) + pad, 3)  # (28, 56, 3)
    for i, room in enumerate(rooms):
        y, x = pad + (i // 3) * (W + pad), pad + (i % 3) * (H + pad)
        assert (rgb[y : y + W, x : x + H] == PALETTE[room[0, 0]]).all(), f"room {i}"
    assert (rgb[pad + W + pad :, pad + 2 * (H + pad) :] == GRID_PAD_COLOR).all()  # unused last cell
    assert (rgb[:pad] == GRID_PAD_COLOR).all() and (rgb[:, pad + H : 2 * pad + H] == GRID_PAD_COLOR).all()


def test_grid_with_fewer_rooms_than_columns_is_one_row_wide_as_needed() -> None:
    assert grid_to_rgb(filled(tiles.FLOOR, 2), ncols=8, pad=0, scale=1).shape == (W, 2 * H, 3)


def test_marks_outline_only_the_marked_rooms() -> None:
    rooms = filled(tiles.FLOOR, 3)
    rgb = grid_to_rgb(rooms, ncols=3, pad=1, marks=torch.tensor([False, True, False]), scale=4)
    cell_h, cell_w = 4 * W, 4 * H
    cells = [rgb[1 : 1 + cell_h, 1 + i * (cell_w + 1) : 1 + i * (cell_w + 1) + cell_w] for i in range(3)]
    is_mark = [(c == MARK_COLOR).all(-1) for c in cells]
    assert not is_mark[0].any() and not is_mark[2].any()
    frame = np.ones((cell_h, cell_w), dtype=bool)
    frame[2:-2, 2:-2] = False  # width max(1, scale // 2) = 2
    assert np.array_equal(is_mark[1], frame)
    assert (cells[1][2:-2, 2:-2] == TILE_COLORS["F"]).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ncols": 0}, "ncols"),
        ({"pad": -1}, "pad"),
        ({"scale": 0}, "scale"),
        ({"marks": [True]}, "marks"),
    ],
)
def test_grid_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grid_to_rgb(filled(tiles.FLOOR, 2), **kwargs)


def test_grid_rejects_no_rooms() -> None:
    with pytest.raises(ValueError, match="empty"):
        grid_to_rgb(np.zeros((0, H, W), dtype=np.uint8))


# --- dungeon map -------------------------------------------------------------------------------------


def test_dungeon_places_rooms_at_their_transposed_slots_and_leaves_empty_slots_black() -> None:
    a = walled_room()
    a[3, 3] = tiles.MONSTER  # asymmetric content to see that each room is turned like room_to_rgb
    b = filled(tiles.BLOCK)[0]
    rgb = dungeon_to_rgb(np.stack([a, b]), rows=[0, 2], cols=[1, 0], scale=1)
    assert rgb.shape == (2 * W, 3 * H, 3)  # text 3 slot rows x 2 slot cols -> screen 2 rows x 3 cols
    assert np.array_equal(rgb[W : 2 * W, 0:H], room_to_rgb(a, scale=1))  # text (0, 1) -> screen (1, 0)
    assert np.array_equal(rgb[0:W, 2 * H : 3 * H], room_to_rgb(b, scale=1))  # text (2, 0) -> screen (0, 2)
    for r, c in [(0, 0), (0, 1), (1, 1), (1, 2)]:
        assert not rgb[r * W : (r + 1) * W, c * H : (c + 1) * H].any(), f"screen slot {(r, c)} should be empty"


def test_text_top_bottom_neighbours_meet_side_by_side_on_screen() -> None:
    upper, lower = walled_room(), walled_room()
    upper[TEXT_DOOR["bottom"]] = tiles.DOOR
    lower[TEXT_DOOR["top"]] = tiles.DOOR
    rgb = dungeon_to_rgb(np.stack([upper, lower]), rows=[0, 1], cols=[0, 0], scale=1)
    assert rgb.shape == (W, 2 * H, 3)  # vertical neighbours in the text sit west/east on screen
    door_cols = np.unique(np.argwhere((rgb == TILE_COLORS["D"]).all(-1))[:, 1])
    assert door_cols.tolist() == [14, 15, 16, 17]  # the two doors meet at the shared wall


@pytest.mark.parametrize(
    "rows, cols, match",
    [
        ([0, 0], [1, 1], "share slot"),
        ([0, -1], [0, 1], "rows"),
        ([0], [0, 1], "rows"),
        ([0, 1], [0.0, 1.0], "cols"),
    ],
)
def test_dungeon_rejects_bad_slots(rows: list, cols: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dungeon_to_rgb(filled(tiles.FLOOR, 2), rows, cols)


# --- validation of tile indices ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [tiles.NUM_TILES, -1, 255])
@pytest.mark.parametrize("draw", ["room", "grid", "dungeon"])
def test_out_of_range_tile_index_is_a_clear_error(draw: str, bad_value: int) -> None:
    rooms = filled(tiles.FLOOR, 2).astype(np.int64)
    rooms[1, 4, 7] = bad_value
    with pytest.raises(ValueError, match=r"tile indices must be in \[0, 10\)") as err:
        if draw == "room":
            room_to_rgb(rooms[1])
        elif draw == "grid":
            grid_to_rgb(rooms)
        else:
            dungeon_to_rgb(rooms, [0, 1], [0, 0])
    where = "[4, 7]" if draw == "room" else "[1, 4, 7]"
    assert where in str(err.value) and f"= {bad_value}" in str(err.value)


def test_non_integer_and_misshaped_rooms_are_rejected() -> None:
    with pytest.raises(TypeError, match="integer tile indices"):
        room_to_rgb(np.zeros((H, W), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(16, 11\)"):
        room_to_rgb(np.zeros((W, H), dtype=np.uint8))  # already screen-oriented: refused, not silently turned
    with pytest.raises(ValueError, match=r"shape \(N, 16, 11\)"):
        grid_to_rgb(np.zeros((H, W), dtype=np.uint8))


# --- PNG output --------------------------------------------------------------------------------------


def test_save_png_round_trips_pixels_exactly(tmp_path: Path) -> None:
    rgb = grid_to_rgb(torch.randint(0, tiles.NUM_TILES, (5, H, W)), ncols=3, marks=[True, False, False, True, False])
    path = save_png(rgb, tmp_path / "sub" / "grid.png")
    back = imread(path)  # (H, W, 4) float in [0, 1]
    assert back.shape[:2] == rgb.shape[:2]
    assert np.array_equal(np.rint(back[..., :3] * 255).astype(np.uint8), rgb)
    assert os.listdir(path.parent) == ["grid.png"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


@pytest.mark.parametrize("legend, title", [(True, None), (False, "a title"), (True, "both")])
def test_save_png_with_legend_or_title_decodes_and_is_larger(tmp_path: Path, legend: bool, title: str | None) -> None:
    rgb = room_to_rgb(walled_room(), scale=4)
    path = save_png(rgb, tmp_path / "room.png", legend=legend, title=title)
    back = imread(path)
    assert back.ndim == 3 and back.shape[0] >= rgb.shape[0] and back.shape[1] > rgb.shape[1]
    if legend:  # every tile colour appears in the legend swatches
        pixels = {tuple(p) for p in np.rint(back[..., :3] * 255).astype(np.uint8).reshape(-1, 3).tolist()}
        assert set(TILE_COLORS.values()) <= pixels


@pytest.mark.parametrize("legend", [False, True])
@pytest.mark.parametrize("ncols", [1, 6])
def test_long_title_is_wrapped_inside_the_picture_not_cut_off(legend: bool, ncols: int) -> None:
    rgb = grid_to_rgb(np.stack([walled_room()] * ncols), ncols=ncols)
    title = "24 generated rooms: doors east, west; none north, south (seed 1) and a few more words to be long " * 2
    fig = render._draw_figure(rgb, legend, title, mark_label="not playable" if legend else None)  # noqa: SLF001
    renderer = fig.canvas.get_renderer()
    (text,) = fig.texts
    box, image = text.get_window_extent(renderer), fig.axes[0].get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height, (box, fig.bbox)
    assert box.y0 >= image.y1  # above the image, not over it
    assert text.get_text().replace("\n", " ") == " ".join(title.split())  # every word kept
    if legend:
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels[-1] == "not playable" and len(labels) == len(tiles.TILES) + 1
        assert fig.legends[0].get_window_extent(renderer).x1 <= fig.bbox.width


def test_save_png_failure_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_png(room_to_rgb(walled_room()), tmp_path / "room.png")
    before = path.read_bytes()

    def broken_imsave(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(render, "imsave", broken_imsave)
    with pytest.raises(OSError, match="disk full"):
        save_png(room_to_rgb(filled(tiles.BLOCK)[0]), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["room.png"]


@pytest.mark.parametrize(
    "rgb, name, match",
    [
        (np.zeros((4, 4, 3), dtype=np.uint8), "x.jpg", r"\.png"),
        (np.zeros((4, 4), dtype=np.uint8), "x.png", r"\(H, W, 3\) uint8"),
        (np.zeros((4, 4, 3), dtype=np.float32), "x.png", r"\(H, W, 3\) uint8"),
    ],
)
def test_save_png_rejects_bad_input(tmp_path: Path, rgb: np.ndarray, name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_png(rgb, tmp_path / name)
    assert not (tmp_path / name).exists()


# --- the real corpus reads in the game's orientation -------------------------------------------------


@pytest.mark.real_data
def test_real_levels_read_in_game_orientation(vglc_dir: Path) -> None:
    processed = vglc_dir / "Processed"
    rooms, rows, cols = read_vglc(processed / "tloz1_1.txt")
    eagle = dungeon_to_rgb(rooms, rows, cols, scale=1)
    # Level 1 "The Eagle": entrance at the bottom middle with a room west and east, stairs (to the Bow)
    # five rooms north of it and one west, Triforce room at the tip of the east wing.
    assert occupancy(eagle) == [
        ".##...",
        "..#.##",
        "#####.",
        ".###..",
        "..#...",
        ".###..",
    ]
    entrance = eagle[5 * W : 6 * W, 2 * H : 3 * H]
    # The door out of the dungeon faces south (VGLC writes side doors one tile in from the outer wall).
    assert (entrance[W - 2, 7:9] == TILE_COLORS["D"]).all()
    stairs = np.argwhere((eagle == TILE_COLORS["S"]).all(-1))
    assert {(int(y) // W, int(x) // H) for y, x in stairs} == {(0, 1)}
    # Second Quest Level 1 is shaped like the letter E: full column on the west, arms to the east.
    rooms, rows, cols = read_vglc(processed / "tloz1_2.txt")
    assert occupancy(dungeon_to_rgb(rooms, rows, cols, scale=1)) == ["##", "##", "#.", "##", "##", "#.", "##", "##"]


# --- the sample pictures of a training run ------------------------------------------------------------


def test_sample_pictures_have_screen_side_titles_a_legend_and_marked_unplayable_rooms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hmolqd.config import Config
    from hmolqd.evaluation import report
    from hmolqd.training import outputs

    playable = walled_room()
    playable[TEXT_DOOR["top"]] = playable[TEXT_DOOR["bottom"]] = tiles.DOOR
    blocked = playable.copy()
    blocked[8, 2:9] = tiles.BLOCK  # a wall of blocks between the two doors: not playable
    rooms = torch.from_numpy(np.stack([playable, blocked, playable]))
    monkeypatch.setattr(outputs, "generate", lambda gen, n, **kw: rooms[:n])
    saved: list[dict] = []
    real_save_png = report.save_png
    monkeypatch.setattr(report, "save_png", lambda rgb, path, **kw: saved.append(kw) or real_save_png(rgb, path, **kw))
    marks: list[list[bool]] = []
    real_grid = report.grid_to_rgb
    monkeypatch.setattr(report, "grid_to_rgb", lambda r, **kw: marks.append(kw["marks"].tolist()) or real_grid(r, **kw))

    paths = outputs.write_samples(None, Config(), tmp_path, n=3)  # type: ignore[arg-type]  # generate is replaced
    assert [p.name for p in paths] == [f"sample_{name}.png" for name, _ in outputs.SAMPLE_CONDITIONS]
    assert [p.name for p in paths] == [
        "sample_unconditional.png",
        "sample_west_east.png",
        "sample_north_south.png",
        "sample_all_sides.png",
    ]
    assert [kw["title"] for kw in saved] == [
        "3 generated rooms: unconditional (any doors) (seed 0)",
        "3 generated rooms: doors east, west; none north, south (seed 1)",
        "3 generated rooms: doors north, south; none east, west (seed 2)",
        "3 generated rooms: doors on all four sides (seed 3)",
    ]
    assert all(kw["legend"] and kw["mark_label"] == "not playable" for kw in saved)
    assert marks == [[False, True, False]] * 4  # the blocked room is outlined in red, as in evaluation_samples.png
    for path in paths:
        colours = {tuple(p) for p in np.rint(imread(path)[..., :3] * 255).astype(np.uint8).reshape(-1, 3).tolist()}
        assert set(TILE_COLORS.values()) <= colours and MARK_COLOR in colours  # the legend's swatches, the red outline
