"""Executing the notebooks headless (nbclient), shared by tests/test_notebooks.py and tests/test_kaggle_run.py.

Parameters are injected papermill-style: a cell tagged "injected-parameters" is inserted after the cell
tagged "parameters". Kernels run single-threaded (OMP_NUM_THREADS=1): CI has two shared cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def inject(nb: nbformat.NotebookNode, **params: Any) -> nbformat.NotebookNode:
    """A copy of `nb` with `NAME = value` lines in a new cell right after the one tagged "parameters"."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    nb.cells.insert(index + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return nb


def execute(
    nb: nbformat.NotebookNode, cwd: Path, monkeypatch: pytest.MonkeyPatch, kernel_name: str = "python3"
) -> nbformat.NotebookNode:
    """Run every cell in a kernel started in `cwd`; a failing cell raises nbclient's CellExecutionError."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits this environment
    NotebookClient(nb, timeout=300, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") if out.output_type == "stream" else out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(output_text(cell) for cell in nb.cells)
