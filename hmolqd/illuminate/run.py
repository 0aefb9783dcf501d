"""Illuminate the space of dungeons: MAP-Elites over layout genomes with pyribs, batched and checkpointed.

`illuminate(model, evaluations=N, out=DIR)` fills the archive of `hmolqd.illuminate.archive` with N dungeon
evaluations. Each batch of genomes (asked of the pyribs scheduler of `hmolqd.illuminate.emitters`, in the unit box of
`hmolqd.illuminate.genome`) is decoded into layouts and built with one batched room-model call per round
(`hmolqd.dungeon.build_dungeons`, regeneration included); each dungeon is played on its tiles
(`hmolqd.dungeon.play`) and told to the scheduler with its objective and descriptors. After every batch the
state is checkpointed (`archive.pt` in `out`, `hmolqd.illuminate.archive`), so a killed run re-run with the
same arguments resumes after its last batch and ends with the same archive as one never interrupted: the
genomes come from the scheduler's saved random state, the rooms from seed + batch index. When the evaluations
end part-way through a batch, that last batch is evaluated on a copy of the scheduler and kept apart
(`State.tail`): a later run with more evaluations goes on from the whole batches, so extending a run of 25 to
35 (batches of 10) gives the same archive as one run of 35, and a re-run of 25 adds the tail again without
evaluating anything. Asking for fewer evaluations than the archive holds evaluates nothing and says so.

`mode="baseline"` is today's generator at the same budget: `sample_layout` from the 18 real templates,
one dungeon per evaluation, inserted into the same kind of archive (the bench's reference).

Where each batch's dungeons are built (this process and its workers, or a Dask cluster): `hmolqd.illuminate.pieces`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hmolqd.config import SEED_LIMIT
from hmolqd.dungeon.api import as_source
from hmolqd.dungeon.build import Dungeon, DungeonConfig
from hmolqd.dungeon.source import RoomSource
from hmolqd.dungeon.workers import IN_PROCESS, Workers
from hmolqd.illuminate.archive import (
    DEFAULT_DESCRIPTORS,
    Descriptor,
    IlluminateError,
    archive_stats,
    check_descriptors,
    make_archive,
    measures,
    objective,
)
from hmolqd.illuminate.checkpoint import State, checkpoint_path, load_state, save_state, source_identity
from hmolqd.illuminate.emitters import make_scheduler
from hmolqd.illuminate.pieces import check_client, evaluate, split

MODES = ("map-elites", "baseline")
# dungeons per batch at most: a batch is built in one go (its rooms, plays and archive arrays all in memory)
MAX_BATCH_SIZE = 10_000
_BATCH_SEED = 1_000_003


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
    # the checkpointed state (whole batches; `hmolqd.illuminate.outputs` records what it wrote there)
    state: State | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()  # what the caller should be told (fewer evaluations asked than the archive holds)
    written: int = 0  # files the outputs step wrote into `out` (0: they were up to date, as on a finished re-run)


def _baseline_archive(descriptors: Sequence[Descriptor], seed: int) -> Any:
    return make_archive(descriptors, 1, seed)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_settings(evaluations: int, search: SearchSettings) -> None:
    for name, value in (("evaluations", evaluations), ("batch_size", search.batch_size), ("chunks", search.chunks)):
        if not _is_int(value) or value <= 0:
            raise IlluminateError(f"{name} must be an int > 0, got {value!r}")
    if search.batch_size > MAX_BATCH_SIZE:
        raise IlluminateError(
            f"batch_size {search.batch_size}: must be <= {MAX_BATCH_SIZE} (dungeons built and held in memory at once)"
        )
    if not _is_int(search.seed) or not 0 <= search.seed < SEED_LIMIT:  # the rule of every command's --seed
        raise IlluminateError(f"seed {search.seed!r}: must be an integer in 0 .. {SEED_LIMIT - 1}")
    if search.mode not in MODES:
        raise IlluminateError(f"unknown mode {search.mode!r}; choose one of {', '.join(MODES)}")


def require_ribs() -> None:
    """pyribs is the optional extra `hmolqd[qd]`: without it, one line that says how to get it."""
    try:
        import ribs  # noqa: F401
    except ImportError:
        raise IlluminateError("illuminate needs pyribs, which is not installed: pip install hmolqd[qd]") from None


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


@dataclass(frozen=True)
class Plan:
    """An illumination's checked inputs (nothing written yet): `plan_run`; run by `run_search`."""

    evaluations: int
    search: SearchSettings
    descriptors: tuple[Descriptor, ...]
    source: RoomSource
    settings: dict[str, Any]


