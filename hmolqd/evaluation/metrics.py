"""Generation-quality metrics for sets of rooms: pure functions over `(N, 16, 11)` tile-index tensors.

`evaluate_rooms` bundles them into one JSON-friendly dict; every other function is public so that
notebooks and the renderer can use a single metric (`playable_mask` lives in `hmolqd.data.playability`).

Units and conventions:
- Hamming distances count differing tiles out of 176 (`nearest_hamming`, `nearest_hamming_summary`);
  `diversity` is the mean pairwise Hamming distance divided by 176, a fraction in [0, 1].
- KL divergences use the natural log and the smoothing of Lucas & Volz (2019, "Tile pattern
  KL-divergence for analysing and evolving game levels", GECCO): over the union X of patterns seen in
  either set, p(x) = (count_P(x) + eps) / (N_P + eps * |X|), i.e. eps pseudo-counts added to every
  pattern before normalising (their scaled form, renormalised over X, is the same distribution), with
  `KL_EPSILON` = 1e-6, the default of the public implementations of the method. A pattern missing
  from Q thus costs about p(x) * log(p(x) * N_Q / eps): the direction matters (see `pattern_kl`).
  Patterns are all k x k windows that fit inside the 16 x 11 room (no padding): 176 windows per room
  for k = 1, 150 for k = 2.
"""

from __future__ import annotations

import math

import torch

from hmolqd.data.playability import check_rooms, playable_mask
from hmolqd.data.tiles import (
    INTERIOR,
    NUM_TILES,
    ROOM_H,
    ROOM_W,
    door_sides,
    mirror_axes,
    nearest_distance,
    pattern_codes,
)

__all__ = [
    "HAMMING_BIN_EDGES",
    "KL_EPSILON",
    "distinct_share",
    "diversity",
    "door_adherence",
    "evaluate_rooms",
    "nearest_hamming",
    "nearest_hamming_summary",
    "FAR_INTERIOR",
    "nearest_interior",
    "novel_interior_mask",
    "pattern_kl",
    "playable_mask",
    "symmetric_mask",
    "unseen_pattern_share",
]

TILES_PER_ROOM: int = ROOM_H * ROOM_W  # 176
KL_EPSILON: float = 1e-6
# Histogram bins of the nearest-training-room distance, in tiles: [0,1) = exact copies, [1,2), [2,5), ...
HAMMING_BIN_EDGES: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 40, 80, TILES_PER_ROOM + 1)
FAR_INTERIOR: int = 3  # interior tiles from every training interior that make a room count as far (interior_far)
_CHUNK = 1024  # rows of the generated set compared at once (bounds memory)


