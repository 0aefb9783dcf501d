"""Parse the VGLC Zelda room graphs (`Graph Processed/*.dot`, one per dungeon) into frozen dataclasses.

The files are a small subset of Graphviz DOT: `digraph {`, node statements `7 [label="e,k"]`, edge
statements `7 -> 8 [label="k"]` and `}`. Labels are comma-separated codes; `zelda.json` is the legend
(mirrored in `NODE_LEGEND` / `EDGE_LEGEND`). Quirks of the real corpus, and how they are read:

- Labels with an embedded newline (`"e,p,k\\n"`, in LoZ_5..LoZ_9): whitespace around codes is dropped.
- Empty codes (`"e,,p"`, `"m,"`): dropped.
- Labels without commas (`"ep"` in LoZ2_9, `"ei"`): a code that is not itself known but whose every
  character is a known one-letter code is split into those letters, so `"ep"` = {e, p}, `"ei"` = {e, i}.
  Both nodes carry the two properties elsewhere in the same files, so this reads them as intended.
- Codes that zelda.json does not list are kept verbatim, never dropped: node `i` (an item room - the
  legend has only `I`, key item; our reading, not documented by VGLC), node `m` (used in LoZ_2..LoZ_8
  instead of `e`; presumably a mini-boss / special enemy room, undocumented), `S1` on nodes and edges
  (apparently switch #1: `S` with an index). `EXTRA_CODES` lists them; other unknown codes are kept too.
- Edges are stored in both directions, sometimes with different labels per direction (one side of a
  door is key-locked, the other soft-locked), sometimes in one direction only, and a few are repeated
  or are self-loops. `DungeonGraph.edges` keeps every statement as written (directed, in file order);
  `DungeonGraph.undirected_edges()` merges each unordered pair and the union of its labels.

File names: `LoZ_<level>.dot` is quest 1, `LoZ2_<level>.dot` quest 2; `dungeon` is the matching room
file stem (`LoZ2_3` -> `tloz3_2`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hmolqd.data.vglc import PROCESSED, VGLCFormatError, read_text

GRAPH_DIR = "Graph Processed"
NODE_LEGEND: dict[str, str] = {
    "e": "enemy",
    "S": "switch",
    "b": "boss",
    "k": "key",
    "K": "boss key",
    "I": "key item",
    "p": "puzzle",
    "s": "start",
    "t": "triforce",
}
# zelda.json lists "S" twice with the same meaning (JSON keeps the last); "s" is a visible, impassable link.
EDGE_LEGEND: dict[str, str] = {
    "S": "switch locked door",
    "b": "bombable door",
    "k": "key locked door",
    "K": "boss key locked door",
    "I": "key item locked door",
    "l": "soft locked door",
    "s": "visible, impassable",
}
EXTRA_CODES: dict[str, str] = {
    "i": "item (not in zelda.json; our reading)",
    "m": "mini-boss / special enemy room (not in zelda.json; our reading)",
    "S1": "switch 1 (not in zelda.json; our reading)",
}
_LETTERS = frozenset(code for code in (*NODE_LEGEND, *EDGE_LEGEND, *EXTRA_CODES) if len(code) == 1)
_KNOWN = frozenset((*NODE_LEGEND, *EDGE_LEGEND, *EXTRA_CODES))
_FILE_RULE = re.compile(r"^LoZ(2?)_([1-9])$")
# One statement; labels are matched across newlines. A node/edge statement ends with ";" (as in DOT),
# a line end or "}", so that "0 => 1" is an error rather than node 0 followed by garbage.
_SPACE = re.compile(r"\s*")
_STATEMENT = re.compile(
    r"""(?:
        (?P<open>(?:strict[ \t]+)?digraph(?:[ \t]+\w+)?[ \t]*\{)
      | (?P<close>\})
      | (?P<src>\d+)[ \t]*(?:->[ \t]*(?P<dst>\d+)[ \t]*)?
        (?:\[[ \t]*label[ \t]*=[ \t]*"(?P<label>[^"]*)"[ \t]*\])?[ \t]*(?:;|(?=\r?\n|\}|$))
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Node:
    id: int
    labels: frozenset[str]
    raw_label: str  # as written in the file, before normalisation


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    labels: frozenset[str]
    raw_label: str


@dataclass(frozen=True)
class UndirectedEdge:
    a: int  # a <= b
    b: int
    labels: frozenset[str]  # union over both directions and repeats


@dataclass(frozen=True)
class DungeonGraph:
    name: str  # file stem, e.g. "LoZ2_3"
    dungeon: str  # matching room file stem, e.g. "tloz3_2"
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]  # every directed statement as written

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(f"{self.name}: no node {node_id}")

    def undirected_edges(self) -> tuple[UndirectedEdge, ...]:
        """One edge per unordered node pair (self-loops kept), labels merged; sorted by (a, b)."""
        merged: dict[tuple[int, int], frozenset[str]] = {}
        for edge in self.edges:
            key = (min(edge.src, edge.dst), max(edge.src, edge.dst))
            merged[key] = merged.get(key, frozenset()) | edge.labels
        return tuple(UndirectedEdge(a, b, labels) for (a, b), labels in sorted(merged.items()))

    def node_label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for code in node.labels:
                counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items()))


