"""Where an illumination's dungeons are built: the pieces of a batch, in this process or on a Dask cluster.

pyribs runs the search in-process, and on one machine so does evaluation: the room model samples each round's
rooms in one batched call, and the per-dungeon Python (decoding genomes, walking, playing) runs on the worker
processes of `hmolqd.dungeon.workers` (`hmolqd.illuminate.api.illuminate` starts one per core). A batch is built
in `chunks` pieces (`Chunk`, `evaluate_chunk`: one `build_dungeons` call each); given a Dask client
(`client=dask.distributed.Client(...)`, as pyribs' own examples use Dask to spread evaluations over cores or
machines), each piece is one Dask task on its workers. The pieces' seeds do not depend on where they run, so a
run on Dask, one on worker processes and one in a single process with the same `chunks` give the same archive;
`chunks` itself is a setting of the run (rooms are drawn per piece).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from hmolqd.dungeon.build import Dungeon, DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.build import Plan as DungeonPlan
from hmolqd.dungeon.sampler import sample_layout
from hmolqd.dungeon.source import RoomSource
from hmolqd.dungeon.workers import IN_PROCESS, Workers
from hmolqd.illuminate.archive import IlluminateError
from hmolqd.illuminate.genome import plan_genome

_BASELINE_SEED = 10_000_019
# seed step between the chunks of one batch: unlike build.py's steps between groups (7,919) and rounds
# (1,000,003), so that two chunks' rooms do not share seeds for the handful of groups and rounds a batch has
_CHUNK_SEED = 104_729


@dataclass(frozen=True, eq=False)
class Chunk:
    """One piece of a batch, built by one `build_dungeons` call (in-process, or as one task of a Dask client):
    genomes `(k, GENOME_DIM)` to decode (MAP-Elites), or the baseline's `sample_layout` indices `(k, 1)`."""

    mode: str
    solutions: np.ndarray
    seed: int  # the run's seed (layout sampling of the baseline)
    build_seed: int  # seed of the room model's calls for this piece


def _baseline_plan(job: tuple[int, DungeonConfig, int]) -> DungeonPlan:
    layout_seed, config, build_seed = job
    return plan(sample_layout(layout_seed), config, seed=build_seed)


def evaluate_chunk(
    chunk: Chunk, source: RoomSource, config: DungeonConfig, workers: Workers = IN_PROCESS
) -> list[Dungeon]:
    """Build the dungeons of one chunk: all their rooms in batched calls, regeneration included; decoding,
    walking and playing on `workers` (`hmolqd.dungeon.workers`)."""
    if chunk.mode == "map-elites":
        plans = workers.map(partial(plan_genome, config=config, seed=chunk.build_seed), list(chunk.solutions))
    else:
        seeds = [chunk.seed * _BASELINE_SEED + int(i) for i in chunk.solutions[:, 0]]
        plans = workers.map(_baseline_plan, [(s, config, chunk.build_seed) for s in seeds])
    return build_dungeons(plans, source, config, seed=chunk.build_seed, workers=workers)


def evaluate(
    chunks: Sequence[Chunk], source: Any, config: DungeonConfig, client: Any = None, workers: Workers = IN_PROCESS
) -> list[Dungeon]:
    """The dungeons of `chunks`, in order: in this process (its per-dungeon Python on `workers`), or one Dask task
    per chunk on `client` (a `dask.distributed.Client`; `source` is then the RoomSource already scattered to its
    workers, which `illuminate` does once per run). All give the same dungeons."""
    if client is None:
        return [d for chunk in chunks for d in evaluate_chunk(chunk, source, config, workers)]
    futures = client.map(evaluate_chunk, list(chunks), source=source, config=config, pure=False)
    return [d for part in client.gather(futures) for d in part]


def split(mode: str, solutions: np.ndarray, seed: int, build_seed: int, pieces: int) -> list[Chunk]:
    """`solutions` in up to `pieces` contiguous chunks; chunk k's rooms come from build_seed + k x _CHUNK_SEED."""
    parts = [p for p in np.array_split(np.arange(len(solutions)), min(pieces, len(solutions))) if len(p)]
    return [Chunk(mode, solutions[p], seed, build_seed + k * _CHUNK_SEED) for k, p in enumerate(parts)]


def check_client(client: Any) -> None:
    if client is not None and not all(callable(getattr(client, m, None)) for m in ("scatter", "map", "gather")):
        raise IlluminateError(
            f"client must be a dask.distributed.Client (with scatter, map and gather), got {type(client).__name__}"
        )
