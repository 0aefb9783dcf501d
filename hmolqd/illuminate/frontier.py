"""The iso-line emitter that favours the frontier of the archive (`hmolqd.illuminate.emitters` says why).

Its own module because it subclasses a pyribs class at import time, and pyribs is the optional extra
`hmolqd[qd]`: `hmolqd.illuminate.emitters` imports this only when it builds a scheduler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ribs.emitters import IsoLineEmitter

INTERIOR_WEIGHT = 0.1  # selection weight of an elite whose neighbour cells are all filled (1 per empty one)


def frontier_weights(archive: Any) -> tuple[np.ndarray, np.ndarray]:
    """(elite rows of `archive.data()` order, their selection weights): empty face neighbours in the grid."""
    data = archive.data(["index", "solution"])
    grid = archive.int_to_grid_index(data["index"])  # (n, dims)
    dims = np.asarray(archive.dims)
    filled = np.zeros(dims, dtype=bool)
    filled[tuple(grid.T)] = True
    empty = np.zeros(len(grid))
    for axis in range(len(dims)):
        for step in (-1, 1):
            near = grid.copy()
            near[:, axis] += step
            inside = (near[:, axis] >= 0) & (near[:, axis] < dims[axis])
            empty[inside] += ~filled[tuple(near[inside].T)]
    return data["solution"], np.maximum(empty, INTERIOR_WEIGHT)


class FrontierIsoLineEmitter(IsoLineEmitter):
    """pyribs' iso-line operator, x = p1 + iso_sigma N(0, I) + line_sigma N(0, 1) (p2 - p1), with p1 drawn by
    `frontier_weights` and p2 uniformly from the elites (from this emitter's own generator, so that the
    checkpointed emitter resumes the same draws); the initial solutions while the archive is empty."""

    def ask(self) -> np.ndarray:
        if self.archive.empty:
            return super().ask()
        solutions, weights = frontier_weights(self.archive)
        first = solutions[self._rng.choice(len(solutions), size=self.batch_size, p=weights / weights.sum())]
        second = solutions[self._rng.integers(len(solutions), size=self.batch_size)]
        iso = self._rng.normal(scale=self.iso_sigma, size=first.shape)
        line = self._rng.normal(scale=self.line_sigma, size=(self.batch_size, 1))
        return self._clip(first + iso + line * (second - first))
