"""Training history: one record per epoch (and per evaluation), saved atomically as JSON and plotted."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hmolqd.atomic import atomic_write_bytes, atomic_write_text
from hmolqd.config import stage_names


def save_history(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write `training_history.json` atomically, so a kill mid-write leaves the previous version."""
    atomic_write_text(Path(path), json.dumps(records, indent=1, allow_nan=True) + "\n")


def load_history(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of epoch records")
    return records


def _series(records: list[dict[str, Any]], stage: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [
        (r["epoch"], r[key])
        for r in records
        if r.get("stage") == stage and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    if not rows:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*rows)
    return np.asarray(x), np.asarray(y, dtype=float)


# Generation metrics (shares in [0, 1]) drawn in a third row when the run measured them (`sample_every`), each
# with its own line style: several are often equal (with the default requests every novel playable room is
# symmetric), and a thick line under a thin dashed one keeps both visible.
QUALITY_STYLES: dict[str, dict[str, Any]] = {
    "playable": {"color": "tab:blue", "marker": "o"},
    "novel_playable": {"color": "tab:orange", "marker": "s", "linewidth": 4, "alpha": 0.6},
    "novel_playable_symmetric": {"color": "black", "marker": "x", "linestyle": "--", "linewidth": 1},
    "symmetric": {"color": "tab:red", "marker": "^"},
    "distinct": {"color": "tab:purple", "marker": "D"},
    "door_adherence": {"color": "tab:brown", "marker": "v"},
}
QUALITY_KEYS: tuple[str, ...] = tuple(QUALITY_STYLES)


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write `training_curves.png` (`curves_figure`) atomically."""
    buf = io.BytesIO()
    curves_figure(records).savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def curves_figure(records: list[dict[str, Any]]) -> Figure:
    """Train/val loss (log scale) and learning rate, one column per trained stage, and the generation metrics
    over the epochs in a third row as wide as the figure, where `sample_every` measured them (only the stages
    that generate rooms do)."""
    stages = [s for s in stage_names() if any(r.get("stage") == s for r in records)] or [stage_names()[0]]
    measured = [s for s in stages if any(r.get("stage") == s and _has_quality(r) for r in records)]
    rows = 3 if measured else 2
    fig = Figure(figsize=(4.5 * len(stages), 3 * rows), dpi=100)
    grid = fig.add_gridspec(rows, len(stages))
    for col, stage in enumerate(stages):
        loss_ax, lr_ax = fig.add_subplot(grid[0, col]), fig.add_subplot(grid[1, col])
        for key, style in (("train_loss", "-"), ("val_loss", "o-")):
            x, y = _series(records, stage, key)
            if len(x):
                loss_ax.plot(x, y, style, label=key, markersize=3)
        if loss_ax.lines and all(line.get_ydata().min() > 0 for line in loss_ax.lines):
            loss_ax.set_yscale("log")
        loss_ax.set_title(f"stage: {stage}")
        if loss_ax.lines:
            loss_ax.legend(loc="upper right", fontsize=8)
        x, y = _series(records, stage, "lr")
        lr_ax.plot(x, y, color="tab:green")
        lr_ax.set_ylabel("learning rate")
        for ax in (loss_ax, lr_ax):
            _epoch_axis(ax)
    if measured:
        _plot_quality(fig.add_subplot(grid[2, :]), records, measured)
    fig.tight_layout()
    return fig


def _has_quality(record: dict[str, Any]) -> bool:
    return any(isinstance(record.get(k), (int, float)) for k in QUALITY_KEYS)


def _epoch_axis(ax: Any) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers


def _plot_quality(ax: Any, records: list[dict[str, Any]], stages: list[str]) -> None:
    for stage in stages:
        for key, style in QUALITY_STYLES.items():
            x, y = _series(records, stage, key)
            if len(x):
                ax.plot(x, y, label=key if len(stages) == 1 else f"{key} ({stage})", markersize=4, **style)
    ax.set_ylim(0, 1.02)
    _epoch_axis(ax)
    ax.set_ylabel("share of generated rooms")
    ax.set_title(f"generated rooms during training (stage {', '.join(stages)})", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