def resolved_sampling(source: Any) -> dict[str, Any]:
    """The sampling settings the rooms are drawn with, resolved (a keyword that restates the model's own
    setting is the same run), plus the room batch size; {} for a source that is not a room model."""
    settings = getattr(source, "settings", None)
    if not dataclasses.is_dataclass(settings):
        return {}
    return {**asdict(settings), "batch_size": int(getattr(source, "batch_size", 0))}


def plan_run(
    model: Any, evaluations: int, search: SearchSettings, client: Any, options: dict[str, Any], search_ribs: bool = True
) -> Plan:
    """Check every input and load the room source; writes nothing (`illuminate` says what the arguments are).
    `search_ribs`: check that pyribs is there (False: only a finished run's report is read, `finished_run`)."""
    search = replace(search, **{k: options.pop(k) for k in sorted(_SEARCH_KEYS & set(options))})
    check_settings(evaluations, search)
    check_client(client)
    descs = check_descriptors(search.descriptors)
    if search_ribs:
        require_ribs()
    source = as_source(model, **options)
    settings = {
        "mode": search.mode,
        "descriptors": [d.name for d in descs],
        "seed": int(search.seed),
        "batch_size": int(search.batch_size),
        "chunks": int(search.chunks),
        "source": source.name,
        "model": source_identity(source),
        "config": asdict(search.config),
        "sampling": resolved_sampling(source),
    }
    return Plan(int(evaluations), search, descs, source, settings)


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
    `model_final.pt`, or any RoomSource; `out`: the folder of the checkpoint (the caller holds its lock:
    `hmolqd.illuminate.api.illuminate`); `options`: fields of `SearchSettings` by name (descriptors, seed,
    batch_size, mode, config: they replace those of `search`) and the room model's sampling keys; `client`: a
    `dask.distributed.Client` to build each batch's chunks on its workers (module docstring). This function
    runs in one process; `hmolqd.illuminate.api.illuminate` adds worker processes and the outputs."""
    return run_search(plan_run(model, evaluations, search, client, options), out, progress, client)


def run_search(
    plan: Plan,
    out: str | Path | None,
    progress: Callable[[dict[str, Any]], None] | None,
    client: Any,
    workers: Workers = IN_PROCESS,
) -> Illumination:
    """Resume or start the archive in `out` (None: in memory) and evaluate up to `plan.evaluations`; without a
    Dask `client`, each dungeon's decoding, walking and playing runs on `workers` (the same archive)."""
    settings, descs, config = plan.settings, plan.descriptors, plan.search.config
    path = checkpoint_path(Path(out)) if out is not None else None
    state = _resume(path, settings) if path is not None and path.exists() else None
    if state is None:
        state = _fresh_state(settings, descs)
    total = state.evaluations + (len(state.tail["dungeons"]) if state.tail else 0)
    notes = more_than_asked(total, plan.evaluations)
    if plan.evaluations > total:
        state.tail = None  # a longer run goes on from the whole batches (State.tail)
    # on Dask the source (the room model) goes to the workers once, not once per batch
    shipped = plan.source if client is None else client.scatter(plan.source, broadcast=True, hash=False)
    while state.evaluations + settings["batch_size"] <= plan.evaluations:
        solutions, dungeons, seconds = _evaluate_batch(state, descs, shipped, config, (client, workers))
        _apply(state, descs, solutions, dungeons, seconds, tell=settings["mode"] == "map-elites")
        _save(path, state, progress)
    if state.evaluations < plan.evaluations and state.tail is None:
        left = plan.evaluations - state.evaluations
        solutions, dungeons, seconds = _evaluate_batch(state, descs, shipped, config, (client, workers), left)
        state.tail = {"solutions": solutions, "dungeons": dungeons, "seconds": seconds}
        _save(path, state, None)
        if progress is not None:
            progress(with_tail(state, descs).history[-1])
    final = with_tail(state, descs)
    archive = final.scheduler.archive if settings["mode"] == "map-elites" else final.scheduler
    stats = {**archive_stats(archive, final.beaten), "evaluations": final.evaluations}
    out_dir = Path(out) if out is not None else None
    return Illumination(
        archive, descs, final.elites, stats, final.history, final.counts, settings, out_dir, state, tuple(notes)
    )


def more_than_asked(total: int, asked: int) -> list[str]:
    """The note of a run asked for fewer evaluations than its archive holds (nothing is evaluated then)."""
    if asked >= total:
        return []
    return [
        f"the archive already holds {total} evaluations, more than the {asked} asked: nothing was evaluated, "
        f"and all {total} are reported"
    ]