def nearest_hamming(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)`, `(M, 16, 11)` -> `(N,)` int64: tiles that differ from the closest reference room."""
    return nearest_distance(
        check_rooms(generated, "generated").flatten(1), check_rooms(reference, "reference").flatten(1)
    )


def nearest_interior(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)`, `(M, 16, 11)` -> `(N,)` int64: interior tiles (rows 2-13, columns 2-8: 84 of them) that
    differ from the closest reference room's interior. 0 = a copied interior (`novel_interior_mask` is d > 0);
    the doors and walls, which a generator is asked for, do not count."""
    inside = (slice(None), *INTERIOR)
    gen = check_rooms(generated, "generated")[inside].flatten(1)  # (N, 84)
    ref = torch.unique(check_rooms(reference, "reference")[inside].flatten(1), dim=0)  # (U, 84)
    return nearest_distance(gen, ref)


def nearest_hamming_summary(distances: torch.Tensor) -> dict[str, float | list[float] | list[int]]:
    """Summary of nearest-reference distances (in tiles): mean, min, max, quantiles and a histogram.

    Quantiles q10, q25, median, q75, q90 interpolate linearly (`torch.quantile`).

    `hist_counts[i]` counts distances d with `hist_edges[i] <= d < hist_edges[i + 1]`.
    """
    d = distances.detach().to("cpu", torch.float64)
    if d.numel() == 0:
        raise ValueError("nearest_hamming_summary: no distances to summarise")
    q = torch.quantile(d, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)).tolist()
    edges = torch.tensor(HAMMING_BIN_EDGES, dtype=torch.float64)
    bins = torch.bucketize(d, edges, right=True) - 1  # index i with edges[i] <= d < edges[i+1]
    counts = torch.bincount(bins, minlength=len(HAMMING_BIN_EDGES) - 1)
    return {
        "mean": float(d.mean()),
        "min": float(d.min()),
        "q10": q[0],
        "q25": q[1],
        "median": q[2],
        "q75": q[3],
        "q90": q[4],
        "max": float(d.max()),
        "hist_edges": list(HAMMING_BIN_EDGES),
        "hist_counts": [int(c) for c in counts[: len(HAMMING_BIN_EDGES) - 1]],
    }


def distinct_share(rooms: torch.Tensor) -> float:
    """Unique rooms / rooms (1.0 = no two rooms are identical)."""
    rooms = check_rooms(rooms)
    if rooms.shape[0] == 0:
        raise ValueError("distinct_share: no rooms")
    return torch.unique(rooms.flatten(1), dim=0).shape[0] / rooms.shape[0]


def diversity(rooms: torch.Tensor) -> float:
    """Mean Hamming distance over all pairs of distinct indices i < j, divided by 176 (a fraction in [0, 1]).

    Exact and O(N * 176): at each position, with n_t rooms holding tile t there, the number of ordered
    pairs that differ is N^2 - sum_t n_t^2. NaN for fewer than two rooms (no pairs).
    """
    rooms = check_rooms(rooms)
    n = rooms.shape[0]
    if n < 2:
        return math.nan
    counts = torch.nn.functional.one_hot(rooms.flatten(1), NUM_TILES).sum(0).double()  # (176, NUM_TILES)
    differing_ordered_pairs = (n * n - (counts**2).sum(1)).sum()
    return float(differing_ordered_pairs / (n * (n - 1)) / TILES_PER_ROOM)


def symmetric_mask(rooms: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)` -> `(N,)` bool: the interior (rows 2-13, columns 2-8) equals its mirror about either axis."""
    rows, cols = mirror_axes(check_rooms(rooms))
    return rows | cols


def pattern_kl(p_rooms: torch.Tensor, q_rooms: torch.Tensor, size: int = 2, epsilon: float = KL_EPSILON) -> float:
    """KL(P || Q) between the size x size tile-pattern distributions of two room sets (Lucas & Volz 2019).

    `size=1` gives the tile KL. Smoothing: see the module docstring (eps pseudo-counts on the union of
    patterns). Not symmetric: KL(train || gen) punishes training patterns the generator never makes,
    KL(gen || train) punishes generated patterns absent from training.
    """
    if not 1 <= size <= 4:
        raise ValueError(f"pattern size must be 1-4 (codes are int64), got {size}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0 so every pattern has mass, got {epsilon}")
    p_codes = pattern_codes(check_rooms(p_rooms, "p_rooms"), size)
    q_codes = pattern_codes(check_rooms(q_rooms, "q_rooms"), size)
    if p_codes.numel() == 0 or q_codes.numel() == 0:
        raise ValueError("pattern_kl: both room sets need at least one room")
    _, inverse = torch.unique(torch.cat([p_codes, q_codes]), return_inverse=True)
    k = int(inverse.max()) + 1  # |X|, patterns seen in either set
    p_count = torch.bincount(inverse[: p_codes.numel()], minlength=k).double()
    q_count = torch.bincount(inverse[p_codes.numel() :], minlength=k).double()
    p = (p_count + epsilon) / (p_count.sum() + epsilon * k)
    q = (q_count + epsilon) / (q_count.sum() + epsilon * k)
    return float((p * (p / q).log()).sum())


def unseen_pattern_share(generated: torch.Tensor, reference: torch.Tensor, size: int = 2) -> float:
    """Share of the generated rooms' size x size windows whose tile pattern occurs in no reference room: the
    patterns a real dungeon never shows (the mass that KL(gen || train) charges most for)."""
    gen = pattern_codes(check_rooms(generated, "generated"), size)
    seen = torch.unique(pattern_codes(check_rooms(reference, "reference"), size))
    if gen.numel() == 0 or seen.numel() == 0:
        raise ValueError("unseen_pattern_share: both room sets need at least one room")
    return float((~torch.isin(gen, seen)).double().mean())


