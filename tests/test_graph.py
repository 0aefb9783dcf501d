"""Room-graph parser (hmolqd.data.graph): label quirks, directed/undirected edges, malformed .dot errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmolqd.data import (
    VGLCFormatError,
    load_corpus,
    load_graphs,
    parse_dot,
    parse_label,
)
from hmolqd.data.graph import EDGE_LEGEND, EXTRA_CODES, NODE_LEGEND, UndirectedEdge

QUIRKY_DOT = """digraph {
0 [label="s"]
1 [label="e,p,k
"]
2 [label="ep"]
3 [label="m,"]
0 -> 1 [label=""]
1 -> 0 [label=""]
1 -> 2 [label="k"]
2 -> 1 [label="l"]
2 -> 3 [label="I,S1"]
3 -> 3 [label=""]
3 -> 3 [label=""]
}
"""


@pytest.mark.parametrize(
    "raw, codes",
    [
        ("", set()),
        ("e", {"e"}),
        ("e,p,k\n", {"e", "p", "k"}),  # embedded newline (LoZ_5 .. LoZ_9)
        ("ep", {"e", "p"}),  # comma missing (LoZ2_9)
        ("ei", {"e", "i"}),
        ("e,,p", {"e", "p"}),  # empty code
        ("m,", {"m"}),
        ("p,S1", {"p", "S1"}),  # multi-letter code not in zelda.json, kept whole
        ("I,S1", {"I", "S1"}),
        ("xyz", {"xyz"}),  # unknown letters: kept verbatim, not split
    ],
)
def test_parse_label(raw: str, codes: set[str]) -> None:
    assert parse_label(raw) == frozenset(codes)


def test_quirky_graph(tmp_path: Path) -> None:
    path = tmp_path / "LoZ2_3.dot"
    path.write_text(QUIRKY_DOT)
    graph = parse_dot(path)
    assert (graph.name, graph.dungeon) == ("LoZ2_3", "tloz3_2")
    assert [n.labels for n in graph.nodes] == [{"s"}, {"e", "p", "k"}, {"e", "p"}, {"m"}]
    assert graph.node(1).raw_label == "e,p,k\n"
    assert [(e.src, e.dst, e.labels) for e in graph.edges] == [
        (0, 1, frozenset()),
        (1, 0, frozenset()),
        (1, 2, {"k"}),
        (2, 1, {"l"}),
        (2, 3, {"I", "S1"}),
        (3, 3, frozenset()),
        (3, 3, frozenset()),
    ]  # every statement kept, directed, in file order
    assert graph.undirected_edges() == (
        UndirectedEdge(0, 1, frozenset()),
        UndirectedEdge(1, 2, frozenset({"k", "l"})),
        UndirectedEdge(2, 3, frozenset({"I", "S1"})),
        UndirectedEdge(3, 3, frozenset()),
    )
    assert graph.node_label_counts() == {"e": 2, "k": 1, "m": 1, "p": 2, "s": 1}
    with pytest.raises(KeyError, match="no node 9"):
        graph.node(9)


def test_quest_one_name_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "LoZ_7.dot"
    path.write_text('digraph G {\n  0 [label="s"];\n  1;\n  0 -> 1 [label="b"];\n}')
    graph = parse_dot(path)
    assert graph.dungeon == "tloz7_1" and [n.labels for n in graph.nodes] == [{"s"}, frozenset()]
    assert graph.edges[0].labels == {"b"}


@pytest.mark.parametrize(
    "text, line, message",
    [
        ('digraph {\n0 [label="e"]\n0 => 1\n}\n', 3, "cannot parse DOT statement '0 => 1'"),
        ('digraph {\n0 [label="e"]\n1 [label="e\n}\n', 3, "cannot parse DOT statement"),  # unterminated label
        ('digraph {\n0 [label="e"]\n0 -> 4 [label=""]\n}\n', 3, "names node 4, which is never defined"),
        ('digraph {\n0 [label="e"]\n0 [label="k"]\n}\n', 3, "node 0 defined twice (first on line 2)"),
        ('0 [label="e"]\n}\n', 1, "expected 'digraph {' before any statement"),
        ("", 1, "no 'digraph {' header"),
        ('digraph {\n0 [label="e"]\n', 3, "missing the closing '}'"),
        ('digraph {\n0 [label="e"]\n}\n1 [label="e"]\n', 4, "text after the closing '}'"),
        ("digraph {\ndigraph {\n}\n", 2, "a second 'digraph {' header"),
    ],
)
def test_malformed_dot_names_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "LoZ_1.dot"
    path.write_text(text)
    with pytest.raises(VGLCFormatError) as info:
        parse_dot(path)
    assert f"LoZ_1.dot:{line}:" in str(info.value)
    assert message in str(info.value)


def test_bad_graph_file_name_and_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "Graph Processed" / "Zelda1.dot"
    path.parent.mkdir()
    path.write_text("digraph {\n}\n")
    with pytest.raises(VGLCFormatError, match=r"Zelda1.dot: graph file name must be LoZ_<level>.dot"):
        load_graphs(tmp_path)
    with pytest.raises(VGLCFormatError, match=r"no 'Graph Processed/\*.dot' room graphs"):
        load_graphs(tmp_path / "elsewhere")


@pytest.mark.real_data
def test_real_graphs(vglc_dir: Path) -> None:
    graphs = load_graphs(vglc_dir)
    assert len(graphs) == 18 and sum(len(g.nodes) for g in graphs.values()) == 531
    assert tuple(graphs) == load_corpus(vglc_dir).dungeons  # one graph per room file, same order
    assert load_graphs(vglc_dir / "Processed").keys() == graphs.keys()
    # regression pins: directed statements as written, merged undirected pairs, quirky labels
    assert sum(len(g.edges) for g in graphs.values()) == 1169
    assert sum(len(g.undirected_edges()) for g in graphs.values()) == 604
    assert graphs["tloz9_2"].node(9).labels == {"e", "p"}  # "ep" in LoZ2_9.dot
    assert graphs["tloz5_1"].node(17).labels == {"e", "k"}  # "e,k\n" in LoZ_5.dot
    assert sum(1 for g in graphs.values() for n in g.nodes if "t" in n.labels) == 19
    codes = {c for g in graphs.values() for item in (*g.nodes, *g.edges) for c in item.labels}
    assert codes <= set(NODE_LEGEND) | set(EDGE_LEGEND) | set(EXTRA_CODES), codes  # no other unknown code
    assert {"i", "m", "S1"} <= codes


@pytest.mark.real_data
def test_legend_matches_zelda_json(vglc_dir: Path) -> None:
    legend = json.loads((vglc_dir / "zelda.json").read_text())
    assert set(legend["nodes"]) == set(NODE_LEGEND)
    assert set(legend["edges"]) == set(EDGE_LEGEND)
    assert not set(EXTRA_CODES) & (set(legend["nodes"]) | set(legend["edges"]))
