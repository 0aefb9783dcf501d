"""The 18 real dungeons as VGLC gives them, played by the whole-dungeon player: text map plus room graph.

VGLC ships each dungeon twice, with no correspondence between the two: `Processed/tloz<L>_<Q>.txt` (the rooms
on the map's slot grid) and `Graph Processed/LoZ[2]_<L>.dot` (the rooms as graph nodes with their labels and
door kinds). The graph has more nodes than the map has rooms (item rooms reached by stairs are nodes but no
slot). Two facts of the data anchor the two together: every map has exactly one room with a door that opens
onto no room (`entrances`: the way in, on the screen's south side), and every graph's start node (label `s`
alone) has exactly one link: the start node is the overworld, off the map, and its one neighbour is the
entrance room (`outside_start`). From there `align` puts graph nodes on map slots by a beam search that
maximises

    3 x (graph links between nodes on neighbouring slots with facing door tiles on the map)
  + 1 x (bombable graph links between nodes on neighbouring slots: bombed walls show no door tile)
  - 2 x (facing door pairs on the map between two placed nodes the graph does not link)
  - 1 x (graph nodes left off the map, the start node aside)

placing nodes in breadth-first order from the start node, each next to a placed graph neighbour (or off the
map). The player then walks the map's tiles for the placed nodes; a node off the map, and a map room drawn
with an all-void interior (`untiled`: 38 rooms of the 18 maps have walls and doors but no floor), is one cell
without tiles; a graph link that the map does not show as facing doors (a stair passage, a bombed wall, a node
off the map) joins the rooms' stair tiles, or where there is none the component the player would start in
(`hmolqd.dungeon.cells.tile_graph`'s `loose_links`). Ways inside a room (ladder, pushed block) are those of
`hmolqd.dungeon.crossings`, as for a generated dungeon. What the alignment could not match is reported per
dungeon (`RealPlay.notes`), beside the result; a dungeon not beaten carries the fact of the data that stops
it (`RealPlay.cause`, computed by `hmolqd.dungeon.real_causes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from hmolqd.data.graph import dungeon_of, graph_dir
from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import INTERIOR, ROOM_H, ROOM_W, SIDES, VOID, door_sides
from hmolqd.data.vglc import parse_room_file, processed_dir
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.embed import OPPOSITE, SIDE_OFFSETS, Embedding, side_between
from hmolqd.dungeon.layout import Layout, read_layout
from hmolqd.dungeon.play import CellGraph, PlayResult, play, tile_graph, with_crossings
from hmolqd.dungeon.real_causes import not_beatable_cause
from hmolqd.dungeon.walk import door_positions, tile_passages

BEAM = 400  # partial alignments kept per placed node


@dataclass(frozen=True)
class Alignment:
    slots: dict[int, tuple[int, int]]  # graph node -> map slot, for the nodes placed on the map
    score: int
    door_links: int  # graph links shown as facing doors on the map
    links: int  # graph links
    map_rooms: int
    unlinked_doors: int  # facing door pairs on the map between placed nodes the graph does not link


def _map_doors(rooms: torch.Tensor, slots: list[tuple[int, int]]) -> set[frozenset[tuple[int, int]]]:
    """Pairs of neighbouring map slots whose rooms have facing, lined-up door tiles."""
    at = {slot: k for k, slot in enumerate(slots)}
    sides, pos = door_sides(rooms), door_positions(rooms.long())
    out = set()
    for slot, k in at.items():
        for side in (1, 3):
            other = (slot[0] + (side == 1), slot[1] + (side == 3))
            j = at.get(other)
            if (
                j is not None
                and sides[k, side]
                and sides[j, OPPOSITE[side]]
                and (pos[side][k] & pos[OPPOSITE[side]][j]).any()
            ):
                out.add(frozenset((slot, other)))
    return out


def entrances(rooms: torch.Tensor, slots: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Map slots whose room has a door opening onto no room (the dungeon's way in from the overworld; every
    real map has exactly one, on the screen's south side)."""
    at, sides = set(slots), door_sides(rooms)
    return [
        slot
        for k, slot in enumerate(slots)
        if any(sides[k, s] and (slot[0] + dr, slot[1] + dc) not in at for s, (dr, dc) in enumerate(SIDE_OFFSETS))
    ]


def outside_start(layout: Layout) -> int | None:
    """The room behind the start node when the start node is the overworld, else None.

    Every VGLC graph's start node (label `s` alone) has exactly one link: it is the doorway from the
    overworld, not a room of the map, and its one neighbour is the map's entrance room (`entrances`)."""
    links = [link for link in layout.links if layout.start in (link.a, link.b)]
    if len(links) != 1 or layout.room(layout.start).labels != {RoomLabel.START}:
        return None
    return links[0].b if links[0].a == layout.start else links[0].a


