"""Room parser, corpus, split, mirror augmentation and data_dir discovery (hmolqd.data.vglc / dataset)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hmolqd.config import DataConfig
from hmolqd.data import (
    FETCH_COMMAND,
    MIRRORS,
    Corpus,
    DataNotFoundError,
    VGLCFormatError,
    augment_mirror,
    find_data_dir,
    load_corpus,
    mirror_corpus,
    split_corpus,
    tiles,
)

VOID_ROOM = ["-" * 11] * 16
OPPOSITE = (1, 0, 3, 2)  # tiles.SIDES index of the opposite side


def make_room(doors: tuple[bool, bool, bool, bool] = (False,) * 4, stairs: bool = False, fill: str = "F") -> list[str]:
    """A 16x11 room laid out like the corpus: walls on 2-tile bands, doors where VGLC puts them."""
    grid = [["W"] * 11 for _ in range(16)]
    for r in range(2, 14):
        for c in range(2, 9):
            grid[r][c] = fill
    top, bottom, left, right = doors
    for c in (4, 5, 6):
        if top:
            grid[1][c] = "D"
        if bottom:
            grid[14][c] = "D"
    for r in (7, 8):
        if left:
            grid[r][1] = "D"
        if right:
            grid[r][9] = "D"
    if stairs:
        grid[8][5] = "S"
    return ["".join(row) for row in grid]


def write_dungeon(folder: Path, name: str, slots: list[list[list[str]]]) -> Path:
    """Write a grid of rooms (slots[row][col] = 16 lines) as `<folder>/<name>.txt`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for slot_row in slots:
        for r in range(16):
            lines.append("".join(room[r] for room in slot_row))
    path = folder / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A VGLC-like folder: tloz3_2 is a 2x2 grid with one void slot; tloz1_1 is one room (sorted first)."""
    a = make_room((False, True, False, True))  # slot (0,0): door down to C, right to B
    b = make_room((False, False, True, False), stairs=True)  # slot (0,1)
    c = make_room((True, False, False, False), fill="B")  # slot (1,0)
    write_dungeon(tmp_path / "Processed", "tloz3_2", [[a, b], [c, VOID_ROOM]])
    write_dungeon(tmp_path / "Processed", "tloz1_1", [[make_room((False, False, False, True))]])
    return tmp_path


def decode(room: torch.Tensor) -> list[str]:
    return ["".join(tiles.TILES[int(i)] for i in row) for row in room]


def check_neighbours(corpus: Corpus) -> None:
    """Neighbour links are symmetric and match the slot grid (top = slot row - 1, ...)."""
    steps = ((-1, 0), (1, 0), (0, -1), (0, 1))
    for i, m in enumerate(corpus.meta):
        for side, n in enumerate(m.neighbors):
            if n < 0:
                continue
            other = corpus.meta[n]
            assert other.neighbors[OPPOSITE[side]] == i
            assert (other.dungeon, other.mirrored) == (m.dungeon, m.mirrored)
            assert (other.slot_row, other.slot_col) == (m.slot_row + steps[side][0], m.slot_col + steps[side][1])


# ---------------------------------------------------------------- parser on tiny files


def test_tiny_dungeon_metadata(tiny_dir: Path) -> None:
    corpus = load_corpus(tiny_dir)
    assert corpus.rooms.dtype == torch.uint8 and tuple(corpus.rooms.shape) == (4, 16, 11)
    assert corpus.dungeons == ("tloz1_1", "tloz3_2")  # files in sorted order
    assert decode(corpus.rooms[3]) == make_room((True, False, False, False), fill="B")
    lone, a, b, c = corpus.meta
    assert (lone.level, lone.quest, lone.neighbors, lone.grid_shape) == (1, 1, (-1, -1, -1, -1), (1, 1))
    assert (a.dungeon, a.level, a.quest, a.grid_shape) == ("tloz3_2", 3, 2, (2, 2))
    assert [(m.slot_row, m.slot_col) for m in (a, b, c)] == [(0, 0), (0, 1), (1, 0)]
    # neighbours: top, bottom, left, right; slot (1,1) is void
    assert a.neighbors == (-1, 3, -1, 2)
    assert b.neighbors == (-1, -1, 1, -1)
    assert c.neighbors == (1, -1, -1, -1)
    assert [m.doors for m in corpus.meta] == [
        (False, False, False, True),
        (False, True, False, True),
        (False, False, True, False),
        (True, False, False, False),
    ]
    assert corpus.stairs.tolist() == [False, False, True, False]
    assert corpus.doors.shape == (4, 4) and torch.equal(corpus.doors, tiles.door_sides(corpus.rooms))
    check_neighbours(corpus)


def test_processed_dir_accepted_and_crlf_tolerated(tiny_dir: Path) -> None:
    path = tiny_dir / "Processed" / "tloz3_2.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert torch.equal(load_corpus(tiny_dir / "Processed").rooms, load_corpus(tiny_dir).rooms)


def _lines(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path / "tloz1_1.txt", make_room((True, True, True, True)) + make_room()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("ragged", ["tloz1_1.txt:5:", "ragged", "length 10"]),
        ("unknown_char", ["tloz1_1.txt:3:", "'X'", "column 7"]),
        ("height", ["tloz1_1.txt:31:", "height 31", "multiple of the room height 16"]),
        ("width", ["tloz1_1.txt:1:", "width 12", "multiple of the room width 11"]),
        ("empty", ["tloz1_1.txt:1:", "empty file"]),
        ("all_void", ["tloz1_1.txt", "every room slot is void"]),
        ("not_utf8", ["tloz1_1.txt:2:", "not UTF-8", "0xff"]),
    ],
)
def test_bad_room_file_names_file_and_line(tmp_path: Path, case: str, expected: list[str]) -> None:
    path, lines = _lines(tmp_path)
    if case == "ragged":
        lines[4] = lines[4][:10]
    elif case == "unknown_char":
        lines[2] = lines[2][:6] + "X" + lines[2][7:]
    elif case == "height":
        lines = lines[:31]
    elif case == "width":
        lines = [line + "W" for line in lines]
    elif case == "empty":
        lines = []
    elif case == "all_void":
        lines = VOID_ROOM
    if case == "not_utf8":
        path.write_bytes(("\n".join(lines[:1]) + "\n").encode() + b"\xff\xfeWWW\n")
    else:
        path.write_text("\n".join(lines))
    with pytest.raises(VGLCFormatError) as info:
        load_corpus(tmp_path)
    for part in expected:
        assert part in str(info.value)


def test_folder_without_room_files(tmp_path: Path) -> None:
    (tmp_path / "Processed").mkdir()
    (tmp_path / "Processed" / "README.txt").write_text("F = FLOOR\n")
    with pytest.raises(VGLCFormatError, match=str(tmp_path)):
        load_corpus(tmp_path)


def test_bad_file_name(tmp_path: Path) -> None:
    (tmp_path / "tloz_extra.txt").write_text("\n".join(make_room()))
    with pytest.raises(VGLCFormatError, match=r"tloz_extra.txt: file name must be tloz<level>_<quest>"):
        load_corpus(tmp_path)


def test_unreadable_path_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "tloz1_1.txt").mkdir()  # a directory where a file should be: reading it fails with OSError
    with pytest.raises(VGLCFormatError, match=r"tloz1_1.txt: cannot read file"):
        load_corpus(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_permission_denied_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "tloz1_1.txt"
    path.write_text("\n".join(make_room()))
    path.chmod(0)
    try:
        with pytest.raises(VGLCFormatError, match=r"tloz1_1.txt: cannot read file: Permission denied"):
            load_corpus(tmp_path)
    finally:
        path.chmod(0o644)


# ---------------------------------------------------------------- subset / split / mirror


def test_subset_renumbers_neighbours(tiny_dir: Path) -> None:
    corpus = load_corpus(tiny_dir)
    sub = corpus.subset([3, 1])  # C, A: C's top neighbour A is now index 1; A loses B
    assert [m.neighbors for m in sub.meta] == [(1, -1, -1, -1), (-1, 0, -1, -1)]
    assert torch.equal(sub.rooms, corpus.rooms[[3, 1]])
    mask = torch.tensor([False, True, True, True])
    assert [m.neighbors for m in corpus.subset(mask).meta] == [(-1, 2, -1, 1), (-1, -1, 0, -1), (0, -1, -1, -1)]
    with pytest.raises(ValueError, match="unique"):
        corpus.subset([1, 1])
    with pytest.raises(IndexError, match="out of range"):
        corpus.subset([4])


def test_split_by_whole_dungeons(tiny_dir: Path) -> None:
    corpus = load_corpus(tiny_dir)
    train, val = split_corpus(corpus, ["tloz1_1"])
    assert (train.dungeons, val.dungeons, len(train), len(val)) == (("tloz3_2",), ("tloz1_1",), 3, 1)
    assert torch.equal(train.rooms, corpus.rooms[1:])
    assert train.meta[0].neighbors == (-1, 2, -1, 1)  # renumbered from (-1, 3, -1, 2)
    check_neighbours(train)


@pytest.mark.parametrize(
    "val, message",
    [
        (["tloz1_1", "tloz9_9"], r"\['tloz9_9'\] not in the corpus; available dungeons: tloz1_1, tloz3_2"),
        (["tloz1_1", "tloz3_2"], "training split would be empty"),
        ([], "empty"),
    ],
)
def test_split_errors(tiny_dir: Path, val: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_corpus(load_corpus(tiny_dir), val)


@pytest.mark.parametrize("mirror", MIRRORS)
def test_mirror_keeps_doors_and_grid_consistent(tiny_dir: Path, mirror: str) -> None:
    corpus = load_corpus(tiny_dir)
    mirrored = mirror_corpus(corpus, mirror)
    dims = {"rows": [1], "cols": [2], "both": [1, 2]}[mirror]
    assert torch.equal(mirrored.rooms, corpus.rooms.flip(dims))
    assert torch.equal(tiles.door_sides(mirrored.rooms), mirrored.doors)
    a = mirrored.meta[1]  # the tloz3_2 room at slot (0,0) with doors bottom + right
    expected = {
        "rows": ((True, False, False, True), (1, 0)),
        "cols": ((False, True, True, False), (0, 1)),
        "both": ((True, False, True, False), (1, 1)),
    }
    assert (a.doors, (a.slot_row, a.slot_col), a.mirrored) == (*expected[mirror], mirror)
    check_neighbours(mirrored)
    twice = mirror_corpus(mirrored, mirror)
    assert torch.equal(twice.rooms, corpus.rooms) and twice.meta == corpus.meta


def test_mirror_rejects_metadata_that_disagrees_with_tiles(tiny_dir: Path) -> None:
    corpus = load_corpus(tiny_dir)
    from dataclasses import replace

    lying = Corpus(
        rooms=corpus.rooms, meta=(replace(corpus.meta[0], doors=(True, False, False, False)),) + corpus.meta[1:]
    )
    with pytest.raises(ValueError, match=r"broke the doors of 1 room\(s\), e.g. index 0 \(tloz1_1"):
        mirror_corpus(lying, "rows")


def test_augment_mirror_appends_copies(tiny_dir: Path) -> None:
    corpus = load_corpus(tiny_dir)
    aug = augment_mirror(corpus)
    assert len(aug) == 3 * len(corpus)
    assert [m.mirrored for m in aug.meta] == [""] * 4 + ["rows"] * 4 + ["cols"] * 4
    assert aug.meta[5].neighbors == (7, -1, -1, 6)  # rows-mirrored A: its bottom neighbour C is now on top
    check_neighbours(aug)
    with pytest.raises(ValueError, match="mirror must be one of"):
        augment_mirror(corpus, ["diagonal"])


# ---------------------------------------------------------------- data_dir discovery


def test_find_configured_folder(tiny_dir: Path, tmp_path: Path) -> None:
    assert find_data_dir(str(tiny_dir)) == tiny_dir
    assert find_data_dir(tiny_dir / "Processed") == tiny_dir  # pointed at Processed/ itself
    flat = tmp_path / "flat"
    write_dungeon(flat, "tloz2_1", [[make_room()]])
    assert find_data_dir(flat) == flat and len(load_corpus(flat)) == 1


def test_configured_folder_without_rooms_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        find_data_dir(str(tmp_path / "nowhere"), kaggle_root=tmp_path, default=tmp_path)
    assert str(tmp_path / "nowhere") in str(info.value) and FETCH_COMMAND in str(info.value)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is not a folder"),
        (lambda p: p.mkdir(), "holds no tloz*.txt"),
    ],
    ids=["missing", "file", "empty_folder"],
)
@pytest.mark.parametrize(
    ("key", "hint"), [("data_dir", "or set data_dir to"), ("--data", "or pass --data FOLDER with")]
)
def test_configured_folder_problem_is_named_with_the_callers_setting(
    tmp_path: Path, make, says: str, key: str, hint: str
) -> None:
    folder = tmp_path / "corpus"
    make(folder)
    with pytest.raises(DataNotFoundError) as info:
        find_data_dir(str(folder), kaggle_root=tmp_path, default=tmp_path, key=key)
    message = str(info.value)
    assert message.startswith(f"{key} {str(folder)!r} {says}") and hint in message
    assert ("holds no" in message) == (says == "holds no tloz*.txt")


def test_find_on_kaggle_then_default(tmp_path: Path) -> None:
    kaggle = tmp_path / "kaggle" / "input"
    default = tmp_path / "data" / "vglc-zelda"
    write_dungeon(default / "Processed", "tloz1_1", [[make_room()]])
    assert find_data_dir(None, kaggle_root=kaggle, default=default) == default  # no /kaggle/input at all
    (kaggle / "unrelated").mkdir(parents=True)
    (kaggle / "unrelated" / "notes.txt").write_text("x")
    zelda = kaggle / "vglc" / "TheVGLC-main" / "The Legend of Zelda"
    write_dungeon(zelda / "Processed", "tloz1_1", [[make_room()]])
    assert find_data_dir(None, kaggle_root=kaggle, default=default) == zelda  # any depth, Kaggle first


def test_nothing_found_prints_download_command(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        find_data_dir(None, kaggle_root=tmp_path / "kaggle", default=tmp_path / "data" / "vglc-zelda")
    assert FETCH_COMMAND in str(info.value) and "python -m hmolqd fetch-data ./data/vglc-zelda" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


# ---------------------------------------------------------------- the real corpus


def test_tests_find_the_real_corpus_where_the_readme_fetches_it(tmp_path: Path) -> None:
    """./data/vglc-zelda of the repository (the README's fetch-data target) is found with no ../shared beside it."""
    from conftest import real_vglc_dir

    repo = tmp_path / "repo"
    assert real_vglc_dir(repo, env="") is None
    (repo / "data" / "vglc-zelda" / "Processed").mkdir(parents=True)
    assert real_vglc_dir(repo, env="") == repo / "data" / "vglc-zelda"
    (tmp_path / "shared" / "data" / "vglc-zelda" / "Processed").mkdir(parents=True)
    assert real_vglc_dir(repo, env="") == repo / "data" / "vglc-zelda"  # the repository's own copy first
    assert real_vglc_dir(repo, env=str(tmp_path / "elsewhere")) is None  # a set $HMOLQD_VGLC_DIR is the only place


@pytest.fixture(scope="module")
def real_corpus(vglc_dir: Path) -> Corpus:
    return load_corpus(vglc_dir)


@pytest.mark.real_data
def test_real_corpus_counts(real_corpus: Corpus) -> None:
    assert len(real_corpus) == 459
    assert torch.unique(real_corpus.rooms.flatten(1), dim=0).shape[0] == 267
    assert len(real_corpus.dungeons) == 18 and real_corpus.dungeons == tuple(sorted(real_corpus.dungeons))
    assert {(m.level, m.quest) for m in real_corpus.meta} == {(lv, q) for lv in range(1, 10) for q in (1, 2)}
    # regression pins: rooms with a door per side, rooms with stairs, the first room
    assert real_corpus.doors.sum(0).tolist() == [167, 168, 218, 237]
    assert int(real_corpus.stairs.sum()) == 39
    first = real_corpus.meta[0]
    assert (first.dungeon, first.slot_row, first.slot_col, first.grid_shape, first.neighbors) == (
        "tloz1_1",
        0,
        2,
        (6, 6),
        (-1, 2, -1, -1),
    )
    check_neighbours(real_corpus)


@pytest.mark.real_data
def test_real_default_split(real_corpus: Corpus) -> None:
    train, val = split_corpus(real_corpus, DataConfig().val_dungeons)
    assert val.dungeons == ("tloz4_1", "tloz8_2") and (len(train), len(val)) == (404, 55)
    assert not set(train.dungeons) & set(val.dungeons)
    check_neighbours(train)
    check_neighbours(val)


@pytest.mark.real_data
def test_real_mirror_all(real_corpus: Corpus) -> None:
    aug = augment_mirror(real_corpus, MIRRORS)
    assert len(aug) == 4 * 459
    assert torch.equal(tiles.door_sides(aug.rooms), aug.doors)
    check_neighbours(aug)


def test_kaggle_search_follows_links_without_looping(tmp_path: Path) -> None:
    kaggle = tmp_path / "input"
    (kaggle / "a").mkdir(parents=True)
    (kaggle / "a" / "loop").symlink_to(kaggle)  # a link cycle must not hang the search
    target = tmp_path / "elsewhere" / "zelda"
    write_dungeon(target / "Processed", "tloz1_1", [[make_room()]])
    (kaggle / "b").symlink_to(tmp_path / "elsewhere")
    assert find_data_dir(None, kaggle_root=kaggle, default=tmp_path / "none") == kaggle / "b" / "zelda"


@pytest.mark.real_data
def test_recombined_rooms_are_new_interiors_made_of_seen_patterns(vglc_dir: Path) -> None:
    from hmolqd.data import augment_mirror, augment_recombine
    from hmolqd.data.tiles import INTERIOR, pattern_codes

    train, _ = split_corpus(load_corpus(vglc_dir), DataConfig().val_dungeons)
    base = augment_mirror(train)
    out = augment_recombine(base, 2, seed=3)
    assert len(out) == 3 * len(base) and torch.equal(out.rooms[: len(base)], base.rooms)
    made = out.rooms[len(base) :]
    seen = torch.unique(pattern_codes(base.rooms, 2))
    assert torch.isin(pattern_codes(made, 2), seen).all()  # no 2x2 window the corpus lacks
    assert not (made[(slice(None), *INTERIOR)] == tiles.VOID).any()  # no half of a void room
    known = {tuple(r) for r in base.rooms[(slice(None), *INTERIOR)].flatten(1).tolist()}
    assert not any(tuple(r) in known for r in made[(slice(None), *INTERIOR)].flatten(1).tolist())
    assert len({tuple(r) for r in made.flatten(1).tolist()}) > len(base)  # many distinct new rooms
    hosts = out.meta[len(base) :]
    assert [m.stairs for m in hosts] == tiles.has_stairs(made).tolist() and all(m.neighbors == (-1,) * 4 for m in hosts)
    assert torch.equal(tiles.door_sides(made), out.doors[len(base) :])  # the host's walls and doors
    assert torch.equal(augment_recombine(base, 2, seed=3).rooms, out.rooms)  # seeded
    assert augment_recombine(base, 0, seed=3) is base
    with pytest.raises(ValueError, match="recombine_augment"):
        augment_recombine(base, -1, seed=3)
