"""Illuminate the space of dungeons: MAP-Elites over layout genomes with pyribs, batched and checkpointed.

`illuminate(model, evaluations=N, out=DIR)` fills the archive of `hmolqd.illuminate.archive` with N dungeon
evaluations. Each batch of genomes (asked of the pyribs scheduler of `hmolqd.illuminate.emitters`, in the unit box of
`hmolqd.illuminate.genome`) is decoded into layouts and built with one batched room-model call per round
(`hmolqd.dungeon.build_dungeons`, regeneration included); each dungeon is played on its tiles
(`hmolqd.dungeon.play`) and told to the scheduler with its objective and descriptors. After every batch the
state is checkpointed (`archive.pt` in `out`, `hmolqd.illuminate.archive`), so a killed run re-run with the
same arguments resumes after its last batch and ends with the same archive as one never interrupted: the
genomes come from the scheduler's saved random state, the rooms from seed + batch index.

`mode="baseline"` is today's generator at the same budget: `sample_layout` from the 18 real templates,
one dungeon per evaluation, inserted into the same kind of archive (the bench's reference).

**Where evaluation runs.** pyribs runs the search in-process, and on one machine so does evaluation (the
default: no process pool is started). A batch is built in `chunks` pieces (`Chunk`, `evaluate_chunk`: one
`build_dungeons` call each); given a Dask client (`client=dask.distributed.Client(...)`, as pyribs' own
examples use Dask to spread evaluations over cores or machines), each piece is one Dask task on its workers.
The pieces' seeds do not depend on where they run, so a run on Dask and one in-process with the same
`chunks` give the same archive; `chunks` itself is a setting of the run (rooms are drawn per piece).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hmolqd.dungeon.api import as_source
from hmolqd.dungeon.build import Dungeon, DungeonConfig, build_dungeons, plan
from hmolqd.dungeon.sampler import sample_layout
from hmolqd.dungeon.source import RoomSource
from hmolqd.illuminate.archive import (
    DEFAULT_DESCRIPTORS,
    Descriptor,
    IlluminateError,
    State,
    archive_stats,
    check_descriptors,
    checkpoint_path,
    load_state,
    make_archive,
    measures,
    objective,
    save_state,
)
from hmolqd.illuminate.emitters import make_scheduler
from hmolqd.illuminate.genome import plan_genome

MODES = ("map-elites", "baseline")
_BATCH_SEED = 1_000_003
_BASELINE_SEED = 10_000_019
# seed step between the chunks of one batch: unlike build.py's steps between groups (7,919) and rounds
# (1,000,003), so that two chunks' rooms do not share seeds for the handful of groups and rounds a batch has
_CHUNK_SEED = 104_729


@dataclass(frozen=True)
class Illumination:
    """A finished (or resumed and finished) illumination."""

    archive: Any  # ribs GridArchive
    descriptors: tuple[Descriptor, ...]
    elites: dict[int, Dungeon]
    stats: dict[str, Any]
    history: list[dict[str, Any]]
    counts: dict[str, float]
    settings: dict[str, Any]
    out: Path | None


def _baseline_archive(descriptors: Sequence[Descriptor], seed: int) -> Any:
    return make_archive(descriptors, 1, seed)


@dataclass(frozen=True, eq=False)
class Chunk:
    """One piece of a batch, built by one `build_dungeons` call (in-process, or as one task of a Dask client):
    genomes `(k, GENOME_DIM)` to decode (MAP-Elites), or the baseline's `sample_layout` indices `(k, 1)`."""

    mode: str
    solutions: np.ndarray
    seed: int  # the run's seed (layout sampling of the baseline)
    build_seed: int  # seed of the room model's calls for this piece


