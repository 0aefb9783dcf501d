"""The package layout shows the design: imports point down the layers, and only the entry points and the three
justified shared modules sit at the top of `hmolqd/` (see the docstring of `hmolqd/__init__.py`)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hmolqd.cli.commands import main

PACKAGE = Path(__file__).resolve().parents[1] / "hmolqd"
# Bottom to top; a module may import its own part and any part of a lower layer, never a higher one or a sibling.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("settings",),  # the run section's frozen parts, assembled by config
    ("config", "atomic"),
    ("device",),
    ("data",),
    ("render",),
    ("diffusion",),
    ("models",),
    ("sampling", "checkpointing"),
    ("evaluation",),
    ("training", "dungeon"),
    ("illuminate",),  # MAP-Elites over whole dungeons: it builds and plays them with hmolqd.dungeon
    ("cli", "notebook", "__init__"),  # cli/: the flags (parser.py), their checks (args.py), the commands
    ("__main__",),
)
LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}
# The entry points and the three shared utilities; the issue that moved the command line into cli/ set the bar at 8.
MAX_TOP_LEVEL_MODULES = 8
TOP_LEVEL_MODULES = {
    "__init__",
    "__main__",
    "config",
    "notebook",
    "atomic",
    "device",
    "render",
}


def part_of(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(module_path: Path) -> list[tuple[int, str]]:
    """(line, hmolqd part) of every import of hmolqd in the file, function-level imports included."""
    found = []
    for node in ast.walk(ast.parse(module_path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "hmolqd" else [f"hmolqd.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("hmolqd."):
                found.append((node.lineno, name.split(".")[1]))
    return found


def test_every_part_has_a_layer() -> None:
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")}
    assert parts - set(LAYER_OF) == set(), (
        "a new module or subpackage needs a place in LAYERS (and in hmolqd/__init__.py's docstring)"
    )


def test_top_level_holds_only_entry_points_and_justified_modules() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_LEVEL_MODULES
    assert len(TOP_LEVEL_MODULES) <= MAX_TOP_LEVEL_MODULES


def test_command_line_lives_in_its_subpackage_and_both_entry_points_reach_it() -> None:
    """`python -m hmolqd` (hmolqd/__main__.py) and the `hmolqd` script (pyproject) both call hmolqd.cli's main."""
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    target = re.search(r'^hmolqd = "([\w.]+):(\w+)"$', pyproject, re.M)
    assert target, "pyproject.toml [project.scripts] must name the hmolqd script as module:function"
    assert getattr(importlib.import_module(target[1]), target[2]) is main
    run = subprocess.run(
        [sys.executable, "-m", "hmolqd", "--help"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "usage: python -m hmolqd" in run.stdout, run.stderr


@pytest.mark.parametrize("module_path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(module_path: Path) -> None:
    own = part_of(module_path)
    for line, part in imported_parts(module_path):
        if part == own or part not in LAYER_OF:
            continue
        assert LAYER_OF[part] < LAYER_OF[own], (
            f"{module_path.relative_to(PACKAGE.parent)}:{line} imports hmolqd.{part} (layer {LAYER_OF[part]}) from "
            f"hmolqd.{own} (layer {LAYER_OF[own]}): imports must point down"
        )


def test_subpackages_say_what_they_own_and_may_import() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, (
            f"{init.relative_to(PACKAGE.parent)}: its docstring must say what the subpackage may import"
        )
