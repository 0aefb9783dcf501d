"""Write a finished dungeon: VGLC Processed text, a .dot graph with slots, a PNG map, a JSON summary.

- `<stem>.txt`: the rooms on the slot grid exactly as `Processed/tloz*.txt` (16 x 11 characters per slot,
  `-` fills empty slots), so `hmolqd.data.vglc.parse_room_file` reads it back.
- `<stem>.dot`: the layout in the VGLC graph format, each node with `row=` / `col=` (its slot) and each
  edge with `link="door"` or `link="stair"`; `hmolqd.dungeon.layout.read_layout` reads it back with the
  same placement. Each direction of a link is written with the code of its door kind.
- `<stem>.png`: the map in the game's on-screen orientation (`hmolqd.render.dungeon_to_rgb`), with the
  start, goal and boss rooms framed, locked doors marked on the wall by kind, stair links drawn as dashed
  lines between the rooms they join, and rooms still failing their checks crossed.
- `<stem>.json`: `Dungeon.summary()`.
All files are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from hmolqd.atomic import atomic_write, atomic_write_text
from hmolqd.data.tiles import ROOM_H, ROOM_W, TILES, VOID
from hmolqd.dungeon.build import Dungeon
from hmolqd.dungeon.codes import DoorCode
from hmolqd.dungeon.embed import Embedding
from hmolqd.dungeon.layout import NO_PASSAGE, Layout, switch_codes
from hmolqd.render import dungeon_to_rgb, legend_beside, wrap_title

# The label code written for each door kind (plain strings, as in the graph files).
KIND_CODE: dict[str, str] = {
    "boss": DoorCode.BOSS_LOCKED.value,
    "key": DoorCode.KEY_LOCKED.value,
    "item": DoorCode.ITEM_LOCKED.value,
    "bomb": DoorCode.BOMBABLE.value,
    "soft": DoorCode.SOFT_LOCKED.value,
    "open": "",
}
LOCK_COLORS: dict[str, str] = {"key": "#ff2020", "boss": "#d020ff", "item": "#ff9000", "switch": "#00e0ff"}
FRAME_COLORS: dict[str, str] = {"start": "#20ff40", "goal": "#ffe000", "boss": "#ff40a0"}
STAIR_COLOR = "#ffffff"


def dungeon_text(rooms: torch.Tensor, layout: Layout, embedding: Embedding) -> str:
    """Rooms `(n, 16, 11)` (layout.rooms order) on their slots -> VGLC Processed text (lines joined by newlines)."""
    rows, cols = embedding.shape
    grid = np.full((rows * ROOM_H, cols * ROOM_W), VOID, dtype=np.int64)
    for k, room in enumerate(layout.rooms):
        r, c = embedding.slots[room.id]
        grid[r * ROOM_H : (r + 1) * ROOM_H, c * ROOM_W : (c + 1) * ROOM_W] = rooms[k].numpy()
    chars = np.array(list(TILES))
    return "\n".join("".join(chars[line]) for line in grid) + "\n"


def _direction_label(layout: Layout, link_index: int, kind: str) -> str:
    link = layout.links[link_index]
    codes = sorted(switch_codes(link.labels)) if kind == "switch" else [KIND_CODE[kind]] if KIND_CODE[kind] else []
    return ",".join(codes + (["s"] if link.stair else []))


def dungeon_dot(layout: Layout, embedding: Embedding) -> str:
    """The layout as a VGLC .dot with slot and link attributes (module docstring)."""
    lines = ["digraph {"]
    for room in layout.rooms:
        r, c = embedding.slots[room.id]
        lines.append(f'{room.id} [label="{",".join(sorted(room.labels))}", row={r}, col={c}]')
    stairs = set(embedding.stair_links)
    for index, link in enumerate(layout.links):
        how = "stair" if index in stairs else "door"
        for src, dst, kind in ((link.a, link.b, link.kind_ab), (link.b, link.a, link.kind_ba)):
            if kind != NO_PASSAGE:
                lines.append(f'{src} -> {dst} [label="{_direction_label(layout, index, kind)}", link="{how}"]')
    return "\n".join(lines + ["}"]) + "\n"


def _screen_box(slot: tuple[int, int], scale: int) -> tuple[float, float, float, float]:
    """Text slot (row, col) -> (x, y, width, height) in screen pixels (render.to_screen: the transpose)."""
    r, c = slot
    return (r * ROOM_H * scale, c * ROOM_W * scale, ROOM_H * scale, ROOM_W * scale)


def _centre(slot: tuple[int, int], scale: int) -> tuple[float, float]:
    x, y, w, h = _screen_box(slot, scale)
    return (x + w / 2 - 0.5, y + h / 2 - 0.5)


def frame_rooms(ax: Any, dungeon: Dungeon, scale: int, width: float) -> None:
    """Frame the start, goal and boss rooms (FRAME_COLORS) on `ax`, which shows the dungeon's map at `scale`."""
    layout, emb = dungeon.layout, dungeon.embedding
    for role, room_id in (("start", layout.start), ("goal", layout.goal), ("boss", layout.boss)):
        if room_id is not None:
            x, y, w, h = _screen_box(emb.slots[room_id], scale)
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=FRAME_COLORS[role], linewidth=width))


