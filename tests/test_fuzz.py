"""Property-based tests (hypothesis): the VGLC room parser, the `.dot` graph parsers and the config coercion
raise nothing but the package's documented errors, whatever they are given.

Documented errors: `VGLCFormatError` for a room file or a graph that breaks the format (file:line in the
message), `LayoutError` for a graph that parses but is no dungeon, `ConfigError` for a config key or value.
The runs are derandomized (the same examples every time) so that CI is deterministic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import (  # a test dependency (the `test` extra): CI runs these
    HealthCheck,
    given,
    settings,
)
from hypothesis import strategies as st

from hmolqd.config import Config, ConfigError, flat_keys
from hmolqd.data import tiles
from hmolqd.data.graph import parse_dot
from hmolqd.data.vglc import VGLCFormatError, load_corpus, parse_room_file
from hmolqd.dungeon.layout import LayoutError, read_layout

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ---------------------------------------------------------------- VGLC room files

ROOM = ["W" * 11] * 2 + ["WW" + "F" * 7 + "WW"] * 12 + ["W" * 11] * 2


def grid_text() -> st.SearchStrategy[str]:
    """Text near the format: lines of tile characters (sometimes a stray one), room-sized or not, CRLF or LF."""
    line = st.text(alphabet=tiles.TILES + "X \t", min_size=0, max_size=24)
    lines = st.lists(line, min_size=0, max_size=40)
    near = st.builds(
        lambda k, cut: "\n".join((ROOM * k)[: len(ROOM) * k - cut]) + "\n", st.integers(0, 3), st.integers(0, 17)
    )
    return st.one_of(lines.map("\n".join), lines.map("\r\n".join), near)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), grid_text().map(lambda s: s.encode("utf-8"))))
def test_room_parser_raises_only_vglc_format_errors(tmp_path: Path, data: bytes) -> None:
    folder = tmp_path / "Processed"
    folder.mkdir(exist_ok=True)
    path = folder / "tloz1_1.txt"
    path.write_bytes(data)
    try:
        rooms, positions, grid = parse_room_file(path)
        corpus = load_corpus(tmp_path)
    except VGLCFormatError as err:
        assert str(path) in str(err)
        return
    assert rooms.shape == (len(positions), tiles.ROOM_H, tiles.ROOM_W) and len(corpus) == len(positions) >= 1
    assert grid[0] * tiles.ROOM_H == len(data.decode().rstrip("\n").split("\n"))


# ---------------------------------------------------------------- .dot room graphs

TOKENS = [
    "digraph {",
    "}",
    "\n",
    " ",
    ";",
    "->",
    "[",
    "]",
    "label=",
    '"',
    ",",
    "=",
    "s",
    "t",
    "b",
    "e",
    "k",
    "K",
    "l",
    "0",
    "1",
    "2",
    "3",
    "17",
    "row=",
    "col=",
    "link=",
    "door",
    "stair",
    "-1",
    "strict ",
    "\t",
    "\r\n",
    "é",
    "\x00",
]


def dot_text() -> st.SearchStrategy[str]:
    """Token soup from the DOT subset, and near-valid graphs with one statement changed."""
    soup = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)
    statement = st.one_of(
        st.builds(
            lambda n, lab: f'{n} [label="{lab}"]', st.integers(-2, 6), st.text(alphabet="stbekKlp,S1 \n", max_size=6)
        ),
        st.builds(
            lambda a, b, lab: f'{a} -> {b} [label="{lab}"]',
            st.integers(0, 6),
            st.integers(0, 6),
            st.sampled_from(["", "k", "s", "b,l"]),
        ),
        st.builds(
            lambda n, r, c: f'{n} [label="e", row={r}, col={c}]',
            st.integers(0, 6),
            st.integers(-3, 3),
            st.integers(-3, 3),
        ),
        st.builds(
            lambda a, b, k: f'{a} -> {b} [link="{k}"]',
            st.integers(0, 6),
            st.integers(0, 6),
            st.sampled_from(["door", "stair", "x"]),
        ),
        st.sampled_from(TOKENS),
    )
    graph = st.lists(statement, max_size=14).map(lambda body: "digraph {\n" + "\n".join(body) + "\n}\n")
    return st.one_of(soup, graph)


@FUZZ
@given(text=dot_text())
def test_dot_parser_raises_only_vglc_format_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "LoZ_1.dot"
    try:
        graph = parse_dot(path, text)
    except VGLCFormatError as err:
        assert str(path) in str(err)
        return
    ids = {node.id for node in graph.nodes}
    assert all(edge.src in ids and edge.dst in ids for edge in graph.edges)


@FUZZ
@given(text=dot_text())
def test_layout_reader_raises_only_format_or_layout_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mine.dot"
    path.write_text(text, encoding="utf-8")
    try:
        layout = read_layout(path)
    except (VGLCFormatError, LayoutError) as err:
        assert str(path) in str(err)
        return
    assert layout.start in {room.id for room in layout.rooms} and all(link.a != link.b for link in layout.links)


# ---------------------------------------------------------------- config coercion

KEYS = sorted(flat_keys())
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["none", "null", "true", "no", "1e3", "nan", "-inf", "0", "cuda:x", "a,b", "tloz1_1"]),
    st.lists(st.one_of(st.text(max_size=6), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@FUZZ
@given(flat=st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), VALUES, max_size=4))
def test_config_coercion_raises_only_config_errors(flat: dict) -> None:
    try:
        cfg = Config.from_flat(flat)
    except ConfigError:
        return
    again = Config.from_dict(json.loads(cfg.to_json()))  # whatever is accepted is a valid, JSON-safe config
    assert again == cfg
    assert all(not isinstance(v, float) or math.isfinite(v) for v in cfg.to_flat().values())


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
SECTION = st.sampled_from(["data", "model", "train", "paths", "run"])


@FUZZ
@given(
    doc=st.one_of(
        JSON_VALUES.map(json.dumps),
        st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=3).map(json.dumps),
        st.dictionaries(SECTION, st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=3), max_size=3).map(
            json.dumps
        ),
        st.text(max_size=40),
    )
)
def test_config_files_raise_only_config_errors(doc: str) -> None:
    try:
        Config.from_json(doc, source="fuzz.json")
    except ConfigError as err:
        assert "config" in str(err) or "fuzz.json" in str(err)