def novel_interior_mask(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`(N, 16, 11)`, `(M, 16, 11)` -> `(N,)` bool: the room's interior (rows 2-13, columns 2-8, inside the wall
    band) equals no reference room's interior. VGLC reuses few interiors, so a room with new doors around a
    copied interior is novel as a whole room but not here."""
    inner = check_rooms(generated, "generated")[(slice(None), *INTERIOR)].flatten(1)  # (N, 84)
    ref = check_rooms(reference, "reference")[(slice(None), *INTERIOR)].flatten(1)  # (M, 84)
    if ref.shape[0] == 0:
        raise ValueError("reference: need at least one room to compare interiors with")
    ref = torch.unique(ref, dim=0)[None]  # (1, U, 84)
    seen = [(chunk[:, None, :] == ref).all(-1).any(1) for chunk in inner.split(_CHUNK)]  # (chunk, U, 84) at a time
    return ~torch.cat(seen) if seen else torch.zeros(0, dtype=torch.bool)


def door_adherence(rooms: torch.Tensor, requested: torch.Tensor) -> float:
    """Share of rooms whose door sides (`door_sides`: top, bottom, left, right) equal the requested `(N, 4)` bool."""
    rooms = check_rooms(rooms)
    requested = torch.as_tensor(requested).to("cpu")
    if tuple(requested.shape) != (rooms.shape[0], 4):
        raise ValueError(
            f"requested doors: expected shape ({rooms.shape[0]}, 4) (top, bottom, left, right), "
            f"got {tuple(requested.shape)}"
        )
    if rooms.shape[0] == 0:
        raise ValueError("door_adherence: no rooms")
    return float((door_sides(rooms) == requested.bool()).all(1).double().mean())


def evaluate_rooms(
    generated: torch.Tensor,
    train_rooms: torch.Tensor,
    requested_doors: torch.Tensor | None = None,
) -> dict[str, float | dict]:
    """Every metric of a generated set against the training rooms, as JSON-friendly values.

    Shares are fractions of the generated rooms: playable, novel (no exact training copy),
    novel_playable (both), novel_playable_symmetric (all three), distinct, symmetric, door_adherence (only when
    `requested_doors` `(N, 4)` is given), novel_interior (the interior inside the wall band is no training
    room's). diversity: mean pairwise Hamming / 176. tile_kl_* / pattern_kl_* (2 x 2): KL in nats, both
    directions; unseen_patterns: share of the generated 2 x 2 windows that no training room has.
    nearest_hamming: summary of each room's distance (tiles) to its nearest training room; interior_distance: the
    median distance (tiles of 84) from each room's interior to its nearest training interior, and
    interior_far: the share of rooms at >= `FAR_INTERIOR` tiles from every training interior.
    """
    gen = check_rooms(generated, "generated")
    train = check_rooms(train_rooms, "train_rooms")
    if gen.shape[0] == 0:
        raise ValueError("evaluate_rooms: no generated rooms")
    playable = playable_mask(gen)
    nearest = nearest_hamming(gen, train)
    inner = nearest_interior(gen, train)  # (N,) interior tiles away from the nearest training interior
    novel = nearest > 0
    symmetric = symmetric_mask(gen)
    out: dict[str, float | dict] = {
        "playable": float(playable.double().mean()),
        "novel": float(novel.double().mean()),
        "novel_playable": float((novel & playable).double().mean()),
        "novel_playable_symmetric": float((novel & playable & symmetric).double().mean()),
        "novel_interior": float(novel_interior_mask(gen, train).double().mean()),
        "distinct": distinct_share(gen),
        "diversity": diversity(gen),
        "symmetric": float(symmetric.double().mean()),
        "tile_kl_train_gen": pattern_kl(train, gen, size=1),
        "tile_kl_gen_train": pattern_kl(gen, train, size=1),
        "pattern_kl_train_gen": pattern_kl(train, gen, size=2),
        "pattern_kl_gen_train": pattern_kl(gen, train, size=2),
        "unseen_patterns": unseen_pattern_share(gen, train, size=2),
        "interior_distance": float(torch.quantile(inner.double(), 0.5)),
        "interior_far": float((inner >= FAR_INTERIOR).double().mean()),
        "nearest_hamming": nearest_hamming_summary(nearest),
    }
    if requested_doors is not None:
        out["door_adherence"] = door_adherence(gen, requested_doors)
    return out
