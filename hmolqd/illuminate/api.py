"""The entry points: `illuminate` (search, then outputs) and `generate_dungeon` with a descriptor target."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hmolqd.dungeon.api import generate_dungeon as _generate_dungeon
from hmolqd.dungeon.build import Dungeon
from hmolqd.dungeon.workers import Workers, usable_cores
from hmolqd.illuminate.archive import IlluminateError, archive_stats, check_descriptors
from hmolqd.illuminate.checkpoint import checkpoint_path, finished_report, load_state
from hmolqd.illuminate.guard import check_out, out_lock
from hmolqd.illuminate.outputs import closest_elite, write_outputs
from hmolqd.illuminate.run import Illumination, SearchSettings, more_than_asked, plan_run, run_search, with_tail
from hmolqd.illuminate.run import illuminate as _illuminate


def illuminate(
    model: Any,
    *,
    evaluations: int = 2000,
    out: str | Path | None = None,
    outputs: bool = True,
    workers: int | None = None,
    **settings: Any,
) -> Illumination:
    """Fill a MAP-Elites archive of dungeons (`hmolqd.illuminate.run`); with `out`, checkpoint there and
    (`outputs`) write the heatmap, the elite grid, every elite's files and `summary.json`
    (`hmolqd.illuminate.outputs`). `settings`: descriptors, seed, batch_size, mode, config, chunks, progress,
    client, and the room model's sampling keys. Every input is checked before anything is written; `out` is
    locked from before its checkpoint is read until the outputs are written (`hmolqd.illuminate.guard`).
    `workers`: processes for each dungeon's decoding, walking and playing and each elite's files
    (`hmolqd.dungeon.workers`; default: one per usable core, none with a Dask `client`); they never change the
    archive, so they are not one of its settings."""
    progress, client = settings.pop("progress", None), settings.pop("client", None)
    search = settings.pop("search", SearchSettings())
    plan = plan_run(model, evaluations, search, client, settings)
    n = (1 if client is not None else usable_cores()) if workers is None else workers
    try:
        pool = Workers(n)
    except ValueError as err:
        raise IlluminateError(str(err)) from None
    with pool:
        if out is None:
            return run_search(plan, None, progress, client, pool)
        check_out(Path(out))
        pool.start()  # before the lock: a worker forked under it would hold it (hmolqd.dungeon.workers)
        with out_lock(Path(out)):
            result = run_search(plan, out, progress, client, pool)
            if outputs:
                result = dataclasses.replace(result, written=write_outputs(result, out, workers=pool))
    return result


def finished_run(model: Any, *, evaluations: int = 2000, out: str | Path, **settings: Any) -> dict[str, Any] | None:
    """What `illuminate` with these arguments would report when `out` holds a finished archive of the same
    settings with every output on disk: {"stats", "notes"}, read from the checkpoint's finished record
    (`hmolqd.illuminate.checkpoint.finished_report`) without unpickling the archive or importing pyribs, under the
    folder's lock; None otherwise (then `illuminate` runs). The command line asks this first, so that its re-run
    of a finished archive costs little more than importing torch."""
    settings.pop("progress", None)
    plan = plan_run(model, evaluations, settings.pop("search", SearchSettings()), None, settings, search_ribs=False)
    folder = Path(out)
    if not checkpoint_path(folder).is_file():
        return None
    with out_lock(folder):
        record = finished_report(checkpoint_path(folder))
        if record is None or record["settings"] != plan.settings or plan.evaluations > record["evaluations"]:
            return None
        if not all((folder / name).is_file() for name in record["outputs"]):
            return None
    return {"stats": record["stats"], "notes": tuple(more_than_asked(record["evaluations"], plan.evaluations))}


def load_illumination(folder: str | Path) -> Illumination:
    """An illumination from its checkpoint (`<folder>/archive.pt`, or the file itself)."""
    path = Path(folder)
    path = checkpoint_path(path) if path.is_dir() else path
    if not path.exists():
        raise IlluminateError(f"{path}: no archive checkpoint here; run `python -m hmolqd illuminate --out DIR` first")
    state = load_state(path)
    descs = check_descriptors(state.settings["descriptors"])
    final = with_tail(state, descs)
    archive = final.scheduler.archive if state.settings["mode"] == "map-elites" else final.scheduler
    stats = {**archive_stats(archive, final.beaten), "evaluations": final.evaluations}
    return Illumination(
        archive, descs, final.elites, stats, final.history, final.counts, state.settings, path.parent, state
    )


def generate_dungeon(
    model: Any,
    graph: Any = None,
    *,
    target: Mapping[str, float] | None = None,
    archive: str | Path | Illumination | None = None,
    evaluations: int = 200,
    **kwargs: Any,
) -> Dungeon:
    """`hmolqd.dungeon.generate_dungeon`, or with `target` ({descriptor: value}) the elite of an archive
    closest to it: of `archive` (an illumination's folder or result), else of a fresh illumination of
    `evaluations` dungeons with `model` (in memory). With `out`, the elite's files are written there."""
    out = kwargs.get("out")
    if out is not None and Path(out).exists() and not Path(out).is_dir():  # before any work
        raise IlluminateError(f"out {out}: is a file, not a folder; give a folder (created if missing)")
    if target is None:
        if archive is not None:
            raise IlluminateError("archive= is used with target={...}; give a target or leave archive out")
        return _generate_dungeon(model, graph, **kwargs)
    if not isinstance(target, Mapping):
        raise IlluminateError(
            f"target must be a dict {{descriptor: value}}, e.g. {{'rooms': 30}}, got {type(target).__name__} {target!r}"
        )
    if graph is not None:
        raise IlluminateError("give a graph or a target, not both")
    out, stem = kwargs.pop("out", None), kwargs.pop("stem", "dungeon")
    if archive is None:
        result = _illuminate(model, evaluations=evaluations, **kwargs)
    else:
        if kwargs:
            raise IlluminateError(
                f"{sorted(kwargs)}: settings of an illumination; the archive {archive} is already made"
            )
        result = archive if isinstance(archive, Illumination) else load_illumination(archive)
    dungeon = closest_elite(result, target)
    if out is not None:
        from hmolqd.dungeon.export import write_dungeon

        write_dungeon(dungeon, out, stem=stem)
    return dungeon
