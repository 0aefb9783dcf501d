"""The 18 real dungeons as VGLC gives them, played by the whole-dungeon player: text map plus room graph.

VGLC ships each dungeon twice, with no correspondence between the two: `Processed/tloz<L>_<Q>.txt` (the rooms
on the map's slot grid) and `Graph Processed/LoZ[2]_<L>.dot` (the rooms as graph nodes with their labels and
door kinds). The graph has more nodes than the map has rooms (item rooms reached by stairs are nodes but no
slot). `align` puts graph nodes on map slots by a beam search that maximises

    3 x (graph links between nodes on neighbouring slots with facing door tiles on the map)
  + 1 x (bombable graph links between nodes on neighbouring slots: bombed walls show no door tile)
  - 2 x (facing door pairs on the map between two placed nodes the graph does not link)
  - 1 x (graph nodes left off the map)
  + 4 if the start node is on the map's last text column (the entrance, at the bottom of the screen map)

placing nodes in breadth-first order from the start node, each next to a placed graph neighbour (or off the
map; the start node always on it). The player then walks the map's tiles for the placed nodes; a node off the
map is one cell without tiles; a graph link that the map does not show as facing doors (a stair passage, a
bombed wall, a node off the map) joins the rooms' stair tiles, or where there is none the component the
player would start in (`hmolqd.dungeon.play.tile_graph`'s `loose_links`). What the alignment could not match
is reported per dungeon (`RealPlay.notes`), beside the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hmolqd.data.graph import dungeon_of, graph_dir
from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import ROOM_H, ROOM_W, SIDES, VOID, door_sides
from hmolqd.data.vglc import parse_room_file, processed_dir
from hmolqd.dungeon.embed import OPPOSITE, Embedding, side_between
from hmolqd.dungeon.layout import Layout, read_layout
from hmolqd.dungeon.play import PlayResult, play, tile_graph
from hmolqd.dungeon.walk import door_positions, tile_passages

BEAM = 400  # partial alignments kept per placed node
ENTRANCE_BONUS = 4  # the start room lies on the map's last text column (the bottom edge of the screen map)


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


def align(layout: Layout, rooms: torch.Tensor, slots: list[tuple[int, int]], beam: int = BEAM) -> Alignment:
    """Place graph nodes on map slots (module docstring); deterministic."""
    doors = _map_doors(rooms, slots)
    free_map = set(slots)
    last_col = max(c for _, c in slots)
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
            if v == layout.start or not cands:
                cands = set(free_map)
            cands = {x for x in cands if x in free_map and x not in by_slot}
            if v != layout.start:  # the player enters the dungeon on the map
                grown.append((score - 1, len(grown), place))  # v off the map
            for x in sorted(cands):
                entrance = ENTRANCE_BONUS * (v == layout.start and x[1] == last_col)
                grown.append((score + gain(place, by_slot, v, x) + entrance, len(grown), {**place, v: x}))
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
        }


def play_real(graph_file: str | Path, map_file: str | Path, beam: int = BEAM, max_states: int = 200_000) -> RealPlay:
    """Align a real graph to its map and play it (module docstring)."""
    layout = read_layout(graph_file)
    map_rooms, map_slots, _ = parse_room_file(map_file)
    a = align(layout, map_rooms, map_slots, beam)
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
        present.append(room.id in a.slots)
    door_links, loose, notes = [], [], []
    flags = {room.id: [False] * len(SIDES) for room in layout.rooms}
    for k, link in enumerate(layout.links):
        side = side_between(slots[link.a], slots[link.b]) if not link.stair else None
        if side is not None:
            door_links.append(k)
            flags[link.a][side] = True
            flags[link.b][OPPOSITE[side]] = True
        else:
            loose.append(k)
    emb = Embedding(
        slots=slots,
        door_links=tuple(door_links),
        stair_links=(),
        stairs={r: False for r in slots},
        doors={r: tuple(f) for r, f in flags.items()},
    )  # type: ignore[misc]
    labels = walkable_components(rooms)
    found = tile_passages(layout, emb, rooms, labels)
    served = {p.link for p in found.passages if p.link is not None}
    for k in door_links:
        if k not in served:  # neighbours on the map without facing doors: a bombed wall, or the map differs
            loose.append(k)
            link = layout.links[k]
            if "bomb" not in (link.kind_ab, link.kind_ba):
                notes.append(f"link {link.a}-{link.b} ({link.kind_ab}/{link.kind_ba}) has no facing doors on the map")
    off = [room.id for room, p in zip(layout.rooms, present) if not p]
    if off:
        notes.append(f"nodes {off} are not on the map (one cell without tiles each)")
    g = tile_graph(layout, rooms, found.passages, labels, present=present, loose_links=sorted(loose))
    return RealPlay(layout.name, a, play(g, max_states), tuple(notes))


def play_real_dungeons(data_dir: str | Path, beam: int = BEAM) -> list[RealPlay]:
    """Every graph of `Graph Processed/` with its map of `Processed/`, sorted by graph file name."""
    graphs = sorted(graph_dir(data_dir).glob("*.dot"))
    maps = processed_dir(data_dir)
    return [play_real(f, maps / f"{dungeon_of(f)}.txt", beam) for f in graphs]
