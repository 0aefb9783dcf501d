"""A MAP-Elites archive of whole dungeons (pyribs), its descriptors, objective and checkpoint.

**Behaviour descriptors** (`DESCRIPTORS`; the first three follow Schrum et al., GECCO 2020 and
arXiv 2105.12960, who bin Zelda dungeons by distinct rooms, backtracked rooms and reachable rooms, and score
rooms on the solution path / rooms):

- `rooms`: rooms of the dungeon (8-72, 16 bins of 4);
- `path_share`: distinct rooms on the player's solution path / rooms (0-1, 10 bins): how linear it is;
- `backtracking`: distinct rooms the player re-enters on its solution (0-10, 10 bins);
- `loops`: links - rooms + 1 (independent cycles, 0-20, 10 bins);
- `locks`: doors needing a key, boss key, key item or switch (0-16, 8 bins);
- `leniency`: share of rooms without enemies, e / m / b labels (0-1, 10 bins; Smith & Whitehead 2010);
- `water`: share of rooms with water or lava tiles (0-1, 10 bins).

Values past a range go to its edge bin. The default archive is rooms x path_share x backtracking.

**Objective** (why): the archive should hold dungeons that a player beats and that look like Zelda
dungeons, without rewarding the descriptors themselves (those are for diversity). A dungeon the player
cannot beat on its tiles scores 0 (as in Schrum et al., where an unbeatable dungeon is a failure); a
beaten one scores 0.5 + 0.5 x likeness, where likeness is the mean over the statistics of the 18 real
graphs that the descriptors do not measure (dead ends, key-locked, soft-locked and bombable doors, enemy,
puzzle rooms: `LIKENESS_FIELDS`) of exp(-z^2 / 2), z = distance to the real mean in real standard
deviations. QD score = sum of the elites' objectives (offset 0).

**Checkpoint**: `hmolqd.illuminate.checkpoint` (`archive.pt`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmolqd.data.attributes import has_water
from hmolqd.dungeon.build import MONSTER_LABELS, Dungeon
from hmolqd.dungeon.sampler import REAL_TEMPLATES, template_of


class IlluminateError(ValueError):
    """Bad input to an illumination; the message names the descriptor, target, setting or file."""


@dataclass(frozen=True)
class Descriptor:
    name: str
    low: float
    high: float
    bins: int
    measure: Callable[[Dungeon], float]
    doc: str


def _path_share(d: Dungeon) -> float:
    return d.play.path_share if d.play is not None else 0.0


def _backtracking(d: Dungeon) -> float:
    return float(d.play.rooms_backtracked) if d.play is not None and d.play.beaten else 0.0


DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor("rooms", 8, 72, 16, lambda d: float(len(d.layout.rooms)), "rooms of the dungeon"),
        Descriptor("path_share", 0.0, 1.0, 10, _path_share, "distinct rooms on the solution path / rooms"),
        Descriptor("backtracking", 0, 10, 10, _backtracking, "distinct rooms re-entered on the solution"),
        Descriptor(
            "loops", 0, 20, 10, lambda d: float(len(d.layout.links) - len(d.layout.rooms) + 1), "links - rooms + 1"
        ),
        Descriptor("locks", 0, 16, 8, lambda d: float(sum(link.locked for link in d.layout.links)), "locked doors"),
        Descriptor(
            "leniency",
            0.0,
            1.0,
            10,
            lambda d: sum(not (r.labels & MONSTER_LABELS) for r in d.layout.rooms) / len(d.layout.rooms),
            "share of rooms without enemies",
        ),
        Descriptor(
            "water", 0.0, 1.0, 10, lambda d: float(has_water(d.rooms).float().mean()), "share of rooms with water"
        ),
    )
}
DEFAULT_DESCRIPTORS: tuple[str, ...] = ("rooms", "path_share", "backtracking")
LIKENESS_FIELDS: tuple[str, ...] = (
    "dead_share",
    "key_share",
    "soft_share",
    "bomb_share",
    "enemy_share",
    "puzzle_share",
)
_REAL = {
    f: (float(np.mean([getattr(t, f) for t in REAL_TEMPLATES])), float(np.std([getattr(t, f) for t in REAL_TEMPLATES])))
    for f in LIKENESS_FIELDS
}


def check_descriptors(names: Sequence[str]) -> tuple[Descriptor, ...]:
    names = tuple(names)
    unknown = [n for n in names if n not in DESCRIPTORS]
    if unknown:
        raise IlluminateError(f"unknown descriptor {unknown[0]!r}; known: {', '.join(DESCRIPTORS)}")
    if not 1 <= len(names) <= 3 or len(set(names)) != len(names):
        raise IlluminateError(f"descriptors: give 1 to 3 distinct names, got {list(names)}")
    return tuple(DESCRIPTORS[n] for n in names)


def likeness(d: Dungeon) -> float:
    """Mean closeness of the layout's statistics to the real graphs' (module docstring), in [0, 1]."""
    t = template_of(d.layout)
    return sum(math.exp(-0.5 * ((getattr(t, f) - m) / max(s, 1e-6)) ** 2) for f, (m, s) in _REAL.items()) / len(_REAL)


def objective(d: Dungeon) -> float:
    beaten = d.play is not None and d.play.beaten
    return 0.5 + 0.5 * likeness(d) if beaten else 0.0


def measures(d: Dungeon, descriptors: Sequence[Descriptor]) -> np.ndarray:
    """The dungeon's descriptor values, clipped into each range."""
    return np.array([min(max(desc.measure(d), desc.low), desc.high) for desc in descriptors], dtype=np.float64)


def make_archive(descriptors: Sequence[Descriptor], solution_dim: int, seed: int) -> Any:
    from ribs.archives import GridArchive

    return GridArchive(
        solution_dim=solution_dim,
        dims=[d.bins for d in descriptors],
        ranges=[(d.low, d.high) for d in descriptors],
        seed=seed,
    )


def archive_stats(archive: Any, beaten: dict[int, bool] | None = None) -> dict[str, Any]:
    """Coverage, QD score, elites and (given each cell's beaten flag) the share of beaten elites."""
    data = archive.data()
    cells = int(np.prod(archive.dims))
    out = {
        "elites": len(archive),
        "cells": cells,
        "coverage": len(archive) / cells,
        "qd_score": float(np.sum(data["objective"])) if len(archive) else 0.0,
    }
    if beaten is not None:
        flags = [beaten.get(int(i), False) for i in data["index"]]
        out["beaten_elites"] = float(np.mean(flags)) if flags else None
    return out
