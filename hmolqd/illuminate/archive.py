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

**Checkpoint** (`archive.pt`, written atomically after every batch): one dict saved with `torch.save` and read
with `torch.load(weights_only=True)`, like the training checkpoints: the pyribs scheduler (archive and
emitters with their random states), the elites' dungeons, the counters and the run's settings. The
scheduler and the dungeons are objects, so the load allows their classes by name (`safe_globals()`: the
pyribs and hmolqd classes a run holds, numpy's arrays, dtypes and random generators, `frozenset`) and
nothing else: those classes are rebuilt from their data without running their code, and a file that
names any other global (a pickled function call, say) is refused with that global's name, nothing in it
run. A run resumes from it only with the same settings; any file that does not load is a one-line error.
An `archive.pkl` (the pickle of hmolqd before this format) is never unpickled: it is refused with its name.
"""

from __future__ import annotations

import importlib
import math
import pickle  # for its error class only: nothing here unpickles with pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmolqd.atomic import atomic_write
from hmolqd.checkpointing.verify import load_error_reason
from hmolqd.data.attributes import has_water
from hmolqd.dungeon.build import MONSTER_LABELS, Dungeon
from hmolqd.dungeon.sampler import REAL_TEMPLATES, template_of

CHECKPOINT_NAME = "archive.pt"
CHECKPOINT_VERSION = 2
LEGACY_CHECKPOINT_NAME = "archive.pkl"  # version 1, a pickle: refused, never loaded (module docstring)


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


@dataclass
class State:
    """Everything a resumed illumination needs (module docstring)."""

    settings: dict[str, Any]
    scheduler: Any
    evaluations: int
    batches: int
    elites: dict[int, Dungeon]  # archive cell -> the elite's dungeon
    beaten: dict[int, bool]  # archive cell -> its elite was beaten
    history: list[dict[str, Any]]
    counts: dict[str, float]  # beaten before / after regeneration, rooms regenerated, seconds evaluating


# Classes a checkpoint may hold, by import path (module docstring). pyribs keeps some in private modules, so
# they are named as its installed version spells them; a name it lacks is left out (a file that needs it is
# then refused, naming it). hmolqd's own are the dataclasses of a `Dungeon` and the frontier emitter.
_SAFE_CLASS_NAMES: tuple[str, ...] = (
    "ribs.schedulers._scheduler.Scheduler",
    "ribs.archives._grid_archive.GridArchive",
    "ribs.archives._array_store.ArrayStore",
    "ribs.archives._archive_stats.ArchiveStats",
    "ribs.emitters._iso_line_emitter.IsoLineEmitter",
    "hmolqd.illuminate.frontier.FrontierIsoLineEmitter",
    "hmolqd.dungeon.build.Dungeon",
    "hmolqd.dungeon.build.Plan",
    "hmolqd.dungeon.embed.Embedding",
    "hmolqd.dungeon.layout.Layout",
    "hmolqd.dungeon.layout.Link",
    "hmolqd.dungeon.layout.Room",
    "hmolqd.dungeon.mission.MissionResult",
    "hmolqd.dungeon.rules.PlayResult",
    "hmolqd.dungeon.walk.WalkResult",
)
# numpy's dtypes that pyribs' arrays and counters use.
_NUMPY_TYPES = (np.bool_, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64)


def _importable(name: str) -> Any | None:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def safe_globals() -> list[Any]:
    """What `load_state` lets `torch.load(weights_only=True)` rebuild (module docstring)."""
    # numpy's reconstructors, found from live objects so that numpy 1's and 2's module paths both work.
    rebuilders = [
        np.zeros(1).__reduce__()[0],  # numpy.(_)core.multiarray._reconstruct
        np.int64(0).__reduce__()[0],  # numpy.(_)core.multiarray.scalar
        np.random.default_rng(0).__reduce__()[0],  # numpy.random._pickle.__generator_ctor
        np.random.PCG64(0).__reduce__()[0],  # numpy.random._pickle.__bit_generator_ctor
        np.random.SeedSequence(0).__reduce__()[0],  # numpy.random.bit_generator.__pyx_unpickle_SeedSequence
    ]
    numpy_types = [np.ndarray, np.dtype, np.random.PCG64, np.random.SeedSequence, *_NUMPY_TYPES]
    numpy_types += [type(np.dtype(t)) for t in _NUMPY_TYPES]
    classes = [c for c in map(_importable, _SAFE_CLASS_NAMES) if c is not None]
    return [*rebuilders, *numpy_types, *classes, frozenset]


def checkpoint_path(folder: Path) -> Path:
    """`folder`'s checkpoint; a folder holding only an earlier hmolqd's pickle (`archive.pkl`) is refused,
    so that a new run neither loads it nor writes over that run's files."""
    path = Path(folder) / CHECKPOINT_NAME
    legacy = Path(folder) / LEGACY_CHECKPOINT_NAME
    if not path.exists() and legacy.exists():
        raise IlluminateError(
            f"{legacy}: an archive of an earlier hmolqd (a pickle, not loaded: it could run code); "
            "use another --out, or move it away to start anew here"
        )
    return path


def save_state(path: Path, state: State) -> None:
    blob = {"version": CHECKPOINT_VERSION, **{f.name: getattr(state, f.name) for f in fields(State)}}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_state(path: Path) -> State:
    """Read a checkpoint with `torch.load(weights_only=True)`; anything that is not one is an
    `IlluminateError` naming the file (module docstring)."""
    if Path(path).name == LEGACY_CHECKPOINT_NAME:
        raise IlluminateError(f"{path}: a pickle checkpoint of an earlier hmolqd, not loaded (it could run code)")
    try:
        with torch.serialization.safe_globals(safe_globals()):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,  # torch's refusal of a global that is not allowed, among others
        OSError,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
    ) as err:
        raise IlluminateError(
            f"{path}: corrupted archive checkpoint ({load_error_reason(err)}); move it away to start anew"
        ) from None
    if (
        not isinstance(blob, dict)
        or blob.get("version") != CHECKPOINT_VERSION
        or set(blob) - {"version"} != {f.name for f in fields(State)}
    ):
        raise IlluminateError(
            f"{path}: not an archive checkpoint of version {CHECKPOINT_VERSION}; move it away to start anew"
        )
    return State(**{f.name: blob[f.name] for f in fields(State)})
