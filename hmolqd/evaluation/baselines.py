"""A non-neural reference generator: a Markov chain over room tiles.

The interior (rows 2-13, columns 2-8) is sampled tile by tile in raster order, each tile conditioned on
its left, up and up-left neighbours in the 16 x 11 text grid - the neighbourhood of the
multi-dimensional Markov chains of Snodgrass & Ontanon (2014, "Experiments in map generation using
Markov chains", FDG). The outer two-tile band - walls and doors - is copied from a training room, so
the doors are real by construction. Contexts never seen in training back off to (left, up), then
(left), then the interior tile frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hmolqd.data.playability import check_rooms
from hmolqd.data.tiles import BAND_WIDTH, NUM_TILES, ROOM_H, ROOM_W, SIDES, door_sides

_INNER_ROWS = range(BAND_WIDTH, ROOM_H - BAND_WIDTH)  # 2..13
_INNER_COLS = range(BAND_WIDTH, ROOM_W - BAND_WIDTH)  # 2..8


class MarkovRoomGenerator:
    """`fit(train_rooms)` counts tiles given (left, up, up-left); `sample(n, doors, seed)` draws rooms.

    Deterministic: the same fitted rooms, `n`, `doors` and `seed` give the same rooms on any machine.
    """

    def __init__(self) -> None:
        self._table: torch.Tensor | None = None  # (NUM_TILES**3, NUM_TILES) float64 next-tile weights
        self._bands: torch.Tensor | None = None  # (M, 16, 11) int64 training rooms, only the band is used
        self._band_doors: torch.Tensor | None = None  # (M, 4) bool door sides of each training room

    def fit(self, train_rooms: torch.Tensor) -> MarkovRoomGenerator:
        """Count next-tile frequencies over the interiors of `(M, 16, 11)` training rooms; returns self."""
        rooms = check_rooms(train_rooms, "train_rooms")
        if rooms.shape[0] == 0:
            raise ValueError("MarkovRoomGenerator.fit: need at least one training room")
        inner = rooms[:, BAND_WIDTH : ROOM_H - BAND_WIDTH, BAND_WIDTH : ROOM_W - BAND_WIDTH]  # (M, 12, 7)
        # The three context neighbours of every interior tile, each (M, 12, 7).
        left = rooms[:, BAND_WIDTH : ROOM_H - BAND_WIDTH, BAND_WIDTH - 1 : ROOM_W - BAND_WIDTH - 1]
        up = rooms[:, BAND_WIDTH - 1 : ROOM_H - BAND_WIDTH - 1, BAND_WIDTH : ROOM_W - BAND_WIDTH]
        up_left = rooms[:, BAND_WIDTH - 1 : ROOM_H - BAND_WIDTH - 1, BAND_WIDTH - 1 : ROOM_W - BAND_WIDTH - 1]
        t = NUM_TILES

        def counts(context: torch.Tensor, contexts: int) -> torch.Tensor:  # -> (contexts, NUM_TILES)
            flat = (context * t + inner).flatten()
            return torch.bincount(flat, minlength=contexts * t).view(contexts, t).double()

        full = counts((left * t + up) * t + up_left, t**3)  # context index (left, up, up_left)
        left_up = counts(left * t + up, t**2)
        left_only = counts(left, t)
        unigram = torch.bincount(inner.flatten(), minlength=t).double()  # (NUM_TILES,)

        # Back-off table indexed by the full context: the most specific level with any count wins.
        ctx = torch.arange(t**3)
        table = full.clone()
        for level, index in ((left_up, ctx // t), (left_only, ctx // (t * t))):
            unseen = table.sum(1) == 0
            table[unseen] = level[index[unseen]]
        unseen = table.sum(1) == 0
        table[unseen] = unigram
        self._table = table
        self._bands = rooms
        self._band_doors = door_sides(rooms)
        return self

    def next_tile_weights(self, left: int, up: int, up_left: int) -> torch.Tensor:
        """`(NUM_TILES,)` float64 unnormalised next-tile counts for a context, after back-off."""
        if self._table is None:
            raise RuntimeError("MarkovRoomGenerator.next_tile_weights: call fit(train_rooms) first")
        for name, tile in (("left", left), ("up", up), ("up_left", up_left)):
            if not 0 <= tile < NUM_TILES:
                raise ValueError(f"{name} tile must lie in [0, {NUM_TILES - 1}], got {tile}")
        return self._table[(left * NUM_TILES + up) * NUM_TILES + up_left].clone()

    def sample(self, n: int, doors: torch.Tensor | Sequence[bool] | None = None, seed: int = 0) -> torch.Tensor:
        """Draw `n` rooms: `(n, 16, 11)` uint8.

        doors: None (the band of a uniformly drawn training room), one `(4,)` door-side vector for all
        rooms, or `(n, 4)`, sides ordered top, bottom, left, right. The band is copied from a training
        room with exactly those door sides; when no training room has that combination, each side's
        strip is copied from a room whose door status on that side matches.
        """
        if self._table is None or self._bands is None or self._band_doors is None:
            raise RuntimeError("MarkovRoomGenerator.sample: call fit(train_rooms) first")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        gen = torch.Generator().manual_seed(int(seed))
        rooms = self._sample_bands(n, doors, gen)  # (n, 16, 11) int64, interior still to be drawn
        t = NUM_TILES
        cdf = self._table.cumsum(1)  # (T**3, T)
        for r in _INNER_ROWS:
            for c in _INNER_COLS:
                context = (rooms[:, r, c - 1] * t + rooms[:, r - 1, c]) * t + rooms[:, r - 1, c - 1]  # (n,)
                weights = cdf[context]  # (n, T) cumulative weights
                # (n, 1): the draw that picks this cell's tile, scaled to the total weight
                u_tile = torch.rand(n, 1, generator=gen, dtype=torch.float64) * weights[:, -1:]
                # First tile whose cumulative weight exceeds u_tile; zero-weight tiles can never be hit.
                rooms[:, r, c] = torch.searchsorted(weights, u_tile, right=True).squeeze(1)
        return rooms.to(torch.uint8)

    def _sample_bands(self, n: int, doors: torch.Tensor | Sequence[bool] | None, gen: torch.Generator) -> torch.Tensor:
        """`(n, 16, 11)` int64 rooms whose band is copied from training rooms (interior left as is)."""
        assert self._bands is not None and self._band_doors is not None
        m = self._bands.shape[0]
        if doors is None:
            pick = torch.randint(m, (n,), generator=gen)
            return self._bands[pick].clone()
        want = torch.as_tensor(doors, dtype=torch.bool).to("cpu")
        if want.dim() == 1:
            want = want.unsqueeze(0).expand(n, -1)
        if tuple(want.shape) != (n, len(SIDES)):
            raise ValueError(f"doors: expected shape (4,) or ({n}, 4) (sides {SIDES}), got {tuple(want.shape)}")
        rooms = torch.empty(n, ROOM_H, ROOM_W, dtype=torch.int64)
        for i in range(n):
            rooms[i] = self._band_for(want[i], gen)
        return rooms

    def _band_for(self, want: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One `(16, 11)` room whose band has door tiles on exactly the sides `want` `(4,)` bool."""
        assert self._bands is not None and self._band_doors is not None
        match = (self._band_doors == want).all(1).nonzero().flatten()
        if match.numel():
            return self._bands[match[torch.randint(match.numel(), (1,), generator=gen)]][0].clone()
        # No training room has this door combination: assemble the band side by side. Each side's strip
        # covers its own door region, and the corners are copied with the top and bottom strips.
        room = torch.zeros(ROOM_H, ROOM_W, dtype=torch.int64)
        strips = {
            "top": (slice(0, BAND_WIDTH), slice(0, ROOM_W)),
            "bottom": (slice(ROOM_H - BAND_WIDTH, ROOM_H), slice(0, ROOM_W)),
            "left": (slice(BAND_WIDTH, ROOM_H - BAND_WIDTH), slice(0, BAND_WIDTH)),
            "right": (slice(BAND_WIDTH, ROOM_H - BAND_WIDTH), slice(ROOM_W - BAND_WIDTH, ROOM_W)),
        }
        for side, name in enumerate(SIDES):
            rows, cols = strips[name]
            match = (self._band_doors[:, side] == want[side]).nonzero().flatten()
            if match.numel() == 0:
                state = "a door" if want[side] else "no door"
                raise ValueError(f"doors: no training room has {state} on the {SIDES[side]} side, cannot copy a band")
            src = self._bands[match[torch.randint(match.numel(), (1,), generator=gen)]][0]
            room[rows, cols] = src[rows, cols]
        return room
