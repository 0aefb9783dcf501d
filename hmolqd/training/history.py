"""Training history: one record per epoch (and per evaluation), saved atomically as JSON and plotted."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

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


# Generation metrics (shares in [0, 1]) drawn in a third row when the run measured them (`sample_every`).
QUALITY_KEYS: tuple[str, ...] = (
    "playable",
    "novel_playable",
    "novel_playable_symmetric",
    "symmetric",
    "distinct",
    "door_adherence",
)


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path:
    """`training_curves.png`: train/val loss (log scale) and learning rate, one column per trained stage, and
    the generation metrics over the epochs (a third row) where `sample_every` measured them."""
    stages = [s for s in stage_names() if any(r.get("stage") == s for r in records)] or [stage_names()[0]]
    quality = any(isinstance(r.get(k), (int, float)) for r in records for k in QUALITY_KEYS)
    rows = 3 if quality else 2
    fig = Figure(figsize=(4.5 * len(stages), 3 * rows), dpi=100)
    axes = fig.subplots(rows, len(stages), squeeze=False)
    for col, stage in enumerate(stages):
        if quality:
            _plot_quality(axes[2][col], records, stage)
        loss_ax, lr_ax = axes[0][col], axes[1][col]
        for key, style in (("train_loss", "-"), ("val_loss", "o-")):
            x, y = _series(records, stage, key)
            if len(x):
                loss_ax.plot(x, y, style, label=key, markersize=3)
        if loss_ax.lines and all(line.get_ydata().min() > 0 for line in loss_ax.lines):
            loss_ax.set_yscale("log")
        loss_ax.set_title(f"stage: {stage}")
        loss_ax.set_xlabel("epoch")
        if loss_ax.lines:
            loss_ax.legend(loc="upper right", fontsize=8)
        x, y = _series(records, stage, "lr")
        lr_ax.plot(x, y, color="tab:green")
        lr_ax.set_xlabel("epoch")
        lr_ax.set_ylabel("learning rate")
    fig.tight_layout()
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _plot_quality(ax: Any, records: list[dict[str, Any]], stage: str) -> None:
    for key in QUALITY_KEYS:
        x, y = _series(records, stage, key)
        if len(x):
            ax.plot(x, y, "o-", label=key, markersize=3)
    if not ax.lines:  # the VQ-VAE stage generates no rooms
        ax.set_visible(False)
        return
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of generated rooms")
    ax.legend(loc="lower right", fontsize=7)
