"""Why a real dungeon is not beaten: the fact of its VGLC data that stops the player, found by rule checks.

`hmolqd.dungeon.real` plays a real dungeon under the player's rules. When it is not beaten, each check below
lifts one rule for the facts of the data it names and plays again; the first check whose lift makes the dungeon
beaten, cut down to the fewest facts that still do (one fact dropped at a time), is the cause reported:

1. **ladder before the key item**: one-tile water/lava gaps (`hmolqd.dungeon.crossings`) that the player must
   cross before he can reach the room labelled `I` (the rules give the ladder with the key item);
2. **flooded rooms**: rooms whose element tiles P cut their doors apart over more than the one tile a
   ladder crosses (lifted: P read as floor in that room);
3. **one-way doors**: graph edges written in one direction only that the way to the goal needs backwards
   (lifted: the edge passes both ways);
4. **blocked rooms**: rooms whose blocks B cut their doors apart and which are no puzzle room (lifted: B read as
   floor in that room).

A dungeon that no single check explains is played with all of them lifted; what still stops it is reported.
Nothing here names a dungeon: the causes are computed from the tiles and the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import BLOCK, DOOR, ELEMENT, FLOOR, INTERIOR, STAIR
from hmolqd.dungeon.cells import CellGraph
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.layout import NO_PASSAGE, Layout
from hmolqd.dungeon.play import play
from hmolqd.dungeon.rules import LADDER

Builder = Callable[[Layout, Any], tuple[CellGraph, tuple[str, ...]]]


def _split_by(room: torch.Tensor, tile: int) -> bool:
    """Door and stair tiles of room `(16, 11)` lie in several walkable components, and reading `tile` as floor
    joins them all."""
    ends = (room == DOOR) | (room == STAIR)
    if not ends.any():
        return False
    labels = walkable_components(room.unsqueeze(0))[0]
    if len(set(labels[ends].tolist())) < 2:
        return False
    inner = room.clone()
    inner[INTERIOR] = torch.where(inner[INTERIOR] == tile, torch.full_like(inner[INTERIOR], FLOOR), inner[INTERIOR])
    joined = walkable_components(inner.unsqueeze(0))[0]
    return len(set(joined[ends].tolist())) == 1


def _floored(t: Any, rooms: Sequence[int], tile: int) -> Any:
    """`t` (a `hmolqd.dungeon.real.Tiled`) with `tile` read as floor inside rooms `rooms` (layout.rooms indices)."""
    new = t.rooms.clone()
    for i in rooms:
        inner = new[i][INTERIOR]
        new[i][INTERIOR] = torch.where(inner == tile, torch.full_like(inner, FLOOR), inner)
    return t._replace(rooms=new)


def _two_way(layout: Layout, links: Sequence[int]) -> Layout:
    out = list(layout.links)
    for k in links:
        link = out[k]
        out[k] = replace(
            link,
            kind_ab=link.kind_ba if link.kind_ab == NO_PASSAGE else link.kind_ab,
            kind_ba=link.kind_ab if link.kind_ba == NO_PASSAGE else link.kind_ba,
        )
    return replace(layout, links=tuple(out))


def _ladder_free(g: CellGraph, rooms: Sequence[int]) -> CellGraph:
    """`g` with the ladder crossings of rooms `rooms` passable without the key item."""
    moves = tuple(
        tuple(replace(m, kind="open") if m.kind == LADDER and g.cells[m.to][0] in rooms else m for m in ms)
        for ms in g.moves
    )
    return replace(g, moves=moves)


def _one_way_edge(layout: Layout, k: int) -> str:
    """'src -> dst (dst -> src not written)' for a one-way link."""
    link = layout.links[k]
    src, dst = (link.a, link.b) if link.kind_ba == NO_PASSAGE else (link.b, link.a)
    return f"{src} -> {dst} ({dst} -> {src} not written)"


def _fewest(facts: list[int], beaten: Callable[[list[int]], bool]) -> list[int]:
    """Drop facts one at a time while the dungeon stays beaten without them (`facts` lift it as a whole)."""
    kept = list(facts)
    for f in facts:
        if beaten([x for x in kept if x != f]):
            kept = [x for x in kept if x != f]
    return kept


def not_beatable_cause(layout: Layout, t: Any, build: Builder, max_states: int) -> str:
    """The cause (module docstring) why `layout` on tiles `t` is not beaten; `build(layout, t)` -> its cell graph."""
    ids = [room.id for room in layout.rooms]
    at = {room.id: t.slots[room.id] for room, p in zip(layout.rooms, t.present) if p}
    present = [i for i, p in enumerate(t.present) if p]
    g0 = build(layout, t)[0]
    ladder = sorted({g0.cells[m.to][0] for ms in g0.moves for m in ms if m.kind == LADDER})
    flooded = [i for i in present if _split_by(t.rooms[i], ELEMENT)]
    blocked = [i for i in present if RoomLabel.PUZZLE not in layout.rooms[i].labels and _split_by(t.rooms[i], BLOCK)]
    one_way = [k for k, link in enumerate(layout.links) if link.one_way]

    def won(lay: Layout, tt: Any, free: Sequence[int] = ()) -> bool:
        g = build(lay, tt)[0]
        return play(_ladder_free(g, free) if free else g, max_states).beaten

    def rooms_at(rooms: list[int]) -> str:
        return ", ".join(f"{ids[i]} at slot {at[ids[i]]}" for i in rooms)

    checks: list[tuple[list[int], Callable[[list[int]], bool], Callable[[list[int]], str]]] = [
        (
            ladder,
            lambda f: won(layout, t, f),
            lambda f: (
                f"the ladder is needed before the key item (room labelled I) is reached: one-tile water/lava "
                f"gaps in rooms {rooms_at(f)}"
            ),
        ),
        (
            flooded,
            lambda f: won(layout, _floored(t, f, ELEMENT)),
            lambda f: (
                f"rooms drawn with water/lava P wider than the ladder's one tile across every way between "
                f"their doors: {rooms_at(f)}"
            ),
        ),
        (
            one_way,
            lambda f: won(_two_way(layout, f), t),
            lambda f: (
                "one-way doors (graph edges written in one direction only) that the way to the goal needs "
                "backwards: " + ", ".join(_one_way_edge(layout, k) for k in f)
            ),
        ),
        (
            blocked,
            lambda f: won(layout, _floored(t, f, BLOCK)),
            lambda f: (
                f"rooms that are no puzzle room with blocks B across every way between their doors: {rooms_at(f)}"
            ),
        ),
    ]
    for facts, beaten, say in checks:
        if facts and beaten(facts):
            return say(_fewest(facts, beaten))
    lifted = _floored(_floored(t, flooded, ELEMENT), blocked, BLOCK)
    rest = play(_ladder_free(build(_two_way(layout, one_way), lifted)[0], ladder), max_states)
    if rest.beaten:
        return "several of: " + "; ".join(say(facts) for facts, _, say in checks if facts)
    return f"not explained by the checks; with all of them lifted: {rest.stuck}"
