"""The lazy player of `hmolqd.dungeon.play` (module docstring there): it walks a winning order of key doors
tile by tile, and the `PlayResult` of the moves it made (rooms in order, tiles, length, backtracking)."""

from __future__ import annotations

from collections import deque

from hmolqd.data.tiles import ROOM_H, ROOM_W
from hmolqd.dungeon.cells import CellGraph, Move
from hmolqd.dungeon.codes import RoomLabel
from hmolqd.dungeon.rules import PlayResult, has_pickup, link_labels, passable

_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def goal_room(g: CellGraph) -> int:
    return next(i for i, room in enumerate(g.layout.rooms) if room.id == g.layout.goal)


class _Inventory:
    """What the player carries while the lazy playthrough walks (module docstring)."""

    def __init__(self, g: CellGraph) -> None:
        self.g, self.visited, self.carried, self.keys, self.opened = g, set(), frozenset(), 0, frozenset()

    def enter(self, cell: int) -> None:
        room = self.g.cells[cell][0]
        if room not in self.visited:
            self.visited.add(room)
            codes = self.g.layout.rooms[room].labels
            self.carried |= codes
            self.keys += int(RoomLabel.KEY in codes)


def _bfs(g: CellGraph, src: int, inv: _Inventory) -> dict[int, tuple[int, Move] | None]:
    """Cell -> (previous cell, move) over the cells reachable from `src` with what `inv` holds now, in
    breadth-first order (so the first cell found of a kind is a nearest one)."""
    prev: dict[int, tuple[int, Move] | None] = {src: None}
    queue = deque([src])
    while queue:
        u = queue.popleft()
        for m in g.moves[u]:
            if m.to not in prev and passable(m.kind, m.link, link_labels(g.layout, m.link), inv.opened, inv.carried):
                prev[m.to] = (u, m)
                queue.append(m.to)
    return prev


def _route(prev: dict[int, tuple[int, Move] | None], dst: int) -> list[Move]:
    out = []
    while prev[dst] is not None:
        dst, move = prev[dst]  # type: ignore[misc]
        out.append(move)
    return out[::-1]


def playthrough(
    g: CellGraph, order: list[int], keys: int, key_doors: int, reached: int, states: int
) -> PlayResult | None:
    """Play the winning order of key doors with the lazy player (module docstring)."""
    goal = goal_room(g)
    inv = _Inventory(g)
    inv.enter(g.start)
    pos, moves = g.start, []
    for target in [*order, None]:
        while True:
            prev = _bfs(g, pos, inv)
            if target is None:
                ends = [c for c in prev if g.cells[c][0] == goal]
                step = None
            else:
                doors = (
                    [(u, m) for u in prev for m in g.moves[u] if m.link == target and m.kind == "key"]
                    if inv.keys
                    else []
                )
                ends = [u for u, _ in doors]
                step = doors[0][1] if doors else None
            if ends:
                dst = ends[0]  # prev is in breadth-first order: the nearest
                if step is not None:
                    step = next(m for u, m in doors if u == dst)
                break
            todo = [
                c for c in prev if g.cells[c][0] not in inv.visited and has_pickup(g.layout.rooms[g.cells[c][0]].labels)
            ]
            if not todo:  # one-way doors cut the lazy player off: no playthrough
                return None
            dst = todo[0]
            for m in _route(prev, dst):
                moves.append(m)
                inv.enter(m.to)
            pos = dst
        for m in _route(prev, dst) + ([step] if step is not None else []):
            moves.append(m)
            inv.enter(m.to)
        if step is not None:
            inv.opened |= {target}
            inv.keys -= 1
        pos = moves[-1].to if moves else pos
        if target is None:
            break
    return solution_result(g, moves, keys, key_doors, len(inv.opened), reached, states)


def _tile_walk(g: CellGraph, room: int, src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest tile path from `src` to `dst` inside one walkable component of room `room` (both included)."""
    assert g.labels is not None
    labels = g.label_lists(room)
    lab = labels[src[0]][src[1]]
    prev: dict[tuple[int, int], tuple[int, int] | None] = {src: None}
    queue = deque([src])
    while queue:
        r, c = queue.popleft()
        if (r, c) == dst:
            break
        for dr, dc in _STEPS:
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < ROOM_H and 0 <= nxt[1] < ROOM_W and nxt not in prev and labels[nxt[0]][nxt[1]] == lab:
                prev[nxt] = (r, c)
                queue.append(nxt)
    if dst not in prev:
        raise RuntimeError(
            f"play {g.layout.name}: tiles {src} and {dst} of room index {room} are not connected (a bug)"
        )
    path: list[tuple[int, int]] = []
    at: tuple[int, int] | None = dst
    while at is not None:
        path.append(at)
        at = prev[at]
    return path[::-1]


def solution_result(
    g: CellGraph, moves: list[Move], keys: int, key_doors: int, keys_used: int, reached: int, states: int
) -> PlayResult:
    layout = g.layout
    cells = [g.start] + [m.to for m in moves]
    stays = [layout.rooms[g.cells[cells[0]][0]].id]
    for c in cells[1:]:
        room_id = layout.rooms[g.cells[c][0]].id
        if room_id != stays[-1]:
            stays.append(room_id)
    left: set[int] = set()
    reentries, again = 0, set()
    for k, room_id in enumerate(stays):
        if room_id in left:
            reentries += 1
            again.add(room_id)
        if k:
            left.add(stays[k - 1])
    tiles: list[tuple[int, int, int]] = []
    length = len(moves)
    if g.labels is not None:
        at = g.start_tile
        for k, cell in enumerate(cells):
            room = g.cells[cell][0]
            exit_tile = moves[k].tile_from if k < len(moves) else None
            if at is not None and exit_tile is not None:
                walk = _tile_walk(g, room, at, exit_tile)
            else:
                walk = [at] if at is not None else []
            tiles += [(layout.rooms[room].id, r, c) for r, c in walk]
            length += max(len(walk) - 1, 0)
            at = moves[k].tile_to if k < len(moves) else None
    return PlayResult(
        True,
        tuple(stays),
        tuple(tiles),
        length,
        len(set(stays)),
        len(layout.rooms),
        reentries,
        len(again),
        keys,
        key_doors,
        keys_used,
        reached,
        states,
        "",
    )