def align(layout: Layout, rooms: torch.Tensor, slots: list[tuple[int, int]], beam: int = BEAM) -> Alignment:
    """Place graph nodes on map slots (module docstring); deterministic."""
    doors = _map_doors(rooms, slots)
    free_map = set(slots)
    entry = set(entrances(rooms, slots)) or free_map
    doorway = outside_start(layout) or layout.start
    adj: dict[int, list[tuple[int, bool]]] = {room.id: [] for room in layout.rooms}
    for link in layout.links:
        if not link.stair:
            bomb = "bomb" in (link.kind_ab, link.kind_ba)
            adj[link.a].append((link.b, bomb))
            adj[link.b].append((link.a, bomb))
    order, seen = [layout.start], {layout.start}
    for u in order:
        for v, _ in sorted(adj[u]):
            if v not in seen:
                seen.add(v)
                order.append(v)
    order += [room.id for room in layout.rooms if room.id not in seen]
    linked = {frozenset((link.a, link.b)) for link in layout.links}

    def gain(place: dict[int, tuple[int, int]], by_slot: dict[tuple[int, int], int], v: int, x: tuple[int, int]) -> int:
        g = 0
        for u, bomb in adj[v]:
            y = place.get(u)
            if y is not None and side_between(x, y) is not None:
                g += 3 if frozenset((x, y)) in doors else int(bomb)
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            y = (x[0] + dr, x[1] + dc)
            w = by_slot.get(y)
            if w is not None and frozenset((x, y)) in doors and frozenset((v, w)) not in linked:
                g -= 2
        return g

    states: list[tuple[int, dict[int, tuple[int, int]]]] = [(0, {})]
    for v in order:
        grown: list[tuple[int, int, dict[int, tuple[int, int]]]] = []
        for score, place in states:
            by_slot = {s: n for n, s in place.items()}
            cands: set[tuple[int, int]] = set()
            for u, _ in adj[v]:
                if u in place:
                    y = place[u]
                    cands |= {(y[0] + dr, y[1] + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))}
            if v == doorway:
                cands = set(entry)
            elif not cands:
                cands = set(free_map)
            cands = {x for x in cands if x in free_map and x not in by_slot}
            if v == layout.start and doorway != layout.start:
                grown.append((score, len(grown), place))  # the start node is the overworld: off the map
                continue
            if v != doorway:  # the player enters the dungeon on the map
                grown.append((score - 1, len(grown), place))  # v off the map
            for x in sorted(cands):
                grown.append((score + gain(place, by_slot, v, x), len(grown), {**place, v: x}))
        grown.sort(key=lambda t: (-t[0], t[1]))
        states = [(s, p) for s, _, p in grown[:beam]]
    score, place = states[0]
    shown = sum(
        1
        for link in layout.links
        if link.a in place and link.b in place and frozenset((place[link.a], place[link.b])) in doors
    )
    by_slot = {s: n for n, s in place.items()}
    unlinked = sum(
        1 for pair in doors if all(s in by_slot for s in pair) and frozenset(by_slot[s] for s in pair) not in linked
    )
    return Alignment(dict(place), score, shown, len(layout.links), len(slots), unlinked)


@dataclass(frozen=True)
class RealPlay:
    name: str
    alignment: Alignment
    result: PlayResult
    notes: tuple[str, ...]
    cause: str = ""  # when not beaten: the fact of the data that stops the player, computed by a rule check

    def to_json(self) -> dict[str, object]:
        a = self.alignment
        return {
            "name": self.name,
            "beaten": self.result.beaten,
            "stuck": self.result.stuck,
            "rooms_on_path": self.result.rooms_on_path,
            "rooms": self.result.rooms,
            "length": self.result.length,
            "backtracking": self.result.backtracking,
            "keys_used": self.result.keys_used,
            "placed_nodes": len(a.slots),
            "map_rooms": a.map_rooms,
            "links_shown_as_doors": a.door_links,
            "links": a.links,
            "unlinked_map_doors": a.unlinked_doors,
            "notes": list(self.notes),
            "not_beatable_because": self.cause,
        }


def untiled(room: torch.Tensor) -> bool:
    """A map room `(16, 11)` whose interior is all void `-`: VGLC drew its walls and doors but no floor (38 rooms
    of the 18 maps), so the map does not say how it is crossed; it is played like a node off the map."""
    return bool((room[INTERIOR] == VOID).all())