def evaluate_chunk(chunk: Chunk, source: RoomSource, config: DungeonConfig) -> list[Dungeon]:
    """Build the dungeons of one chunk: all their rooms in batched calls, regeneration included."""
    if chunk.mode == "map-elites":
        plans = [plan_genome(g, config, seed=chunk.build_seed) for g in chunk.solutions]
    else:
        layouts = [sample_layout(chunk.seed * _BASELINE_SEED + int(i)) for i in chunk.solutions[:, 0]]
        plans = [plan(layout, config, seed=chunk.build_seed) for layout in layouts]
    return build_dungeons(plans, source, config, seed=chunk.build_seed)


def evaluate(chunks: Sequence[Chunk], source: Any, config: DungeonConfig, client: Any = None) -> list[Dungeon]:
    """The dungeons of `chunks`, in order: in this process, or one Dask task per chunk on `client` (a
    `dask.distributed.Client`; `source` is then the RoomSource already scattered to its workers, which
    `illuminate` does once per run). Both give the same dungeons."""
    if client is None:
        return [d for chunk in chunks for d in evaluate_chunk(chunk, source, config)]
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


def check_settings(evaluations: int, search: SearchSettings) -> None:
    for name, value in (("evaluations", evaluations), ("batch_size", search.batch_size), ("chunks", search.chunks)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise IlluminateError(f"{name} must be an int > 0, got {value!r}")
    if search.mode not in MODES:
        raise IlluminateError(f"unknown mode {search.mode!r}; choose one of {', '.join(MODES)}")


@dataclass(frozen=True)
class SearchSettings:
    """How an illumination searches: what a resumed run must share with the one that wrote the checkpoint."""

    descriptors: Sequence[str] = DEFAULT_DESCRIPTORS  # names in `hmolqd.illuminate.archive.DESCRIPTORS`
    seed: int = 0
    batch_size: int = 50  # genomes asked of the scheduler (or layouts sampled) per batch
    mode: str = "map-elites"  # or "baseline" (module docstring)
    config: DungeonConfig = DungeonConfig()
    # pieces each batch is built in: one `build_dungeons` call each, or one task each on a Dask `client`; the
    # rooms are drawn per piece, so it is part of what the archive is (1: one batched call per batch)
    chunks: int = 1


_SEARCH_KEYS: frozenset[str] = frozenset(f.name for f in fields(SearchSettings))


def illuminate(
    model: Any,
    *,
    evaluations: int = 2000,
    out: str | Path | None = None,
    search: SearchSettings = SearchSettings(),
    progress: Callable[[dict[str, Any]], None] | None = None,
    client: Any = None,
    **options: Any,
) -> Illumination:
    """Fill a MAP-Elites archive of dungeons (module docstring). `model`: a room model, the path of its
    `model_final.pt`, or any RoomSource; `out`: the folder of the checkpoint (and of `write_outputs`);
    `options`: fields of `SearchSettings` by name (descriptors, seed, batch_size, mode, config: they replace
    those of `search`) and the room model's sampling keys; `client`: a `dask.distributed.Client` to build each
    batch's chunks on its workers (module docstring). Returns the `Illumination`."""
    search = replace(search, **{k: options.pop(k) for k in sorted(_SEARCH_KEYS & set(options))})
    sampling = options
    check_settings(evaluations, search)
    check_client(client)
    descs = check_descriptors(search.descriptors)
    source = as_source(model, **sampling)
    settings = {
        "mode": search.mode,
        "descriptors": [d.name for d in descs],
        "seed": search.seed,
        "batch_size": search.batch_size,
        "chunks": search.chunks,
        "source": source.name,
        "config": asdict(search.config),
        "sampling": {k: sampling[k] for k in sorted(sampling)},
    }
    path = checkpoint_path(Path(out)) if out is not None else None
    state = _resume(path, settings) if path is not None and path.exists() else None
    if state is None:
        state = _fresh_state(settings, descs)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # on Dask the source (the room model) goes to the workers once, not once per batch
    shipped = source if client is None else client.scatter(source, broadcast=True, hash=False)
    while state.evaluations < evaluations:
        _step(state, descs, shipped, search.config, evaluations - state.evaluations, client)
        if path is not None:
            save_state(path, state)
        if progress is not None:
            progress(state.history[-1])
    archive = state.scheduler.archive if search.mode == "map-elites" else state.scheduler
    stats = {**archive_stats(archive, state.beaten), "evaluations": state.evaluations}
    out_dir = Path(out) if out is not None else None
    return Illumination(archive, descs, state.elites, stats, state.history, state.counts, settings, out_dir)


def _fresh_state(settings: dict[str, Any], descs: Sequence[Descriptor]) -> State:
    """The state before the first batch: a new scheduler (or, for the baseline, a bare archive), no counts."""
    seed, batch_size = settings["seed"], settings["batch_size"]
    scheduler = (
        make_scheduler(descs, seed, batch_size) if settings["mode"] == "map-elites" else _baseline_archive(descs, seed)
    )
    counts = {"dungeons": 0, "beaten_before": 0, "beaten": 0, "rooms": 0, "rooms_regenerated": 0, "seconds": 0.0}
    return State(settings, scheduler, 0, 0, {}, {}, [], counts)


def _resume(path: Path, settings: dict[str, Any]) -> State:
    state = load_state(path)
    if state.settings != settings:
        diff = sorted(k for k in set(settings) | set(state.settings) if settings.get(k) != state.settings.get(k))
        raise IlluminateError(
            f"{path}: written by an illumination with other settings ({', '.join(diff)}: "
            f"{[state.settings.get(k) for k in diff]}); use another --out or the same settings"
        )
    return state


def _step(
    state: State, descs: Sequence[Descriptor], source: Any, config: DungeonConfig, left: int, client: Any
) -> None:
    """One batch: ask, build, play, tell; updates `state` in place (it is this module's own record). `source`:
    as `evaluate` takes it."""
    mode, seed, batch = state.settings["mode"], state.settings["seed"], state.settings["batch_size"]
    build_seed = seed * _BATCH_SEED + state.batches
    t0 = time.perf_counter()
    if mode == "map-elites":
        solutions = np.asarray(state.scheduler.ask())
        take = min(len(solutions), left)
        archive = state.scheduler.archive
        chunks = split(mode, solutions[:take], seed, build_seed, state.settings["chunks"])
    else:
        take = min(batch, left)
        solutions = np.arange(state.evaluations, state.evaluations + take, dtype=np.float64).reshape(-1, 1)
        archive = state.scheduler
        # the baseline's rooms have always come from the run's seed (batches differ by their layouts)
        chunks = split(mode, solutions, seed, seed, state.settings["chunks"])
    dungeons = evaluate(chunks, source, config, client)
    obj = np.array([objective(d) for d in dungeons])
    meas = np.stack([measures(d, descs) for d in dungeons])
    if mode == "map-elites" and take == len(solutions):
        state.scheduler.tell(obj, meas)
    else:  # baseline, or the last, partial batch (no emitter learns from it: the run ends)
        archive.add(solutions[:take], obj, meas)
    for k, d in enumerate(dungeons):
        found = archive.retrieve_single(meas[k])
        if found[0] and np.array_equal(found[1]["solution"], solutions[k]) and float(found[1]["objective"]) == obj[k]:
            cell = int(found[1]["index"])
            state.elites[cell] = d
            state.beaten[cell] = bool(d.play is not None and d.play.beaten)
    c = state.counts
    c["dungeons"] += take
    c["beaten"] += sum(bool(d.play and d.play.beaten) for d in dungeons)
    c["beaten_before"] += sum(bool(d.play_before and d.play_before.beaten) for d in dungeons)
    c["rooms"] += sum(len(d.layout.rooms) for d in dungeons)
    c["rooms_regenerated"] += sum(int((d.generated > 1).sum()) for d in dungeons)
    c["seconds"] += time.perf_counter() - t0
    state.evaluations += take
    state.batches += 1
    state.history.append({"evaluations": state.evaluations, **archive_stats(archive, state.beaten)})