def draw_map(dungeon: Dungeon, scale: int = 4, title: str | None = None) -> Figure:
    """The annotated map of one dungeon as a matplotlib Figure (pyplot-free), one image pixel per screen pixel."""
    layout, emb = dungeon.layout, dungeon.embedding
    ids = [room.id for room in layout.rooms]
    rgb = dungeon_to_rgb(dungeon.rooms, [emb.slots[i][0] for i in ids], [emb.slots[i][1] for i in ids], scale=scale)
    dpi, legend_w, margin = 100, 2.2, 0.1
    w_in, h_in = rgb.shape[1] / dpi, rgb.shape[0] / dpi
    legend_h = 0.17 * (len(FRAME_COLORS) + len(LOCK_COLORS) + 2) + 0.1  # inches for the legend's entries
    fig_w = w_in + legend_w + 2 * margin
    fig = Figure(dpi=dpi)
    FigureCanvasAgg(fig)
    # A narrow map (a sampled layout) would cut a one-line title off at both sides: wrap it to the figure.
    lines = wrap_title(fig, title, fig_w - 2 * margin, fontsize=10) if title else []
    title_h = 0.2 * len(lines) + 0.2 if lines else 0.0
    fig_h = max(h_in, legend_h) + title_h + 2 * margin
    fig.set_size_inches(fig_w, fig_h)
    ax = fig.add_axes((margin / fig_w, (fig_h - margin - title_h - h_in) / fig_h, w_in / fig_w, h_in / fig_h))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    width = max(1.5, scale / 2)
    frame_rooms(ax, dungeon, scale, width)
    for index in emb.door_links:
        link = layout.links[index]
        kinds = [k for k in (link.kind_ab, link.kind_ba) if k in LOCK_COLORS]
        if kinds:
            (xa, ya), (xb, yb) = _centre(emb.slots[link.a], scale), _centre(emb.slots[link.b], scale)
            ax.plot(
                [(xa + xb) / 2],
                [(ya + yb) / 2],
                marker="s",
                markersize=2.2 * scale,
                color=LOCK_COLORS[kinds[0]],
                markeredgecolor="black",
            )
    for index in emb.stair_links:
        link = layout.links[index]
        (xa, ya), (xb, yb) = _centre(emb.slots[link.a], scale), _centre(emb.slots[link.b], scale)
        ax.plot(
            [xa, xb], [ya, yb], linestyle="--", color=STAIR_COLOR, linewidth=width, marker="o", markersize=scale * 1.2
        )
    for room_id in dungeon.failures:
        (x, y) = _centre(emb.slots[room_id], scale)
        ax.plot([x], [y], marker="x", markersize=4 * scale, color="red", markeredgewidth=width)
    handles = [
        Patch(facecolor="none", edgecolor=c, linewidth=2, label=f"{role} room") for role, c in FRAME_COLORS.items()
    ]
    handles += [
        Line2D([], [], marker="s", linestyle="", color=c, markeredgecolor="black", label=f"{kind}-locked door")
        for kind, c in LOCK_COLORS.items()
    ]
    handles += [
        Line2D([], [], linestyle="--", color="black", marker="o", label="stair link"),
        Line2D([], [], linestyle="", marker="x", color="red", label="room failing its checks"),
    ]
    legend_beside(fig, handles, left_in=margin + w_in + 0.1, top_in=margin + title_h)
    if lines:
        fig.text(0.5, 1 - (margin + title_h / 2) / fig_h, "\n".join(lines), ha="center", va="center", fontsize=10)
    return fig


def save_map(dungeon: Dungeon, path: str | Path, scale: int = 4, title: str | None = None) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the dungeon map is a PNG file; the name must end in .png")
    fig = draw_map(dungeon, scale=scale, title=title)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path


def map_title(dungeon: Dungeon, stem: str) -> str:
    """The map's title. The rooms failing their checks (red x) come first: a map of failing rooms is no good
    dungeon whatever its layout allows; the key/lock mission is a property of the layout, and said so."""
    n, failing = len(dungeon.layout.rooms), len(dungeon.failures)
    rooms = (
        f"all {n} rooms fail their checks (x)"
        if failing == n
        else f"{failing} of {n} rooms fail their checks (x)"
        if failing
        else f"{n} rooms, all pass their checks"
    )
    walk = "walkable" if dungeon.walk.walkable else f"NOT walkable ({len(dungeon.walk.unreached)} rooms unreached)"
    mission = "beatable" if dungeon.mission.beatable else "NOT beatable"
    return f"{stem}: {rooms}; {walk}; keys and locks of the layout {mission}"


def write_dungeon(
    dungeon: Dungeon,
    out_dir: str | Path,
    stem: str | None = None,
    scale: int = 4,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write `<stem>.txt`, `.dot`, `.png`, `.json` into `out_dir` (created), each once; `extra`: more keys of the
    JSON summary (an archive's elite record). Returns {kind: path}."""
    out = Path(out_dir)
    stem = stem or dungeon.layout.name
    paths = {kind: out / f"{stem}.{kind}" for kind in ("txt", "dot", "png", "json")}
    atomic_write_text(paths["txt"], dungeon_text(dungeon.rooms, dungeon.layout, dungeon.embedding))
    atomic_write_text(paths["dot"], dungeon_dot(dungeon.layout, dungeon.embedding))
    summary: dict[str, Any] = {**dungeon.summary(), **(extra or {})}
    save_map(dungeon, paths["png"], scale=scale, title=map_title(dungeon, stem))
    atomic_write_text(paths["json"], json.dumps(summary, indent=2) + "\n")
    return paths