def parse_label(raw: str) -> frozenset[str]:
    """Normalise one label (see the module docstring): `"e,p,k\\n"` -> {e, p, k}, `"ep"` -> {e, p}."""
    codes: set[str] = set()
    for token in raw.split(","):
        token = token.strip()
        if not token:
            continue
        if token not in _KNOWN and len(token) > 1 and set(token) <= _LETTERS:
            codes.update(token)
        else:
            codes.add(token)
    return frozenset(codes)


def dungeon_of(path: Path) -> str:
    """`LoZ_<level>` -> `tloz<level>_1`, `LoZ2_<level>` -> `tloz<level>_2`."""
    match = _FILE_RULE.match(path.stem)
    if match is None:
        raise VGLCFormatError(
            f"{path}: graph file name must be LoZ_<level>.dot (quest 1) or LoZ2_<level>.dot (quest 2), level 1-9"
        )
    return f"tloz{match.group(2)}_{2 if match.group(1) else 1}"


def parse_dot(
    path: str | Path, text: str | None = None, corpus_name: bool = True, self_loops: bool = True
) -> DungeonGraph:
    """Parse one room graph; a malformed statement raises `VGLCFormatError` naming file:line.

    `corpus_name=False` accepts any file name (a graph a user wrote): `dungeon` is then the file stem.
    `self_loops=False` makes an edge `N -> N` an error (the corpus has two, in LoZ2_5 and LoZ2_9; module
    docstring).
    Time and memory are linear in the length of the text.
    """
    path = Path(path)
    text = read_text(path) if text is None else text
    dungeon = dungeon_of(path) if corpus_name else path.stem
    nodes: dict[int, Node] = {}
    node_lines: dict[int, int] = {}
    edges: list[tuple[Edge, int]] = []
    pos, opened, closed = 0, False, False  # pos: offset into text
    counted = [0, 1]  # (offset, line number there): statements are visited in order, so lines are counted once

    def line_at(offset: int) -> int:
        if offset < counted[0]:
            return text.count("\n", 0, offset) + 1
        counted[1] += text.count("\n", counted[0], offset)
        counted[0] = offset
        return counted[1]

    while True:
        pos = _SPACE.match(text, pos).end()
        if pos == len(text):
            break
        line = line_at(pos)
        match = _STATEMENT.match(text, pos)
        if match is None:
            snippet = text[pos:].split("\n", 1)[0][:60]
            raise VGLCFormatError(
                f"{path}:{line}: cannot parse DOT statement {snippet!r} "
                "(expected 'N [label=\"...\"]' or 'N -> M [label=\"...\"]')"
            )
        if closed:
            raise VGLCFormatError(f"{path}:{line}: text after the closing '}}'")
        if match.group("open"):
            if opened:
                raise VGLCFormatError(f"{path}:{line}: a second 'digraph {{' header")
            opened = True
        elif not opened:
            raise VGLCFormatError(f"{path}:{line}: expected 'digraph {{' before any statement")
        elif match.group("close"):
            closed = True
        else:
            raw = match.group("label") or ""
            src = int(match.group("src"))
            if match.group("dst") is None:
                if src in nodes:
                    raise VGLCFormatError(f"{path}:{line}: node {src} defined twice (first on line {node_lines[src]})")
                nodes[src] = Node(src, parse_label(raw), raw)
                node_lines[src] = line
            else:
                dst = int(match.group("dst"))
                if src == dst and not self_loops:
                    raise VGLCFormatError(
                        f"{path}:{line}: edge {src} -> {dst} joins a room to itself; a room graph has no self-loops"
                    )
                edges.append((Edge(src, dst, parse_label(raw), raw), line))
        pos = match.end()
    if not opened:
        raise VGLCFormatError(f"{path}:1: no 'digraph {{' header; not a DOT room graph")
    if not closed:
        raise VGLCFormatError(f"{path}:{line_at(len(text))}: missing the closing '}}' (file truncated?)")
    for edge, line in edges:
        for end in (edge.src, edge.dst):
            if end not in nodes:
                raise VGLCFormatError(
                    f"{path}:{line}: edge {edge.src} -> {edge.dst} names node {end}, which is never defined"
                )
    return DungeonGraph(
        name=path.stem,
        dungeon=dungeon,
        nodes=tuple(nodes[k] for k in sorted(nodes)),
        edges=tuple(edge for edge, _ in edges),
    )


def graph_dir(data_dir: str | Path) -> Path:
    """`<data_dir>/Graph Processed`; `data_dir` may also be the `Processed/` folder or the graph folder itself."""
    data_dir = Path(data_dir)
    sibling = (data_dir.parent / GRAPH_DIR,) if data_dir.name == PROCESSED else ()
    for candidate in (data_dir / GRAPH_DIR, *sibling, data_dir):
        if candidate.is_dir() and any(candidate.glob("*.dot")):
            return candidate
    raise VGLCFormatError(
        f"{data_dir}: no '{GRAPH_DIR}/*.dot' room graphs found (expected the VGLC 'The Legend of Zelda' folder)"
    )


def load_graphs(data_dir: str | Path) -> dict[str, DungeonGraph]:
    """Every `Graph Processed/*.dot`, keyed and sorted by dungeon (`"tloz1_1"`, `"tloz1_2"`, ...)."""
    # File names map one-to-one onto dungeons (see dungeon_of), so no dungeon appears twice.
    graphs = [parse_dot(path) for path in sorted(graph_dir(data_dir).glob("*.dot"))]
    return {graph.dungeon: graph for graph in sorted(graphs, key=lambda graph: graph.dungeon)}
