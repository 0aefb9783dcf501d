"""Generation metrics on hand-made rooms with known answers, and pinned shares of the real corpus."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter

import pytest
import torch

from hmolqd.config import DataConfig
from hmolqd.data import load_corpus, split_corpus
from hmolqd.data.playability import (
    check_rooms,
    playable_mask,
    room_from_rows,
    room_to_rows,
    walkable_components,
)
from hmolqd.data.tiles import DOOR, FLOOR, TILES
from hmolqd.evaluation.metrics import (
    FAR_INTERIOR,
    HAMMING_BIN_EDGES,
    KL_EPSILON,
    distinct_share,
    diversity,
    door_adherence,
    evaluate_rooms,
    nearest_hamming,
    nearest_hamming_summary,
    nearest_interior,
    novel_interior_mask,
    pattern_kl,
    symmetric_mask,
    unseen_pattern_share,
)

# An open room with doors on all four sides, as in the VGLC text files.
OPEN_4_DOORS = [
    "WWWWWWWWWWW",
    "WWWWDDDWWWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "DDFFFFFFFDD",
    "DDFFFFFFFDD",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWFFFFFFFWW",
    "WWWWDDDWWWW",
    "WWWWWWWWWWW",
]


def rooms_of(*rows_list: list[str]) -> torch.Tensor:
    """Several 16-string rooms -> `(N, 16, 11)` uint8."""
    return torch.stack([room_from_rows(rows) for rows in rows_list])


def edit(rows: list[str], changes: dict[tuple[int, int], str]) -> list[str]:
    """A copy of `rows` with single tiles replaced: {(row, col): tile}."""
    grid = [list(r) for r in rows]
    for (r, c), ch in changes.items():
        grid[r][c] = ch
    return ["".join(r) for r in grid]


def with_interior(
    interior: list[str], top: bool = True, bottom: bool = False, left: bool = False, right: bool = False
) -> list[str]:
    """Wrap 12 strings of 7 interior tiles in a wall band with doors on the chosen sides."""
    assert len(interior) == 12 and all(len(r) == 7 for r in interior)
    wall = "WWWWWWWWWWW"
    rows = [wall, "WWWWDDDWWWW" if top else wall]
    for i, inner in enumerate(interior):
        side_door = i in (5, 6)
        rows.append(("DD" if left and side_door else "WW") + inner + ("DD" if right and side_door else "WW"))
    rows += ["WWWWDDDWWWW" if bottom else wall, wall]
    return rows


def blank_interior(fill: str = "F") -> list[str]:
    return [fill * 7 for _ in range(12)]


# ---------------------------------------------------------------- text helpers and validation


def test_room_from_rows_round_trip() -> None:
    room = room_from_rows(OPEN_4_DOORS)
    assert room.dtype == torch.uint8 and room.shape == (16, 11)
    assert int(room[1, 4]) == DOOR and int(room[2, 2]) == FLOOR
    assert room_to_rows(room) == OPEN_4_DOORS


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (OPEN_4_DOORS[:15], "16 rows"),
        (OPEN_4_DOORS[:15] + ["WWWWWWWWWW"], "row 15 has 10 characters"),
        (OPEN_4_DOORS[:15] + ["WWWWWWWWWWX"], "unknown tile"),
    ],
)
def test_room_from_rows_rejects_bad_text(rows: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        room_from_rows(rows)


@pytest.mark.parametrize(
    ("rooms", "error", "message"),
    [
        (torch.zeros(2, 16, 12, dtype=torch.uint8), ValueError, r"shape \(N, 16, 11\)"),
        (torch.zeros(16, 11, dtype=torch.uint8), ValueError, r"shape \(N, 16, 11\)"),
        (torch.zeros(2, 16, 11), TypeError, "integer tensor"),
        (torch.full((2, 16, 11), len(TILES), dtype=torch.uint8), ValueError, r"\[0, 9\]"),
        ([[0] * 11] * 16, TypeError, "torch.Tensor"),
    ],
)
def test_check_rooms_fails_early(rooms: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        check_rooms(rooms)  # type: ignore[arg-type]


# ---------------------------------------------------------------- playability

SPLIT_BY_BLOCKS = blank_interior()
SPLIT_BY_BLOCKS[6] = "BBBBBBB"  # a block row cuts the top door off from the bottom door

SPLIT_BY_WATER = blank_interior()
SPLIT_BY_WATER[6] = "PPPPPPP"  # water without the ladder is not walkable

CROSS_ON_ELEMENT_FLOOR = blank_interior()
CROSS_ON_ELEMENT_FLOOR[6] = "PPPOPPP"  # ... but element + floor O is

STAIR_WALLED_IN = blank_interior()
STAIR_WALLED_IN[4:7] = ["FFBBBFF", "FFBSBFF", "FFBBBFF"]

STAIR_OPEN = blank_interior()
STAIR_OPEN[4:7] = ["FFBBBFF", "FFBSFFF", "FFBBBFF"]

DIAGONAL_ONLY = ["FFFFFFF"] * 5 + ["BBBBBBF", "BBBBBFB"] + ["FFFFFFF"] * 5  # touches only corner to corner

# A one-tile-wide serpentine corridor: forces many flood-fill iterations (path of ~70 tiles).
SERPENT = [
    "FFFFFFF",
    "BBBBBBF",
    "FFFFFFF",
    "FBBBBBB",
    "FFFFFFF",
    "BBBBBBF",
    "FFFFFFF",
    "FBBBBBB",
    "FFFFFFF",
    "BBBBBBF",
    "FFFFFFF",
    "FFFFFFF",
]
SERPENT_CUT = SERPENT[:8] + ["BBBBBBB"] + SERPENT[9:]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(OPEN_4_DOORS, True, id="open-4-doors"),
        pytest.param(with_interior(blank_interior(), top=True), True, id="one-door"),
        pytest.param(with_interior(blank_interior(), top=False), False, id="no-door"),
        pytest.param(
            with_interior(blank_interior(), top=False)[:8]
            + ["WWFFDFFFFWW"]
            + with_interior(blank_interior(), top=False)[9:],
            False,
            id="door-tile-only-inside",
        ),
        pytest.param(edit(OPEN_4_DOORS, {(0, 5): "F"}), False, id="floor-in-band"),
        pytest.param(edit(OPEN_4_DOORS, {(15, 0): "B"}), False, id="block-in-band-corner"),
        pytest.param(edit(OPEN_4_DOORS, {(7, 1): "-"}), False, id="void-in-band"),
        pytest.param(with_interior(SPLIT_BY_BLOCKS, top=True, bottom=True), False, id="doors-split-by-blocks"),
        pytest.param(with_interior(SPLIT_BY_BLOCKS, top=True, bottom=False), True, id="one-side-of-split"),
        pytest.param(with_interior(SPLIT_BY_WATER, top=True, bottom=True), False, id="doors-split-by-water"),
        pytest.param(with_interior(CROSS_ON_ELEMENT_FLOOR, top=True, bottom=True), True, id="cross-on-element-floor"),
        pytest.param(with_interior(STAIR_WALLED_IN, top=True), False, id="stair-walled-in"),
        pytest.param(with_interior(STAIR_OPEN, top=True), True, id="stair-reachable"),
        pytest.param(with_interior(DIAGONAL_ONLY, top=True, bottom=True), False, id="diagonal-is-not-connected"),
        pytest.param(with_interior(SERPENT, top=True, bottom=True), True, id="long-serpentine-path"),
        pytest.param(with_interior(SERPENT_CUT, top=True, bottom=True), False, id="serpentine-path-cut"),
        pytest.param(with_interior(blank_interior("M"), top=True, left=True), True, id="monsters-are-walkable"),
        pytest.param(with_interior(blank_interior("-"), top=True), True, id="single-door-void-interior"),
        pytest.param(with_interior(blank_interior("-"), top=True, right=True), False, id="two-doors-void-interior"),
    ],
)
def test_playable_mask_on_hand_made_rooms(rows: list[str], expected: bool) -> None:
    assert playable_mask(rooms_of(rows)).tolist() == [expected]


def test_playable_mask_batches_independently() -> None:
    rooms = rooms_of(
        OPEN_4_DOORS,
        with_interior(SPLIT_BY_BLOCKS, top=True, bottom=True),
        with_interior(SERPENT, top=True, bottom=True),
    )
    assert playable_mask(rooms).tolist() == [True, False, True]
    assert playable_mask(rooms[:0]).shape == (0,)


def test_walkable_components_labels() -> None:
    labels = walkable_components(rooms_of(with_interior(SPLIT_BY_BLOCKS, top=True, bottom=True)))[0]
    assert int(labels[0, 0]) == 0 and int(labels[8, 4]) == 0  # wall and block are not walkable
    assert labels[1, 4] == labels[7, 8]  # top door joins the upper half
    assert labels[14, 4] == labels[9, 2]  # bottom door joins the lower half
    assert labels[1, 4] != labels[14, 4]
    assert len(set(labels[labels > 0].tolist())) == 2


def test_playable_mask_is_fast_on_1000_rooms() -> None:
    rooms = rooms_of(with_interior(SERPENT, top=True, bottom=True), OPEN_4_DOORS).repeat(500, 1, 1)  # (1000, 16, 11)
    start = time.perf_counter()
    mask = playable_mask(rooms)
    assert time.perf_counter() - start < 2.0
    assert bool(mask.all())


# ---------------------------------------------------------------- symmetry

ROW_MIRROR = blank_interior()
ROW_MIRROR[0], ROW_MIRROR[11] = "BFFFFFF", "BFFFFFF"  # mirror image about the horizontal axis only
COL_MIRROR = blank_interior()
COL_MIRROR[3] = "BFFFFFB"  # mirror image about the vertical axis only
NO_MIRROR = blank_interior()
NO_MIRROR[3] = "BFFFFFF"


@pytest.mark.parametrize(
    ("interior", "expected"),
    [(blank_interior(), True), (ROW_MIRROR, True), (COL_MIRROR, True), (NO_MIRROR, False)],
    ids=["uniform", "rows-flip", "cols-flip", "asymmetric"],
)
def test_symmetric_mask(interior: list[str], expected: bool) -> None:
    # The band is ignored: one door on the left only does not break the symmetry of the interior.
    assert symmetric_mask(rooms_of(with_interior(interior, top=False, left=True))).tolist() == [expected]


# ---------------------------------------------------------------- novelty, distinctness, diversity


def test_nearest_hamming_counts_differing_tiles() -> None:
    train = rooms_of(OPEN_4_DOORS, with_interior(blank_interior("B")))
    gen = rooms_of(
        OPEN_4_DOORS,
        edit(OPEN_4_DOORS, {(5, 5): "B", (6, 6): "M"}),
        with_interior(blank_interior("B")[:11] + ["BBBFBBB"]),
    )
    assert nearest_hamming(gen, train).tolist() == [0, 2, 1]
    assert nearest_hamming(gen[:0], train).shape == (0,)
    with pytest.raises(ValueError, match="at least one room"):
        nearest_hamming(gen, train[:0])


def test_nearest_hamming_summary_values() -> None:
    summary = nearest_hamming_summary(torch.tensor([0, 0, 1, 3, 10, 50]))
    assert summary["mean"] == pytest.approx(64 / 6)
    assert summary["min"] == 0 and summary["max"] == 50
    assert summary["median"] == pytest.approx(2.0)
    assert summary["hist_edges"] == list(HAMMING_BIN_EDGES)
    # bins [0,1) [1,2) [2,5) [5,10) [10,20) [20,40) [40,80) [80,177)
    assert summary["hist_counts"] == [2, 1, 1, 0, 1, 0, 1, 0]
    json.dumps(summary)


def test_distinct_share() -> None:
    a, b = OPEN_4_DOORS, with_interior(blank_interior())
    assert distinct_share(rooms_of(a, a, b)) == pytest.approx(2 / 3)
    assert distinct_share(rooms_of(a, b)) == 1.0


def brute_force_diversity(rooms: torch.Tensor) -> float:
    pairs = list(itertools.combinations(range(rooms.shape[0]), 2))
    return sum(int((rooms[i] != rooms[j]).sum()) for i, j in pairs) / len(pairs) / 176


def test_diversity_two_rooms_and_brute_force() -> None:
    a = rooms_of(OPEN_4_DOORS)
    b = rooms_of(edit(OPEN_4_DOORS, {(3, 3): "B", (4, 4): "B", (5, 5): "B"}))
    assert diversity(torch.cat([a, b])) == pytest.approx(3 / 176)
    assert diversity(torch.cat([a, a])) == 0.0
    rooms = torch.randint(0, len(TILES), (7, 16, 11), generator=torch.Generator().manual_seed(1))
    assert diversity(rooms) == pytest.approx(brute_force_diversity(rooms))
    assert math.isnan(diversity(a))


# ---------------------------------------------------------------- KL divergences


def reference_pattern_kl(p_rooms: torch.Tensor, q_rooms: torch.Tensor, size: int, eps: float) -> float:
    """Straightforward Lucas & Volz (2019) tile-pattern KL on the text form, for cross-checking."""

    def count(rooms: torch.Tensor) -> Counter:
        found: Counter = Counter()
        for room in rooms:
            rows = room_to_rows(room)
            for r in range(16 - size + 1):
                for c in range(11 - size + 1):
                    found["".join(rows[r + i][c : c + size] for i in range(size))] += 1
        return found

    p, q = count(p_rooms), count(q_rooms)
    patterns = set(p) | set(q)
    n_p, n_q, k = sum(p.values()), sum(q.values()), len(patterns)
    total = 0.0
    for x in patterns:
        px, qx = (p[x] + eps) / (n_p + eps * k), (q[x] + eps) / (n_q + eps * k)
        total += px * math.log(px / qx)
    return total


def test_tile_kl_known_value() -> None:
    all_walls = torch.full((1, 16, 11), TILES.index("W"), dtype=torch.uint8)
    half_floor = all_walls.clone()
    half_floor[0, :8] = FLOOR  # 88 floor, 88 wall tiles
    eps = KL_EPSILON
    p = [(176 + eps) / (176 + 2 * eps), eps / (176 + 2 * eps)]  # W, F in the all-wall room
    expected = sum(pi * math.log(pi / 0.5) for pi in p)  # the half room is exactly 1/2, 1/2 after smoothing
    assert pattern_kl(all_walls, half_floor, size=1) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(math.log(2), rel=1e-6)
    # The other direction sees the floor tiles the all-wall set never has: a large, finite penalty.
    backward = pattern_kl(half_floor, all_walls, size=1)
    assert math.isfinite(backward) and backward > 5


@pytest.mark.parametrize("size", [1, 2, 3])
def test_pattern_kl_matches_reference(size: int) -> None:
    gen = torch.Generator().manual_seed(2)
    p_rooms = rooms_of(OPEN_4_DOORS, with_interior(SERPENT, top=True, bottom=True))
    q_rooms = torch.cat([rooms_of(OPEN_4_DOORS), torch.randint(0, 4, (2, 16, 11), generator=gen).to(torch.uint8)])
    for eps in (KL_EPSILON, 0.5):
        assert pattern_kl(p_rooms, q_rooms, size=size, epsilon=eps) == pytest.approx(
            reference_pattern_kl(p_rooms, q_rooms, size, eps), rel=1e-9
        )


def test_pattern_kl_zero_on_identical_sets_and_rejects_bad_args() -> None:
    rooms = rooms_of(OPEN_4_DOORS, with_interior(SERPENT))
    assert pattern_kl(rooms, rooms.flip(0)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="size must be 1-4"):
        pattern_kl(rooms, rooms, size=5)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        pattern_kl(rooms, rooms, epsilon=0.0)


# ---------------------------------------------------------------- doors and the bundle


def test_door_adherence() -> None:
    rooms = rooms_of(OPEN_4_DOORS, with_interior(blank_interior(), top=True, right=True))
    requested = torch.tensor([[True, True, True, True], [True, False, False, True]])
    assert door_adherence(rooms, requested) == 1.0
    requested[1] = torch.tensor([True, False, False, False])  # a door too many on the right
    assert door_adherence(rooms, requested) == 0.5
    with pytest.raises(ValueError, match=r"expected shape \(2, 4\)"):
        door_adherence(rooms, requested[:1])


def test_evaluate_rooms_on_a_known_set() -> None:
    train = rooms_of(OPEN_4_DOORS, with_interior(blank_interior(), top=True))
    gen = rooms_of(
        OPEN_4_DOORS,  # an exact training copy, playable
        with_interior(STAIR_OPEN, top=True),  # novel, playable, not symmetric
        with_interior(SPLIT_BY_BLOCKS, top=True, bottom=True),  # novel, not playable, symmetric
        OPEN_4_DOORS,  # the copy again: not distinct
    )
    requested = torch.tensor([[True] * 4, [True, False, False, False], [True, False, False, False], [True] * 4])
    out = evaluate_rooms(gen, train, requested_doors=requested)
    assert out["playable"] == 0.75
    assert out["novel"] == 0.5
    assert out["novel_playable"] == 0.25
    assert out["distinct"] == 0.75
    assert out["symmetric"] == 0.75
    assert out["door_adherence"] == 0.75  # the split room has a bottom door it was not asked for
    assert out["diversity"] == pytest.approx(brute_force_diversity(gen.long()))
    assert out["nearest_hamming"]["min"] == 0
    for key in ("tile_kl_train_gen", "tile_kl_gen_train", "pattern_kl_train_gen", "pattern_kl_gen_train"):
        assert out[key] > 0
    json.dumps(out)  # JSON-friendly
    assert "door_adherence" not in evaluate_rooms(gen, train)


# ---------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def real_rooms(vglc_dir):  # type: ignore[no-untyped-def]
    return load_corpus(vglc_dir)


@pytest.mark.real_data
def test_real_corpus_playable_share(real_rooms) -> None:  # type: ignore[no-untyped-def]
    # 96 rooms fail: 63 have a door or stair cut off (puzzle rooms, water needing the ladder), 33 have no door.
    rooms = real_rooms.rooms
    assert rooms.shape[0] == 459
    mask = playable_mask(rooms)
    assert int(mask.sum()) == 363  # 79.1 %
    no_door = ~real_rooms.doors.any(1)
    assert int(no_door.sum()) == 33 and not bool(mask[no_door].any())


@pytest.mark.real_data
def test_real_corpus_symmetric_share(real_rooms) -> None:  # type: ignore[no-untyped-def]
    assert int(symmetric_mask(real_rooms.rooms).sum()) == 426  # 92.8 %


@pytest.mark.real_data
def test_real_validation_split_against_training(real_rooms) -> None:  # type: ignore[no-untyped-def]
    train, val = (part.rooms for part in split_corpus(real_rooms, DataConfig().val_dungeons))
    out = evaluate_rooms(val, train)
    assert val.shape[0] == 55 and train.shape[0] == 404
    # Pinned regression values of this split: 32 of the 55 held-out rooms repeat a training room exactly.
    assert out["playable"] == pytest.approx(42 / 55)
    assert out["novel"] == pytest.approx(23 / 55)
    assert out["nearest_hamming"]["hist_counts"][0] == 32
    assert out["pattern_kl_train_gen"] == pytest.approx(0.20145405, rel=1e-6)


# ---------------------------------------------------------------- issue 21: unseen patterns and interior novelty


def test_unseen_pattern_share_counts_windows_no_reference_room_has() -> None:
    base = rooms_of(OPEN_4_DOORS)
    assert unseen_pattern_share(base, base) == 0.0
    one_block = rooms_of(edit(OPEN_4_DOORS, {(5, 5): "B"}))  # one block tile: the 4 windows that hold it are new
    windows = 15 * 10
    assert unseen_pattern_share(one_block, base) == pytest.approx(4 / windows)
    assert unseen_pattern_share(base, one_block) == 0.0  # every window of the open room occurs in the other
    with pytest.raises(ValueError, match="at least one room"):
        unseen_pattern_share(base[:0], base)


def test_novel_interior_ignores_the_doors_around_a_copied_interior() -> None:
    base = rooms_of(OPEN_4_DOORS)
    new_doors = rooms_of(edit(OPEN_4_DOORS, {(1, 4): "W", (1, 5): "W", (1, 6): "W"}))  # the north door walled up
    new_inside = rooms_of(edit(OPEN_4_DOORS, {(7, 5): "B"}))
    assert novel_interior_mask(torch.cat([base, new_doors, new_inside]), base).tolist() == [False, False, True]
    report = evaluate_rooms(torch.cat([new_doors, new_inside]), base)
    assert report["novel"] == 1.0 and report["novel_interior"] == 0.5 and report["unseen_patterns"] > 0


@pytest.mark.real_data
def test_held_out_dungeons_pinned_against_the_training_rooms(vglc_dir) -> None:  # type: ignore[no-untyped-def]
    """The level real Zelda rooms reach (the report's held-out column): tloz4_1 + tloz8_2 against the other
    dungeons' rooms with their mirrors. Real dungeons reuse interiors: 1 of their 55 rooms has a new one."""
    from hmolqd.data import augment_mirror

    train, held = split_corpus(load_corpus(vglc_dir), DataConfig().val_dungeons)
    real = evaluate_rooms(held.rooms, augment_mirror(train).rooms, requested_doors=held.doors)
    assert held.rooms.shape[0] == 55 and real["novel_interior"] == pytest.approx(1 / 55)
    assert real["unseen_patterns"] == 0.0 and real["pattern_kl_gen_train"] == pytest.approx(0.05497, abs=1e-4)


# ---------------------------------------------------------------- the distance to the nearest training interior


def test_nearest_interior_counts_interior_tiles_only() -> None:
    base = rooms_of(OPEN_4_DOORS)
    new_doors = rooms_of(edit(OPEN_4_DOORS, {(1, 4): "W", (1, 5): "W", (1, 6): "W"}))  # walls and doors: not counted
    three = rooms_of(edit(OPEN_4_DOORS, {(3, 3): "B", (7, 5): "B", (12, 8): "M"}))
    both = torch.cat([rooms_of(edit(OPEN_4_DOORS, {(3, 3): "B"})), base])  # the nearer of two references counts
    assert nearest_interior(torch.cat([base, new_doors, three]), base).tolist() == [0, 0, 3]
    assert nearest_interior(three, both).tolist() == [2]
    report = evaluate_rooms(torch.cat([base, new_doors, three]), base)
    assert report["interior_distance"] == 0.0 and report["interior_far"] == pytest.approx(1 / 3)
    assert FAR_INTERIOR == 3
    with pytest.raises(ValueError, match="at least one room"):
        nearest_interior(base, base[:0])
