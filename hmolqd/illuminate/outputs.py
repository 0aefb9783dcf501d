"""What an illumination leaves for a researcher, and the elite closest to a request.

`write_outputs(result, out)` writes into `out`:

- `heatmap.png`: the archive's objective over its first two descriptors (the best over the third when there
  are three), coverage and QD score in the title;
- `elites.png`: a grid of different elite maps across the first two descriptors (the elite nearest to each of
  `grid` x `grid` evenly spaced points that no other panel shows), start / goal / boss rooms framed, a legend;
- `elites/<cell>.txt|.dot|.png|.json`: every elite as VGLC text, `.dot` with slots, map and JSON
  (`hmolqd.dungeon.export.write_dungeon`), the JSON with its descriptors, objective and genome;
- `summary.json`: settings, archive statistics, counts (beaten before / after regeneration, rooms
  regenerated, seconds) and the coverage after every batch.

Each file is written only when what it shows changed: the checkpoint records a tag per elite (a digest of its
genome, objective, descriptors and rooms) and one of the sheets (`State.written`), so a re-run of a finished
archive rewrites nothing, and a longer run rewrites the files of the cells whose elite changed. A file that is
missing is written again. A failure to write (a full disk) is one line; the archive itself stays intact.

`closest_elite(result, target)` returns the elite nearest to `target` ({descriptor: value}) in units of
each descriptor's bin width; a descriptor the archive does not have, or a value outside its range, is an
`IlluminateError`.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hmolqd.atomic import atomic_write, atomic_write_text
from hmolqd.data.tiles import TILE_NAMES
from hmolqd.dungeon.build import Dungeon
from hmolqd.dungeon.export import FRAME_COLORS, frame_rooms, write_dungeon
from hmolqd.dungeon.workers import IN_PROCESS, Workers
from hmolqd.illuminate.archive import IlluminateError
from hmolqd.illuminate.checkpoint import checkpoint_path, finished_report, save_state
from hmolqd.illuminate.guard import ELITES_DIR
from hmolqd.render import TILE_COLORS, dungeon_to_rgb


def _cells(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = result.archive.data()
    return np.asarray(data["index"]), np.asarray(data["measures"]), np.asarray(data["objective"])


def heatmap(result: Any) -> Figure:
    descs = result.descriptors
    index, _, obj = _cells(result)
    grid = np.full(tuple(d.bins for d in descs), np.nan)
    for i, o in zip(index, obj):
        grid[tuple(result.archive.int_to_grid_index([i])[0])] = o
    if len(descs) == 1:
        grid = grid[:, None]
    plane = grid
    if grid.ndim == 3:  # the best over the third descriptor; empty where no bin of it holds an elite
        plane = np.where(np.isfinite(grid).any(2), np.where(np.isfinite(grid), grid, -np.inf).max(axis=2), np.nan)
    fig = Figure(figsize=(7, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    d0 = descs[0]
    d1 = descs[1] if len(descs) > 1 else None
    extent = (d0.low, d0.high, d1.low if d1 else 0, d1.high if d1 else 1)
    im = ax.imshow(plane.T, origin="lower", aspect="auto", extent=extent, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im, ax=ax, label="objective" + (f" (best over {descs[2].name})" if len(descs) == 3 else ""))
    ax.set_xlabel(d0.name)
    ax.set_ylabel(d1.name if d1 else "")
    s = result.stats
    beaten = "" if s.get("beaten_elites") is None else f", {100 * s['beaten_elites']:.1f} % of elites beaten"
    ax.set_title(
        f"{result.settings['mode']}: coverage {100 * s['coverage']:.1f} % of {s['cells']} cells, "
        f"QD score {s['qd_score']:.1f}\n{s['evaluations']} evaluations{beaten}",
        fontsize=9,
    )
    return fig


def pick_elites(result: Any, grid: int) -> list[tuple[int, int, int]]:
    """(panel row, panel column, archive row) for up to `grid` x `grid` panels: each panel's point across the first
    two descriptors (rows: the second descriptor, highest at the top) gets the nearest elite no other panel shows,
    so no two panels are the same dungeon; panels left over when the archive has fewer elites stay out."""
    descs = result.descriptors
    index, meas, _ = _cells(result)
    stored = [k for k in range(len(index)) if int(index[k]) in result.elites]
    lows = np.array([d.low for d in descs[:2]])
    span = np.maximum(np.array([d.high for d in descs[:2]]) - lows, 1e-9)
    picked: list[tuple[int, int, int]] = []
    for r in range(grid):
        for c in range(grid):
            if not stored:
                return picked
            point = lows + (np.array([c, grid - 1 - r] if len(descs) > 1 else [c, 0])[: len(lows)] + 0.5) / grid * span
            dist = (((meas[stored, : len(lows)] - point) / span) ** 2).sum(1)
            picked.append((r, c, stored.pop(int(np.argmin(dist)))))
    return picked


def elite_grid(result: Any, grid: int = 3) -> Figure:
    """Elite maps across the first two descriptors (module docstring, `pick_elites`): start, goal and boss rooms
    framed as on every dungeon map, a legend of the tiles and frames below."""
    descs = result.descriptors
    index, meas, _ = _cells(result)
    fig = Figure(figsize=(4.2 * grid, 3.3 * grid + 1.4), dpi=100)
    FigureCanvasAgg(fig)
    picked = pick_elites(result, grid)
    if not picked:
        fig.text(0.5, 0.5, "empty archive", ha="center")
        return fig
    across = f"{descs[0].name} grows to the right" + (f", {descs[1].name} upwards" if len(descs) > 1 else "")
    fig.suptitle(f"{len(picked)} different elite dungeons: {across}", fontsize=12)
    panels = fig.add_gridspec(grid, grid, top=1 - 0.6 / fig.get_figheight(), bottom=1.0 / fig.get_figheight())
    for r, c, k in picked:
        d = result.elites[int(index[k])]
        ax = fig.add_subplot(panels[r, c])
        ax.set_axis_off()
        ids = [room.id for room in d.layout.rooms]
        rgb = dungeon_to_rgb(
            d.rooms, [d.embedding.slots[i][0] for i in ids], [d.embedding.slots[i][1] for i in ids], scale=2
        )
        ax.imshow(rgb, interpolation="nearest")
        frame_rooms(ax, d, scale=2, width=1.5)
        ax.set_title(", ".join(f"{desc.name} {m:.2g}" for desc, m in zip(descs, meas[k])), fontsize=9)
    handles = [
        Patch(facecolor="none", edgecolor=color, linewidth=2, label=f"{role} room")
        for role, color in FRAME_COLORS.items()
    ]
    handles += [
        Patch(facecolor=np.array(TILE_COLORS[ch]) / 255, edgecolor="black", label=TILE_NAMES[ch]) for ch in TILE_COLORS
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def elite_json(result: Any, cell: int, dungeon: Dungeon) -> dict[str, Any]:
    data = result.archive.retrieve_single(dungeon_measures(result, cell))[1]
    return _elite_record(result, cell, data["measures"], data["objective"], data["solution"])


def _elite_record(result: Any, cell: int, meas: Any, obj: Any, solution: Any) -> dict[str, Any]:
    return {
        "cell": cell,
        "descriptors": {d.name: float(m) for d, m in zip(result.descriptors, meas)},
        "objective": float(obj),
        "genome": [float(x) for x in solution],
    }


def dungeon_measures(result: Any, cell: int) -> np.ndarray:
    index, meas, _ = _cells(result)
    return meas[int(np.nonzero(index == cell)[0][0])]


def _tag(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()


ELITE_KINDS = ("txt", "dot", "png", "json")


def _write_elite(job: tuple[Dungeon, Path, int, dict[str, Any]]) -> None:
    dungeon, folder, cell, record = job
    write_dungeon(dungeon, folder, stem=f"cell_{cell}", scale=2, extra={"elite": record})


def write_outputs(result: Any, out: str | Path, per_elite: bool = True, workers: Workers = IN_PROCESS) -> int:
    """Write what changed since the last write into `out` (module docstring), the elites' files on `workers`;
    returns how many files it wrote (0: what is on disk was up to date)."""
    out = Path(out)
    state = result.state if result.out is not None and Path(result.out) == out else None
    done = state.written if state is not None else {}
    cells = dict(done.get("cells", {}))
    folder = out / ELITES_DIR
    data = result.archive.data()
    rows = {int(i): k for k, i in enumerate(data["index"])}
    summary = {"settings": result.settings, "stats": result.stats, "counts": result.counts, "history": result.history}
    text = json.dumps(summary, indent=2) + "\n"
    paths = {"heatmap": out / "heatmap.png", "elites": out / "elites.png", "summary": out / "summary.json"}
    written = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        jobs, tags = [], {}
        for cell, dungeon in sorted(result.elites.items()) if per_elite else ():
            k = rows[cell]
            record = _elite_record(result, cell, data["measures"][k], data["objective"][k], data["solution"][k])
            tag = _tag(record, dungeon.rooms.numpy())
            if cells.get(cell) != tag or not all((folder / f"cell_{cell}.{x}").is_file() for x in ELITE_KINDS):
                jobs.append((dungeon, folder, cell, record))
                tags[cell] = tag
        workers.map(_write_elite, jobs)
        cells.update(tags)
        written += len(ELITE_KINDS) * len(jobs)
        sheets = _tag(text, sorted(cells.items()), sorted(result.elites))
        if done.get("sheets") != sheets or not all(p.is_file() for p in paths.values()):
            _save(heatmap(result), paths["heatmap"])
            _save(elite_grid(result), paths["elites"])
            atomic_write_text(paths["summary"], text)
            written += len(paths)
    except OSError as err:
        raise IlluminateError(
            f"writing {err.filename or out} failed: {err.strerror or err}; the archive is intact: free the space "
            "(or fix the folder) and re-run to write the outputs"
        ) from None
    record = {"cells": cells, "sheets": sheets}
    # saved when what is on disk changed, or once for an archive written before the finished report existed
    if state is not None and (state.written != record or finished_report(checkpoint_path(out)) is None):
        state.written = record
        names = [p.name for p in paths.values()] + [
            f"{ELITES_DIR}/cell_{cell}.{kind}" for cell in sorted(result.elites) if per_elite for kind in ELITE_KINDS
        ]
        finished = {"settings": result.settings, "evaluations": result.stats["evaluations"], "stats": result.stats}
        # the record of what is on disk, so a re-run writes nothing, and reads this report alone (finished_report)
        save_state(checkpoint_path(out), state, finished={**finished, "outputs": names})
    return written


def closest_elite(result: Any, target: Mapping[str, float]) -> Dungeon:
    """The elite nearest to `target` (module docstring)."""
    names = [d.name for d in result.descriptors]
    if not target:
        raise IlluminateError(
            f"target: give at least one descriptor value, e.g. {{'{names[0]}': ...}}; archive descriptors: {names}"
        )
    for key, value in target.items():
        if key not in names:
            raise IlluminateError(f"target: unknown descriptor {key!r}; this archive has {', '.join(names)}")
        d = result.descriptors[names.index(key)]
        real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))  # numpy's too
        if not real or not d.low <= float(value) <= d.high:
            raise IlluminateError(f"target {key}={value!r} is outside the archive's range [{d.low}, {d.high}]")
    index, meas, _ = _cells(result)
    if len(index) == 0:
        raise IlluminateError("target: the archive is empty")
    width = np.array([(d.high - d.low) / d.bins for d in result.descriptors])
    cols = [names.index(k) for k in target]
    want = np.array([float(target[k]) for k in target])
    dist = (((meas[:, cols] - want) / width[cols]) ** 2).sum(1)
    for k in np.argsort(dist, kind="stable"):
        if int(index[k]) in result.elites:
            return result.elites[int(index[k])]
    raise IlluminateError("target: no elite dungeon is stored for this archive")
