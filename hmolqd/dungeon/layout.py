"""A dungeon layout: rooms (graph nodes with their labels), links between rooms with door kinds, start, goal.

A `Layout` is what the rest of the dungeon pipeline works on. It is read from a VGLC room graph
(`Graph Processed/*.dot`, parsed by `hmolqd.data.graph`) or drawn by `hmolqd.dungeon.sampler`.

Door kinds come from the edge labels of the graph (legend `zelda.json`, `hmolqd.data.graph.EDGE_LEGEND`),
one kind per direction of travel, because the real graphs sometimes label the two sides of one door
differently (key-locked from one side, soft-locked from the other):

    K -> "boss"    boss-key-locked        k -> "key"     key-locked (uses up one small key)
    I -> "item"    needs a key item       S, S1 -> "switch"  opens once the room with that switch code is visited
    b -> "bomb"    bombable (passable)    l -> "soft"    soft-locked: shutters, open after the room is cleared
    no label -> "open";  an edge written in one direction only is one-way: kind "none" backwards.

The code `s` on an edge is no door kind but a placement: the two rooms share no door and are joined by an
underground stair passage (`Link.stair`; the legend's "visible, impassable": seen on the map, not walked
through a wall). LoZ_3, LoZ_4, LoZ_5, LoZ_9, LoZ2_2, LoZ2_8 and LoZ2_9 have such edges.

When a direction carries several codes the strongest wins, in the order of `KIND_ORDER`.
Self-loops (in LoZ2_5 and LoZ2_9) join a room to itself and carry no door: they are dropped and listed
in `Layout.notes`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from hmolqd.data.graph import DungeonGraph, parse_dot
from hmolqd.data.vglc import read_text
from hmolqd.dungeon.codes import DoorCode, RoomLabel

# Door kinds, strongest first: a direction labelled with several codes takes the first that applies.
KIND_ORDER: tuple[str, ...] = ("boss", "key", "item", "switch", "bomb", "soft", "open")
LOCKED_KINDS: frozenset[str] = frozenset({"boss", "key", "item", "switch"})  # need something the player carries
NO_PASSAGE = "none"  # the backward direction of a one-way edge
# Rooms of one layout, at most: the largest real dungeon has 66; planning a layout grows with the square of its
# rooms (0.85 s for a 200-room path graph, 4.5 s for 400, CPU), so a bigger graph is refused before any work.
MAX_ROOMS = 200
MIN_ROOMS = 4  # start, one room, boss, goal (hmolqd.dungeon.sampler samples no fewer)
_CODE_KIND: dict[str, str] = {
    DoorCode.BOSS_LOCKED: "boss",
    DoorCode.KEY_LOCKED: "key",
    DoorCode.ITEM_LOCKED: "item",
    DoorCode.BOMBABLE: "bomb",
    DoorCode.SOFT_LOCKED: "soft",
}
# `N [..]` or `N -> M [..]` with its attribute list; labels may span lines (LoZ_5..LoZ_9) but hold no "]".
_STATEMENT_ATTRS = re.compile(r"(?P<head>(?P<src>\d+)[ \t]*(?:->[ \t]*(?P<dst>\d+)[ \t]*)?)\[(?P<body>[^\]]*)\]")
_LABEL = re.compile(r'label[ \t]*=[ \t]*"[^"]*"')
_ATTR = re.compile(r'(\w+)[ \t]*=[ \t]*"?([^",\s]*)"?')
_CORPUS_NAME = re.compile(r"^LoZ2?_[1-9]$")  # the VGLC graph files (hmolqd.data.graph.dungeon_of)


class LayoutError(ValueError):
    """A room graph breaks a layout rule; the message names the graph (file) and the node or edge."""


@dataclass(frozen=True)
class Room:
    """One graph node: `labels` as in `hmolqd.data.graph` (e.g. {"e", "k"}: enemies and a key)."""

    id: int
    labels: frozenset[str]


@dataclass(frozen=True)
class Link:
    """One connection between rooms `a` < `b`.

    `kind_ab` / `kind_ba`: door kind for travel a -> b / b -> a (module docstring; "none" = that way
    is closed, a one-way door). `stair` is True when the graph asks for a stair passage (`s` label);
    the embedding may turn further links into stair passages. `labels` is the union of both directions.
    """

    a: int
    b: int
    kind_ab: str
    kind_ba: str
    labels: frozenset[str] = frozenset()
    stair: bool = False

    def kind_from(self, src: int) -> str:
        if src == self.a:
            return self.kind_ab
        if src == self.b:
            return self.kind_ba
        raise KeyError(f"link {self.a}-{self.b} does not touch room {src}")

    @property
    def locked(self) -> bool:
        """A door that needs something carried (key, boss key, key item, switch) in either direction."""
        return bool({self.kind_ab, self.kind_ba} & LOCKED_KINDS)

    @property
    def one_way(self) -> bool:
        return NO_PASSAGE in (self.kind_ab, self.kind_ba)


@dataclass(frozen=True)
class Layout:
    """Rooms, links, start and goal of one dungeon. `slots` (room id -> (row, col)) is set when the source
    already fixed the grid (a sampled layout, or a .dot written by `hmolqd.dungeon.export` with slot
    attributes); `None` leaves the placement to `hmolqd.dungeon.embed`."""

    name: str
    source: str  # the file it was read from, or how it was sampled
    rooms: tuple[Room, ...]
    links: tuple[Link, ...]
    start: int
    goal: int
    boss: int | None = None
    slots: dict[int, tuple[int, int]] | None = field(default=None, compare=False)
    notes: tuple[str, ...] = ()

    def room(self, room_id: int) -> Room:
        for room in self.rooms:
            if room.id == room_id:
                return room
        raise KeyError(f"{self.source}: no room {room_id}")

    def neighbours(self) -> dict[int, list[int]]:
        """Room id -> ids of linked rooms (either direction, any kind)."""
        out: dict[int, list[int]] = {room.id: [] for room in self.rooms}
        for link in self.links:
            out[link.a].append(link.b)
            out[link.b].append(link.a)
        return out

    def distances(self, src: int) -> dict[int, int]:
        """Hops from `src` to every room it reaches over links (both directions, locks ignored)."""
        adj = self.neighbours()
        dist = {src: 0}
        queue = deque([src])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        return dist


def direction_kind(codes: frozenset[str]) -> str:
    """Door kind for one direction of travel from its label codes (see the module docstring)."""
    kinds = {_CODE_KIND[c] for c in codes if c in _CODE_KIND}
    kinds |= {"switch" for c in codes if c.startswith(DoorCode.SWITCH)}
    return next((kind for kind in KIND_ORDER if kind in kinds), "open")


def switch_codes(codes: frozenset[str]) -> frozenset[str]:
    """The switch codes (`S`, `S1`, ...) among label codes; a switch door opens once a room with its code was
    visited."""
    return frozenset(c for c in codes if c.startswith(DoorCode.SWITCH))


def _pick_goal(graph: DungeonGraph, source: str, links: set[tuple[int, int]]) -> int:
    goals = [node.id for node in graph.nodes if RoomLabel.GOAL in node.labels]
    if not goals:
        raise LayoutError(f"graph {source}: no goal room; one node must carry the label 't' (triforce)")
    if len(goals) == 1:
        return goals[0]
    # Several triforce labels (LoZ_3 marks an item room "e,i,t" too): the goal is the one beside the boss.
    bosses = {node.id for node in graph.nodes if RoomLabel.BOSS in node.labels}
    beside = [g for g in goals if any(((min(g, b), max(g, b)) in links) for b in bosses)]
    return (beside or goals)[0]


def layout_from_graph(graph: DungeonGraph, source: str | None = None) -> Layout:
    """A parsed VGLC graph -> `Layout` (door kinds per direction; module docstring). Errors name `source`."""
    source = source or f"{graph.name}.dot"
    if len(graph.nodes) < MIN_ROOMS:  # the rule of a sampled layout's room count (`dungeon --rooms`)
        raise LayoutError(
            f"graph {source}: {len(graph.nodes)} room(s); a dungeon needs at least {MIN_ROOMS} "
            "(start, a room, boss, goal)"
        )
    if len(graph.nodes) > MAX_ROOMS:
        raise LayoutError(
            f"graph {source}: {len(graph.nodes)} rooms; a dungeon has at most {MAX_ROOMS} (the largest real one has 66)"
        )
    directed: dict[tuple[int, int], frozenset[str]] = {}
    notes: list[str] = []
    for edge in graph.edges:
        if edge.src == edge.dst:
            note = f"self-loop on node {edge.src} dropped (a room is not linked to itself)"
            notes += [note] if note not in notes else []
            continue
        directed[(edge.src, edge.dst)] = directed.get((edge.src, edge.dst), frozenset()) | edge.labels
    pairs = {(min(src, dst), max(src, dst)) for src, dst in directed}
    links = []
    for a, b in sorted(pairs):
        ab, ba = directed.get((a, b)), directed.get((b, a))
        union = (ab or frozenset()) | (ba or frozenset())
        links.append(
            Link(
                a=a,
                b=b,
                labels=union,
                stair=DoorCode.STAIR in union,
                kind_ab=NO_PASSAGE if ab is None else direction_kind(ab),
                kind_ba=NO_PASSAGE if ba is None else direction_kind(ba),
            )
        )
    starts = [node.id for node in graph.nodes if RoomLabel.START in node.labels]
    if len(starts) != 1:
        raise LayoutError(
            f"graph {source}: expected exactly one start room (node label 's'), found {len(starts)}: {starts}"
        )
    goal = _pick_goal(graph, source, pairs)
    bosses = [node.id for node in graph.nodes if RoomLabel.BOSS in node.labels]
    layout = Layout(
        name=graph.name,
        source=source,
        rooms=tuple(Room(n.id, n.labels) for n in graph.nodes),
        links=tuple(links),
        start=starts[0],
        goal=goal,
        boss=bosses[0] if bosses else None,
        notes=tuple(notes),
    )
    check_connected(layout)
    return layout


def check_connected(layout: Layout) -> None:
    """Every room must be reachable from the start over links (locks and directions ignored)."""
    reached = layout.distances(layout.start)
    missing = [room.id for room in layout.rooms if room.id not in reached]
    if missing:
        raise LayoutError(
            f"graph {layout.source}: node(s) {missing[:10]} cannot be reached from the start node {layout.start}; "
            "a dungeon must be one connected graph"
        )


def read_layout(path: str | Path) -> Layout:
    """Read a room graph in the VGLC `.dot` format (any file name) -> `Layout`.

    Besides `label`, node statements may carry `row=R, col=C` (the slot, as written by
    `hmolqd.dungeon.export.dungeon_dot`) and edge statements `link="door"|"stair"` (a stair link, kept as
    one); the slots are used as the placement and the rest is read by `hmolqd.data.graph.parse_dot`.
    Either every node has a slot or none.
    """
    path = Path(path)
    text = read_text(path)
    slots: dict[int, tuple[int, int]] = {}
    stair_pairs: set[tuple[int, int]] = set()
    counted = [0, 1]  # (offset, line there): re.sub visits statements in order, so each line is counted once

    def take_attrs(match: re.Match[str]) -> str:
        counted[1] += text.count("\n", counted[0], match.start())
        counted[0], line = match.start(), counted[1]
        body = match.group("body")
        names = ["label"] * len(_LABEL.findall(body)) + [item.group(1) for item in _ATTR.finditer(_LABEL.sub("", body))]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # DOT would silently keep the last one
            raise LayoutError(f"{path}:{line}: attribute(s) {twice} given twice in one statement; give each once")
        attrs = {item.group(1): item.group(2) for item in _ATTR.finditer(_LABEL.sub("", body))}
        unknown = sorted(set(attrs) - {"row", "col", "link"})
        if unknown:
            raise LayoutError(
                f"{path}:{line}: unknown attribute(s) {unknown}; "
                "a room graph statement may carry label, row, col and link"
            )
        src, dst = int(match.group("src")), match.group("dst")
        if dst is None and attrs:
            if set(attrs) != {"row", "col"} or not all(re.fullmatch(r"-?\d+", attrs[k]) for k in ("row", "col")):
                raise LayoutError(f"{path}:{line}: node {src} needs both row= and col= as integers, got {attrs}")
            slots[src] = (int(attrs["row"]), int(attrs["col"]))
        elif dst is not None and attrs:
            if set(attrs) != {"link"} or attrs["link"] not in ("door", "stair"):
                raise LayoutError(
                    f'{path}:{line}: edge {src} -> {dst} may only carry link="door" or link="stair", got {attrs}'
                )
            if attrs["link"] == "stair":
                stair_pairs.add((min(src, int(dst)), max(src, int(dst))))
        label = _LABEL.search(match.group("body"))
        return match.group("head") + (f"[{label.group(0)}]" if label else "")

    # A self-loop is an error in a graph a user wrote; the corpus's two (LoZ2_5, LoZ2_9) are dropped with a note.
    corpus_file = _CORPUS_NAME.match(path.stem) is not None
    graph = parse_dot(path, _STATEMENT_ATTRS.sub(take_attrs, text), corpus_name=False, self_loops=corpus_file)
    layout = layout_from_graph(graph, str(path))
    missing = [room.id for room in layout.rooms if room.id not in slots]
    if slots and missing:
        raise LayoutError(
            f"{path}: node(s) {missing[:10]} lack row= and col= slot attributes; give a slot to every node or to none"
        )
    return replace(
        layout,
        links=tuple(replace(link, stair=link.stair or (link.a, link.b) in stair_pairs) for link in layout.links),
        slots=slots or None,
    )
