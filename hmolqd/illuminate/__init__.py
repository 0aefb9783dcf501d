"""Dungeons on demand: layout genomes (`genome`), a MAP-Elites archive of whole dungeons with pyribs
(`archive`: descriptors and objective; `checkpoint`: `archive.pt`; `emitters` and `frontier`: the search; `run`:
batches, in-process or on Dask; `guard`: the locked `--out` folder), its pictures and files (`outputs`) and the
elite closest to a request (`api`).

Needs the optional extra `hmolqd[qd]` (pyribs). May import `hmolqd.dungeon` and what it may import; the CLI,
the notebook helpers and the package API call in here.

Typical use::

    import hmolqd
    result = hmolqd.illuminate("runs/cpu/outputs/model_final.pt", evaluations=2000, out="illuminate_out")
    dungeon = hmolqd.generate_dungeon(model, target={"rooms": 30, "path_share": 0.6}, archive="illuminate_out")
"""

from __future__ import annotations

from hmolqd.illuminate.api import generate_dungeon, illuminate, load_illumination
from hmolqd.illuminate.archive import DEFAULT_DESCRIPTORS, DESCRIPTORS, IlluminateError
from hmolqd.illuminate.run import SearchSettings

__all__ = [
    "DEFAULT_DESCRIPTORS",
    "DESCRIPTORS",
    "IlluminateError",
    "SearchSettings",
    "generate_dungeon",
    "illuminate",
    "load_illumination",
]
