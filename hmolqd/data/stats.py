"""Text statistics of the corpus (`python -m hmolqd data-stats`): counts, tile histogram, doors per dungeon."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hmolqd.data import tiles
from hmolqd.data.graph import DungeonGraph
from hmolqd.data.vglc import Corpus

# (screen side, text side) in SCREEN_SIDES order: north = text left, east = bottom, south = right, west = top
_SCREEN_TO_TEXT = sorted(
    ((screen, text) for text, screen in tiles.SCREEN_SIDE.items()), key=lambda pair: tiles.SCREEN_SIDES.index(pair[0])
)


def _distinct(rooms: torch.Tensor) -> int:
    """Number of different rooms in `(N, 16, 11)`."""
    return int(torch.unique(rooms.flatten(1), dim=0).shape[0]) if rooms.shape[0] else 0


def _door_block(doors: torch.Tensor, stairs: torch.Tensor) -> dict[str, Any]:
    """Door/stair statistics of `(n, 4)` door flags and `(n,)` stair flags."""
    n = doors.shape[0]
    return {
        # rooms with a door on that side, sides named as on screen (north, east, south, west; tiles.SCREEN_SIDE)
        "doors": {side: int(doors[:, tiles.SIDES.index(text)].sum()) for side, text in _SCREEN_TO_TEXT},
        "mean_doors": float(doors.sum(1).float().mean()) if n else 0.0,  # doors per room
        "stairs": int(stairs.sum()),  # rooms with a stair tile
    }


def corpus_stats(corpus: Corpus, graphs: Mapping[str, DungeonGraph] | None = None) -> dict[str, Any]:
    """Plain-JSON statistics: totals, tile histogram, and per-dungeon door/stair counts (graphs optional)."""
    doors, stairs = corpus.doors, corpus.stairs  # (N, 4), (N,)
    counts = torch.bincount(corpus.rooms.flatten().long(), minlength=tiles.NUM_TILES)  # (NUM_TILES,)
    per_dungeon: dict[str, dict[str, Any]] = {}
    for name in corpus.dungeons:
        mask = torch.tensor([m.dungeon == name for m in corpus.meta], dtype=torch.bool)
        row: dict[str, Any] = {"rooms": int(mask.sum()), "distinct": _distinct(corpus.rooms[mask])}
        row.update(_door_block(doors[mask], stairs[mask]))
        row["graph_nodes"] = len(graphs[name].nodes) if graphs is not None and name in graphs else None
        per_dungeon[name] = row
    stats: dict[str, Any] = {
        "rooms": len(corpus),
        "distinct": _distinct(corpus.rooms),
        "dungeons": len(corpus.dungeons),
        "tile_histogram": {ch: int(counts[i]) for i, ch in enumerate(tiles.TILES)},
        **_door_block(doors, stairs),
        "per_dungeon": per_dungeon,
    }
    if graphs is not None:
        stats["graphs"] = len(graphs)
        stats["graph_nodes"] = sum(len(g.nodes) for g in graphs.values())
        stats["graph_edges"] = sum(len(g.edges) for g in graphs.values())  # directed statements as written
        stats["graph_undirected_edges"] = sum(len(g.undirected_edges()) for g in graphs.values())
        stats["graphs_without_rooms"] = sorted(set(graphs) - set(corpus.dungeons))
    return stats


def format_stats(stats: Mapping[str, Any]) -> str:
    """A readable report of `corpus_stats` output: summary, tile histogram, per-dungeon door table."""
    lines = [f"rooms: {stats['rooms']}  distinct: {stats['distinct']}  dungeons: {stats['dungeons']}"]
    if "graph_nodes" in stats:
        lines.append(
            f"graphs: {stats['graphs']}  nodes: {stats['graph_nodes']}  edges: {stats['graph_edges']} directed, "
            f"{stats['graph_undirected_edges']} undirected"
        )
        if stats["graphs_without_rooms"]:
            lines.append(f"graphs without room files: {', '.join(stats['graphs_without_rooms'])}")
    total_tiles = sum(stats["tile_histogram"].values()) or 1
    lines += ["", "tile  name                    count      %"]
    for ch, count in stats["tile_histogram"].items():
        lines.append(f"{ch:<5} {tiles.TILE_NAMES[ch]:<22} {count:>6} {100 * count / total_tiles:6.2f}")
    sides = " ".join(f"{s:>6}" for s in tiles.SCREEN_SIDES)
    header = f"{'dungeon':<10} {'rooms':>5} {'distinct':>8} {sides} {'doors/room':>10} {'stairs':>6} {'nodes':>5}"
    lines += ["", "rooms with a door on each side (as on screen), per dungeon:", header, "-" * len(header)]
    rows = list(stats["per_dungeon"].items()) + [("all", {**stats, "graph_nodes": stats.get("graph_nodes")})]
    for name, row in rows:
        if name == "all":
            lines.append("-" * len(header))
        nodes = "-" if row.get("graph_nodes") is None else str(row["graph_nodes"])
        door_cells = " ".join(f"{row['doors'][s]:>6}" for s in tiles.SCREEN_SIDES)
        lines.append(
            f"{name:<10} {row['rooms']:>5} {row['distinct']:>8} {door_cells} "
            f"{row['mean_doors']:>10.2f} {row['stairs']:>6} {nodes:>5}"
        )
    return "\n".join(lines)