class Tiled(NamedTuple):
    """A real dungeon ready to play: rooms `(n, 16, 11)` in layout.rooms order (void where the map has none),
    which rooms have tiles, the slots (off the map: far apart) and what the alignment could not match."""

    rooms: torch.Tensor
    present: tuple[bool, ...]
    slots: dict[int, tuple[int, int]]
    notes: tuple[str, ...]


def tiled(layout: Layout, map_rooms: torch.Tensor, map_slots: list[tuple[int, int]], a: Alignment) -> Tiled:
    """The map's rooms at the aligned graph nodes (module docstring)."""
    slot_room = {slot: k for k, slot in enumerate(map_slots)}
    n = len(layout.rooms)
    rooms = torch.full((n, ROOM_H, ROOM_W), VOID, dtype=torch.long)
    present = []
    slots: dict[int, tuple[int, int]] = {}
    for i, room in enumerate(layout.rooms):
        if room.id in a.slots:
            rooms[i] = map_rooms[slot_room[a.slots[room.id]]].long()
            slots[room.id] = a.slots[room.id]
        else:
            slots[room.id] = (-1000 - 3 * i, -1000)  # off the map: no neighbour
        present.append(room.id in a.slots and not untiled(rooms[i]))
    notes = []
    off = [room.id for room in layout.rooms if room.id not in a.slots]
    if off:
        notes.append(f"nodes {off} are not on the map (one cell without tiles each)")
    blank = [(room.id, a.slots[room.id]) for room, p in zip(layout.rooms, present) if room.id in a.slots and not p]
    if blank:
        notes.append(
            "map rooms drawn with an all-void interior, played as rooms without tiles (node at slot): "
            + ", ".join(f"{r} at {s}" for r, s in blank)
        )
    return Tiled(rooms, tuple(present), slots, tuple(notes))


def real_graph(layout: Layout, t: Tiled) -> tuple[CellGraph, tuple[str, ...]]:
    """The cell graph the player plays on a tiled real dungeon, and notes on links the map does not show."""
    door_links, loose, notes = [], [], []
    flags = {room.id: [False] * len(SIDES) for room in layout.rooms}
    for k, link in enumerate(layout.links):
        side = side_between(t.slots[link.a], t.slots[link.b]) if not link.stair else None
        if side is not None:
            door_links.append(k)
            flags[link.a][side] = True
            flags[link.b][OPPOSITE[side]] = True
        else:
            loose.append(k)
    emb = Embedding(
        slots=t.slots,
        door_links=tuple(door_links),
        stair_links=(),
        stairs={r: False for r in t.slots},
        doors={r: tuple(f) for r, f in flags.items()},
    )  # type: ignore[misc]
    labels = walkable_components(t.rooms)
    found = tile_passages(layout, emb, t.rooms, labels)
    served = {p.link for p in found.passages if p.link is not None and t.present[p.i] and t.present[p.j]}
    for k in door_links:
        if k not in served:  # neighbours on the map without facing doors: a bombed wall, or the map differs
            loose.append(k)
            link = layout.links[k]
            if "bomb" not in (link.kind_ab, link.kind_ba):
                notes.append(f"link {link.a}-{link.b} ({link.kind_ab}/{link.kind_ba}) has no facing doors on the map")
    g = tile_graph(layout, t.rooms, found.passages, labels, present=t.present, loose_links=sorted(loose))
    return with_crossings(g, t.rooms), tuple(notes)


def play_real(graph_file: str | Path, map_file: str | Path, beam: int = BEAM, max_states: int = 200_000) -> RealPlay:
    """Align a real graph to its map and play it (module docstring); when not beaten, `RealPlay.cause` says
    which fact of the data stops the player (`hmolqd.dungeon.real_causes`)."""
    layout = read_layout(graph_file)
    map_rooms, map_slots, _ = parse_room_file(map_file)
    a = align(layout, map_rooms, map_slots, beam)
    t = tiled(layout, map_rooms, map_slots, a)
    g, notes = real_graph(layout, t)
    result = play(g, max_states)
    cause = "" if result.beaten else not_beatable_cause(layout, t, real_graph, max_states)
    return RealPlay(layout.name, a, result, t.notes + notes, cause)


def play_real_dungeons(data_dir: str | Path, beam: int = BEAM) -> list[RealPlay]:
    """Every graph of `Graph Processed/` with its map of `Processed/`, sorted by graph file name."""
    graphs = sorted(graph_dir(data_dir).glob("*.dot"))
    maps = processed_dir(data_dir)
    return [play_real(f, maps / f"{dungeon_of(f)}.txt", beam) for f in graphs]