def _save(path: Path | None, state: State, progress: Callable[[dict[str, Any]], None] | None) -> None:
    if path is not None:
        save_state(path, state)
    if progress is not None:
        progress(state.history[-1])


def with_tail(state: State, descs: Sequence[Descriptor]) -> State:
    """The state the run reports: `state` itself, or with its tail added to copies (`state` stays the one
    after whole batches, which is what the checkpoint keeps)."""
    if state.tail is None:
        return state
    final = replace(
        state,
        scheduler=copy.deepcopy(state.scheduler),
        elites=dict(state.elites),
        beaten=dict(state.beaten),
        history=list(state.history),
        counts=dict(state.counts),
        tail=None,
    )
    tail = state.tail
    _apply(final, descs, tail["solutions"], tail["dungeons"], tail["seconds"], tell=False)
    return final


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
    old = state.settings
    if old["model"] != settings["model"]:
        raise IlluminateError(
            f"{path}: written with another room model ({old['model']}, {old['source']}); this run's model has "
            f"{settings['model']}: give that model, or another --out for this one"
        )
    if old != settings:
        diff = sorted(k for k in set(settings) | set(old) if settings.get(k) != old.get(k))
        raise IlluminateError(
            f"{path}: written by an illumination with other settings ({', '.join(diff)}: "
            f"{[old.get(k) for k in diff]}); use another --out or the same settings"
        )
    return state


def _evaluate_batch(
    state: State,
    descs: Sequence[Descriptor],
    source: Any,
    config: DungeonConfig,
    where: tuple[Any, Workers],
    take: int = 0,
) -> tuple[np.ndarray, list[Dungeon], float]:
    """The next batch's solutions and dungeons: a whole batch, or (`take` > 0) its first `take`, asked of a copy
    of the scheduler so that `state` is left as it was (State.tail). `source`, `where` (a Dask client or None,
    and the workers): as `evaluate` takes them."""
    mode, seed, batch = state.settings["mode"], state.settings["seed"], state.settings["batch_size"]
    build_seed = seed * _BATCH_SEED + state.batches
    t0 = time.perf_counter()
    if mode == "map-elites":
        asker = copy.deepcopy(state.scheduler) if take else state.scheduler
        solutions = np.asarray(asker.ask())[: take or None]
        chunks = split(mode, solutions, seed, build_seed, state.settings["chunks"])
    else:
        n = take or batch
        solutions = np.arange(state.evaluations, state.evaluations + n, dtype=np.float64).reshape(-1, 1)
        # the baseline's rooms have always come from the run's seed (batches differ by their layouts)
        chunks = split(mode, solutions, seed, seed, state.settings["chunks"])
    dungeons = evaluate(chunks, source, config, *where)
    return solutions, dungeons, time.perf_counter() - t0


def _apply(
    state: State,
    descs: Sequence[Descriptor],
    solutions: np.ndarray,
    dungeons: list[Dungeon],
    seconds: float,
    tell: bool,
) -> None:
    """Put a batch's dungeons in the archive (`tell`: a whole MAP-Elites batch, told to the scheduler; otherwise
    added to the archive, so no emitter learns from them) and update `state`'s records in place."""
    archive = state.scheduler.archive if state.settings["mode"] == "map-elites" else state.scheduler
    obj = np.array([objective(d) for d in dungeons])
    meas = np.stack([measures(d, descs) for d in dungeons])
    if tell:
        state.scheduler.tell(obj, meas)
    else:
        archive.add(solutions, obj, meas)
    for k, d in enumerate(dungeons):
        found = archive.retrieve_single(meas[k])
        if found[0] and np.array_equal(found[1]["solution"], solutions[k]) and float(found[1]["objective"]) == obj[k]:
            cell = int(found[1]["index"])
            state.elites[cell] = d
            state.beaten[cell] = bool(d.play is not None and d.play.beaten)
    c = state.counts
    c["dungeons"] += len(dungeons)
    c["beaten"] += sum(bool(d.play and d.play.beaten) for d in dungeons)
    c["beaten_before"] += sum(bool(d.play_before and d.play_before.beaten) for d in dungeons)
    c["rooms"] += sum(len(d.layout.rooms) for d in dungeons)
    c["rooms_regenerated"] += sum(int((d.generated > 1).sum()) for d in dungeons)
    c["seconds"] += seconds
    state.evaluations += len(dungeons)
    state.batches += 1
    state.history.append({"evaluations": state.evaluations, **archive_stats(archive, state.beaten)})
