"""The brief's shape rules for the package, checked so that they hold without anyone policing them (ruff checks
the style and the 120-column lines in CI): no module over 400 lines, no function over 8 parameters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hmolqd"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES, MAX_PARAMETERS = 400, 8


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The names a call may bind: positional, keyword-only, *args and **kwargs, without a method's self / cls."""
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 50, f"expected the package's modules under {PACKAGE}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_shape(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines (at most {MAX_LINES}): split it along a seam"
    wide = [
        f"{node.name} (line {node.lineno}): {len(parameters(node))}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and len(parameters(node)) > MAX_PARAMETERS
    ]
    assert not wide, f"functions of {path.name} with more than {MAX_PARAMETERS} parameters: {wide}"


def test_parameters_counts_every_kind() -> None:
    tree = ast.parse("class A:\n    def f(self, a, /, b, *c, d, **e): pass\ndef g(x): pass\n")
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert parameters(functions["f"]) == ["a", "b", "d", "c", "e"]
    assert parameters(functions["g"]) == ["x"]
