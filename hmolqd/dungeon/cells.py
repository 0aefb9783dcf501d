"""The cells the whole-dungeon player moves between (`hmolqd.dungeon.play`): walkable components of rooms
joined by the passages of `hmolqd.dungeon.walk.tile_passages`, or one cell per room for a layout alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hmolqd.data.playability import walkable_components
from hmolqd.data.tiles import ROOM_H, ROOM_W, STAIR
from hmolqd.dungeon.layout import Layout
from hmolqd.dungeon.walk import Passage, TileView, start_label


@dataclass(frozen=True)
class Move:
    """From one cell to another through one passage: `tile_from` in the cell left, `tile_to` in the one entered."""

    to: int
    kind: str
    link: int
    tile_from: tuple[int, int] | None
    tile_to: tuple[int, int] | None


@dataclass(frozen=True, eq=False)
class CellGraph:
    """Cells (room index into `layout.rooms`, component label; label 0: a room played without tiles),
    the moves out of each cell, the start cell and, for tile play, the rooms' tiles and component labels."""

    layout: Layout
    cells: tuple[tuple[int, int], ...]
    moves: tuple[tuple[Move, ...], ...]
    start: int
    start_tile: tuple[int, int] | None
    labels: torch.Tensor | None  # (n, 16, 11) int64 component labels, None for a layout-level graph

    def label_lists(self, room: int) -> list[list[int]]:
        """Room `room`'s labels as nested lists, read tile by tile (much faster than tensor indexing)."""
        assert self.labels is not None
        cache = self.__dict__.setdefault("_lists", {})
        if room not in cache:
            cache[room] = self.labels[room].tolist()
        return cache[room]


def _assemble(
    layout: Layout,
    cells: list[tuple[int, int]],
    edges: list[tuple[int, int, int, tuple | None, tuple | None]],
    start: int,
    start_tile: tuple[int, int] | None,
    labels: torch.Tensor | None,
) -> CellGraph:
    """Moves both ways for each edge (cell a, cell b, link, tile in a, tile in b), kinds from the link."""
    moves: list[list[Move]] = [[] for _ in cells]
    seen: set[tuple[int, int, int]] = set()
    for a, b, link_index, ta, tb in edges:
        link = layout.links[link_index]
        for u, v, tu, tv in ((a, b, ta, tb), (b, a, tb, ta)):
            if (u, v, link_index) in seen:  # several door tiles of one passage: one move is enough
                continue
            seen.add((u, v, link_index))
            moves[u].append(Move(v, link.kind_from(layout.rooms[cells[u][0]].id), link_index, tu, tv))
    return CellGraph(layout, tuple(cells), tuple(tuple(m) for m in moves), start, start_tile, labels)


def layout_graph(layout: Layout) -> CellGraph:
    """One cell per room, one move per link direction: the dungeon played on its graph alone."""
    index = {room.id: i for i, room in enumerate(layout.rooms)}
    cells = [(i, 0) for i in range(len(layout.rooms))]
    edges = [(index[link.a], index[link.b], k, None, None) for k, link in enumerate(layout.links)]
    return _assemble(layout, cells, edges, index[layout.start], None, None)


def tile_graph(
    layout: Layout,
    rooms: torch.Tensor,
    passages: Sequence[Passage],
    labels: torch.Tensor | None = None,
    present: Sequence[bool] | None = None,
    loose_links: Sequence[int] = (),
) -> CellGraph:
    """Cells of the walkable components of `rooms` `(n, 16, 11)` (layout.rooms order) joined by `passages`.

    `present[i]` False: room i has no tiles (a graph node missing from a real map) and is one cell;
    `loose_links`: links joined without tiles (a real graph's edge that its map does not show), from the
    room's stair component (else where the player would start in it) to the other room's.
    """
    n = len(layout.rooms)
    if rooms.dim() != 3 or tuple(rooms.shape) != (n, ROOM_H, ROOM_W):
        raise ValueError(f"play {layout.name}: expected rooms ({n}, {ROOM_H}, {ROOM_W}), got {tuple(rooms.shape)}")
    rooms = rooms.long()
    labels = walkable_components(rooms) if labels is None else labels
    present = [True] * n if present is None else list(present)
    cells: list[tuple[int, int]] = []
    cell_of: dict[tuple[int, int], int] = {}
    for i in range(n):
        for lab in sorted(int(x) for x in labels[i].unique().tolist() if x) if present[i] else [0]:
            cell_of[(i, lab)] = len(cells)
            cells.append((i, lab))
    edges = [
        (cell_of[(p.i, p.label_i)], cell_of[(p.j, p.label_j)], p.link, p.tile_i, p.tile_j)
        for p in passages
        if p.link is not None and present[p.i] and present[p.j]
    ]
    index = {room.id: i for i, room in enumerate(layout.rooms)}

    def anchor(i: int) -> tuple[int, tuple[int, int] | None] | None:
        if not present[i]:
            return cell_of[(i, 0)], None
        lab = start_label(rooms[i], labels[i])
        if not lab:
            return None
        stair = ((rooms[i] == STAIR) & (labels[i] > 0)).nonzero().tolist()
        r, c = stair[0] if stair else (labels[i] == lab).nonzero()[0].tolist()
        return cell_of[(i, int(labels[i, r, c]))], (r, c)

    for k in loose_links:
        ends = [anchor(index[end]) for end in (layout.links[k].a, layout.links[k].b)]
        if ends[0] is not None and ends[1] is not None:
            edges.append((ends[0][0], ends[1][0], k, ends[0][1], ends[1][1]))
    s = index[layout.start]
    if not present[s]:
        return _assemble(layout, cells, edges, cell_of[(s, 0)], None, labels)
    lab = start_label(rooms[s], labels[s])
    if not lab:  # nothing to stand on: a start cell without moves (not beaten, stuck at the start)
        cells.append((s, 0))
        return _assemble(layout, cells, edges, len(cells) - 1, None, labels)
    tile = tuple((labels[s] == lab).nonzero()[0].tolist())
    return _assemble(layout, cells, edges, cell_of[(s, lab)], tile, labels)  # type: ignore[arg-type]


def dungeon_graph(layout: Layout, view: TileView) -> CellGraph:
    """The cell graph of a built dungeon: its rooms, labels and passages (`hmolqd.dungeon.walk.tile_view`)."""
    return tile_graph(layout, view.rooms, view.found.passages, view.labels)
