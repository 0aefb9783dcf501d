"""The whole-dungeon player: one search over the game state, from the start tile to the goal room.

Game state: the player's tile, the small keys held, the key doors opened, and what was picked up (boss key
`K`, key item `I`, switch codes `S`, `S1`, ...). Tiles of one 4-connected walkable component of a room
(`hmolqd.data.playability.walkable_components`) are reachable from each other for free, so the search holds
the **cell** (room, component) and walks the tiles afterwards. Cells connect through the passages of
`hmolqd.dungeon.walk.tile_passages` (facing door tiles of linked neighbours, stair tiles of stair links;
the one definition of tile geometry); a layout without tiles is played with one cell per room (the
`hmolqd.dungeon.mission` view).

Rules (one definition each, in `hmolqd.dungeon.rules`: `passable`, `PICKUPS`; the door kinds of
`hmolqd.dungeon.layout`):

- a passage serves one link and is travelled with that link's kind in the direction of travel: "open",
  "soft" (shutters open once the room is cleared), "bomb" (bombs are at hand) pass; "none" (the backward
  way of a one-way door) does not; "key" needs a small key and uses it up, the door then stays open both
  ways; "boss" needs the boss key, "item" the key item (not used up); "switch" opens once a room with the
  link's switch code was visited;
- entering a room (any walkable tile of it) picks up what its graph labels hold: one small key per `k`
  room, the boss key in `K`, the key item in `I`, switch codes; the VGLC graph labels rooms, not tiles;
- inside a room (`hmolqd.dungeon.crossings`, `with_crossings`; kinds `LADDER`, `PUSH` of the rules): one
  element tile P between two walkable tiles in a line is crossed with the ladder, which is the key item (held
  once a room labelled `I` was entered); in a puzzle room (`p`) a block pushed onto floor lets the player on
  where it stood. A crossing is one step of the length, like a passage;
- facing doors the layout does not link lead nowhere (a door disagreement, reported by `walk_dungeon`);
- the walk ends on entering the goal room.

Search: small keys are the only thing used up, so the order of opening key doors is the only choice that
can be regretted; everything else only grows. The search is breadth first over the sets of opened key
doors (bounded by `max_states`); for each set the cells reached are a closure (pick-ups apply as found).
The dungeon is **beaten** when some set reaches the goal. The winning order of key doors is then played
tile by tile by a lazy player: towards the next door of that order (or the goal), and when it cannot get
there, to the nearest reachable room with something still to pick up. That playthrough is a valid
solution (it opens only the doors of the order, each with a key in hand), not always the shortest one.

Reported: the rooms in visiting order, the tiles (room id, row, col), the length (tile steps inside rooms
plus one step per passage), the distinct rooms on the path, backtracking (re-entries of a room already
left, and how many rooms were re-entered, as in Schrum et al. 2020), and when not beaten, where the search
got stuck: the rooms reached at best and what each door on their border needs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import NamedTuple

import torch

from hmolqd.dungeon.cells import CellGraph, Move, dungeon_graph, layout_graph, tile_graph
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.crossings import crossings
from hmolqd.dungeon.embed import Embedding
from hmolqd.dungeon.layout import NO_PASSAGE, Layout, switch_codes
from hmolqd.dungeon.playthrough import goal_room, playthrough, solution_result
from hmolqd.dungeon.rules import (
    FREE_KINDS,
    LADDER,
    NO_LINK,
    PICKUPS,
    PlayResult,
    has_pickup,
    link_labels,
    passable,
    reversible,
)
from hmolqd.dungeon.walk import Passages, tile_view

__all__ = [
    "FREE_KINDS",
    "PICKUPS",
    "CellGraph",
    "Move",
    "PlayResult",
    "dungeon_graph",
    "layout_graph",
    "passable",
    "play",
    "play_dungeon",
    "play_layout",
    "reversible",
    "tile_graph",
    "with_crossings",
]


def _region(g: CellGraph, opened: frozenset[int]) -> tuple[set[int], set[int]]:
    """Cells and rooms reached from the start with `opened` key doors, pick-ups applied as found (closure)."""
    reached = {g.start}
    goal = goal_room(g)
    while True:
        size = len(reached)
        rooms = {g.cells[c][0] for c in reached}
        carried = frozenset().union(*(g.layout.rooms[r].labels for r in rooms))
        queue = deque(reached)
        while queue:
            u = queue.popleft()
            for m in g.moves[u]:
                if m.to not in reached and passable(m.kind, m.link, link_labels(g.layout, m.link), opened, carried):
                    reached.add(m.to)
                    queue.append(m.to)
        rooms = {g.cells[c][0] for c in reached}
        if len(reached) == size or goal in rooms:
            return reached, rooms


def play(g: CellGraph, max_states: int = 200_000) -> PlayResult:
    """Search the game state of `g` (module docstring) -> `PlayResult`."""
    layout = g.layout
    goal = goal_room(g)
    key_rooms = frozenset(i for i, room in enumerate(layout.rooms) if RoomLabel.KEY in room.labels)
    key_doors = sum(1 for link in layout.links if "key" in (link.kind_ab, link.kind_ba))
    exact = None if reversible(layout) else _state_search(g, goal, max_states)
    if exact is not None and exact.moves is not None:
        reached = len(_region(g, exact.opened)[1])
        return solution_result(g, exact.moves, len(key_rooms), key_doors, len(exact.opened), reached, exact.states)
    # Not beaten (or too many states for the exact search): the closure over opened-door sets says where the
    # player is stuck, or finds a winning order that the lazy player then walks.
    return _play_key_orders(g, _Counts(goal, key_rooms, key_doors), max_states, exact)


class _Counts(NamedTuple):
    """What `play` knows of the layout before searching: the goal room, the rooms holding a small key (indices
    into `layout.rooms`) and the links with a key-locked direction."""

    goal: int
    key_rooms: frozenset[int]
    key_doors: int


class _Exact(NamedTuple):
    """The exact search's answer: the fewest passages to the goal (None: the goal cannot be reached), the key
    doors opened on the way, the states visited."""

    moves: list[Move] | None
    opened: frozenset[int]
    states: int


class _DeadEnd(NamedTuple):
    """The best the closure search got to: the key doors opened, the cells and rooms reached."""

    opened: frozenset[int]
    cells: set[int]
    rooms: set[int]


def _play_key_orders(g: CellGraph, counts: _Counts, max_states: int, exact: _Exact | None) -> PlayResult:
    """Breadth first over the sets of opened key doors (module docstring): a playthrough of the first set that
    reaches the goal, else where the player is stuck. `exact`: the exact search's answer, when it ran (then
    the goal was not reached, and a key order that reaches it is cut off by one-way doors)."""
    parent: dict[frozenset[int], tuple[frozenset[int], int] | None] = {frozenset(): None}
    queue = deque(parent)
    best: _DeadEnd | None = None
    limit = ""
    while queue and not limit:
        opened = queue.popleft()
        cells, rooms = _region(g, opened)
        if best is None or len(rooms) > len(best.rooms):
            best = _DeadEnd(opened, cells, rooms)
        if counts.goal in rooms and exact is not None:
            limit = "one-way doors: every way to the goal found by key order leaves the player cut off on the way"
        elif counts.goal in rooms:
            order = _key_order(parent, opened)
            played = playthrough(g, order, len(counts.key_rooms), counts.key_doors, len(rooms), len(parent))
            if played is not None:
                return played
            limit = f"search limit of {max_states} states reached; the key order found could not be walked"
        elif len(counts.key_rooms & rooms) - len(opened) > 0:  # a key in hand: open one more key door
            for wider, door in _one_door_more(g, opened, cells):
                if wider in parent:
                    continue
                if len(parent) >= max_states:
                    limit = f"search limit of {max_states} states reached"
                    break
                parent[wider] = (opened, door)
                queue.append(wider)
    assert best is not None  # the empty set of opened doors was searched
    stuck = limit or _stuck(g, best.opened, best.cells, best.rooms, counts.key_rooms)
    states = len(parent) if exact is None else exact.states
    n_rooms, n_keys = len(g.layout.rooms), len(counts.key_rooms)
    return PlayResult(
        False, (), (), 0, 0, n_rooms, 0, 0, n_keys, counts.key_doors, len(best.opened), len(best.rooms), states, stuck
    )


def _key_order(parent: dict[frozenset[int], tuple[frozenset[int], int] | None], opened: frozenset[int]) -> list[int]:
    """The key doors in the order they were opened to get the set `opened` (`parent`: set -> (set before, door))."""
    order = []
    while (step := parent[opened]) is not None:
        opened, door = step
        order.append(door)
    return order[::-1]


def _one_door_more(g: CellGraph, opened: frozenset[int], cells: set[int]) -> list[tuple[frozenset[int], int]]:
    """(opened plus one key door, that door) for each key door on the border of `cells`, in the order found."""
    return [
        (opened | {m.link}, m.link)
        for u in sorted(cells)
        for m in g.moves[u]
        if m.kind == "key" and m.to not in cells and m.link not in opened
    ]


def _state_search(g: CellGraph, goal: int, max_states: int) -> _Exact | None:
    """Breadth first over (cell, key doors opened, pick-up rooms visited): the fewest passages to the goal.

    Exact with one-way doors (where the player stands matters). Returns (moves or None when the goal cannot
    be reached, the opened key doors, states visited), or None when `max_states` was reached first.
    """
    layout = g.layout
    pick = [i for i, room in enumerate(layout.rooms) if has_pickup(room.labels)]
    bit = {room: 1 << k for k, room in enumerate(pick)}
    key_bits = sum(bit[i] for i in pick if "k" in layout.rooms[i].labels)
    key_link = {m.link for moves in g.moves for m in moves if m.kind == "key"}
    link_bit = {link: 1 << k for k, link in enumerate(sorted(key_link))}
    carried_of: dict[int, frozenset[str]] = {}
    links_of: dict[int, frozenset[int]] = {}

    def carried(got: int) -> frozenset[str]:
        if got not in carried_of:
            carried_of[got] = frozenset().union(*(layout.rooms[i].labels for i in pick if got & bit[i]))
        return carried_of[got]

    start_room = g.cells[g.start][0]
    first = (g.start, 0, bit.get(start_room, 0))
    prev: dict[tuple[int, int, int], tuple[tuple[int, int, int], Move] | None] = {first: None}
    queue = deque([first])
    while queue:
        state = queue.popleft()
        cell, opened, got = state
        if g.cells[cell][0] == goal:
            moves: list[Move] = []
            at = state
            while prev[at] is not None:
                at, move = prev[at]  # type: ignore[misc]
                moves.append(move)
            return _Exact(moves[::-1], frozenset(k for k, b in link_bit.items() if opened & b), len(prev))
        have = carried(got)
        keys = bin(got & key_bits).count("1") - bin(opened).count("1")
        if opened not in links_of:
            links_of[opened] = frozenset(k for k, b in link_bit.items() if opened & b)
        opened_links = links_of[opened]
        for m in g.moves[cell]:
            nxt_opened = opened
            if not passable(m.kind, m.link, link_labels(layout, m.link), opened_links, have):
                if m.kind != "key" or keys <= 0:
                    continue
                nxt_opened = opened | link_bit[m.link]
            nxt = (m.to, nxt_opened, got | bit.get(g.cells[m.to][0], 0))
            if nxt in prev:
                continue
            if len(prev) >= max_states:
                return None
            prev[nxt] = (state, m)
            queue.append(nxt)
    return _Exact(None, frozenset(), len(prev))


def _stuck(g: CellGraph, opened: frozenset[int], cells: set[int], rooms: set[int], key_rooms: frozenset[int]) -> str:
    """Describe the best dead end: rooms reached and what each door on their border needs."""
    layout = g.layout
    ids = sorted(layout.rooms[r].id for r in rooms)
    in_hand = len(key_rooms & rooms) - len(opened)
    needs: list[str] = []
    for u in sorted(cells):
        for m in g.moves[u]:
            if m.to in cells:
                continue
            a, b = layout.rooms[g.cells[u][0]].id, layout.rooms[g.cells[m.to][0]].id
            if m.kind == "key":
                need = (
                    f"{a}->{b} key-locked ({in_hand} key(s) in hand, "
                    f"{len(key_rooms & rooms)} picked up, {len(opened)} used)"
                )
            elif m.kind == "boss":
                need = f"{a}->{b} needs the boss key (room labelled K not reached)"
            elif m.kind == "item":
                need = f"{a}->{b} needs a key item (room labelled I not reached)"
            elif m.kind == "switch":
                codes = ",".join(sorted(switch_codes(link_labels(layout, m.link)))) or "S"
                need = f"{a}->{b} switch-locked (switch {codes} not reached)"
            elif m.kind == LADDER:
                need = (
                    f"room {a}: one water/lava tile to cross, needs the ladder (key item, room labelled I not reached)"
                )
            elif m.kind == NO_PASSAGE:
                need = f"{a}->{b} one-way the other way"
            else:
                continue
            if need not in needs:
                needs.append(need)
    if g.labels is not None:
        cut = [
            layout.rooms[r].id
            for r in rooms
            if sum(1 for c in cells if g.cells[c][0] == r) < sum(1 for c in g.cells if c[0] == r and c[1])
        ]
        needs += [f"rooms {cut[:8]} only partly walkable from where the player enters"] if cut else []
    where = "; ".join(needs) if needs else "no door leads on"
    return f"goal {layout.goal} not reached: at best {len(rooms)} of {len(layout.rooms)} rooms ({ids[:12]}...); {where}"


def with_crossings(g: CellGraph, rooms: torch.Tensor) -> CellGraph:
    """`g` plus the ways inside its rooms (`rooms` `(n, 16, 11)`, layout.rooms order): ladder and push crossings
    between walkable components (`hmolqd.dungeon.crossings`); a room played without tiles has none."""
    if g.labels is None:
        return g
    cell_of = {cell: k for k, cell in enumerate(g.cells)}
    moves = [list(m) for m in g.moves]
    for x in crossings(rooms, g.labels, [room.labels for room in g.layout.rooms]):
        a, b = cell_of.get((x.room, x.label_a)), cell_of.get((x.room, x.label_b))
        if a is not None and b is not None:
            moves[a].append(Move(b, x.kind, NO_LINK, x.tile_a, x.tile_b))
    return replace(g, moves=tuple(tuple(m) for m in moves))


def play_layout(layout: Layout, max_states: int = 200_000) -> PlayResult:
    """Play a layout on its graph alone (one cell per room): the key/lock mission view."""
    return play(layout_graph(layout), max_states)


def play_dungeon(
    layout: Layout,
    embedding: Embedding,
    rooms: torch.Tensor,
    labels: torch.Tensor | None = None,
    max_states: int = 200_000,
    found: Passages | None = None,
) -> PlayResult:
    """Play a built dungeon tile by tile (rooms `(n, 16, 11)` in layout.rooms order at `embedding.slots`)."""
    view = tile_view(layout, embedding, rooms, labels, found)
    return play(with_crossings(dungeon_graph(layout, view), view.rooms), max_states)
